"""Malformed or outlying updates are rejected before aggregation, with the reason."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from common import keys
from common.config import RunSettings
from server.rounds import RoundRecord
from server.strategies import create_strategy
from server.update_checks import check_updates, malformed

GLOBAL = {"conv.weight": np.zeros((2, 3), np.float32), "conv.bias": np.zeros(2, np.float32)}


def _update(scale=1.0, **changes):
    u = {k: v + scale * np.ones_like(v) for k, v in GLOBAL.items()}
    u.update(changes)
    return {k: v for k, v in u.items() if v is not None}


@pytest.mark.parametrize(
    ("update", "reason"),
    [
        (_update(**{"conv.bias": np.array([np.nan, 0], np.float32)}), "NaN or infinite"),
        (_update(**{"conv.bias": np.array([np.inf, 0], np.float32)}), "NaN or infinite"),
        (_update(**{"conv.weight": np.zeros((3, 2), np.float32)}), "shape (3, 2)"),
        (_update(**{"conv.bias": np.zeros(2, np.float64)}), "dtype float64"),
        (_update(**{"conv.bias": None}), "missing tensors ['conv.bias']"),
        (_update(**{"extra": np.zeros(1, np.float32)}), "unknown tensors ['extra']"),
    ],
    ids=["nan", "inf", "shape", "dtype", "missing", "extra"],
)
def test_malformed_updates_are_named(update, reason):
    assert reason in malformed(update, GLOBAL)
    assert reason in check_updates({"bad": update, "ok": _update()}, GLOBAL)["bad"]


def test_an_outlying_norm_is_rejected_and_similar_ones_are_not():
    updates = {"a": _update(1.0), "b": _update(1.3), "c": _update(0.8), "d": _update(50.0)}
    rejected = check_updates(updates, GLOBAL, factor=10.0)
    assert list(rejected) == ["d"] and "50x" in rejected["d"]
    assert check_updates(updates, GLOBAL, factor=0.0) == {}  # norm check off
    # with two updates there is no telling which one is off: no norm verdict
    assert check_updates({"a": _update(1.0), "d": _update(50.0)}, GLOBAL, factor=10.0) == {}


def _reply_content(name, update):
    return RecordDict(
        {
            keys.ARRAYS: ArrayRecord({k: Array(v) for k, v in update.items()}),
            keys.METRICS: MetricRecord({keys.NUM_EXAMPLES: 10}),
            keys.SITE: ConfigRecord({keys.SITE_NAME: name}),
        }
    )


@pytest.mark.parametrize("strategy", ["fedavg", "fedmedian", "fedtrimmedavg", "krum"])
def test_rejected_updates_never_reach_the_aggregate(strategy, make_reply):
    s = create_strategy(RunSettings(strategy=strategy, min_sites=1))
    s._sent = ArrayRecord({k: Array(v) for k, v in GLOBAL.items()})  # as configure_train does
    s.rounds[1] = RoundRecord(asked=5)
    bad = _update(**{"conv.bias": np.array([np.nan, 1], np.float32)})
    replies = [
        make_reply(_reply_content("a", _update(1.0)), 1),
        make_reply(_reply_content("b", _update(1.0)), 2),
        make_reply(_reply_content("c", _update(1.0)), 3),
        make_reply(_reply_content("nan-site", bad), 4),
        make_reply(_reply_content("huge", _update(1e4)), 5),
    ]
    arrays, _ = s.aggregate_train(1, replies)
    for name in GLOBAL:
        assert np.allclose(arrays[name].numpy(), 1.0)  # the three good updates agree
    record = s.rounds[1].to_json()
    assert sorted(r["site"] for r in record["rejected"]) == ["huge", "nan-site"]
    assert sorted(t["site"] for t in record["trained"]) == ["a", "b", "c"]
    assert record["missing"] == 0
