from __future__ import annotations

import pytest
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAdam, FedAvg, FedMedian, FedProx, FedTrimmedAvg, Krum

from common import keys
from common.config import RunSettings
from common.errors import ConfigError
from server.strategies import NotEnoughSites, create_strategy


@pytest.mark.parametrize(
    ("name", "base"),
    [
        ("fedavg", FedAvg),
        ("fedprox", FedProx),
        ("fedadam", FedAdam),
        ("fedmedian", FedMedian),
        ("fedtrimmedavg", FedTrimmedAvg),
        ("krum", Krum),
    ],
)
def test_registry_builds_recording_strategies(name, base):
    s = create_strategy(RunSettings(strategy=name, min_sites=3))
    assert isinstance(s, base) and s.min_available_nodes == 3 and s.rounds == {}


def test_unknown_strategy_names_the_choices():
    with pytest.raises(ConfigError, match="fedavg"):
        create_strategy(RunSettings(strategy="fedsgd"))


class _FewNodes:
    def get_node_ids(self):
        return [1]


def test_waiting_for_sites_is_bounded():
    s = create_strategy(RunSettings(min_sites=2, round_timeout=0.3))
    with pytest.raises(NotEnoughSites, match="min-sites=2"):
        s.configure_train(1, ArrayRecord(), ConfigRecord(), _FewNodes())


def test_declines_are_recorded_and_kept_out_of_aggregation(make_reply):
    import numpy as np
    from flwr.app import Array

    s = create_strategy(RunSettings(min_sites=1))
    good = RecordDict(
        {
            keys.ARRAYS: ArrayRecord({"w": Array(np.ones(3, np.float32))}),
            keys.METRICS: MetricRecord({keys.NUM_EXAMPLES: 4, keys.TRAIN_LOSS: 0.5}),
            keys.SITE: ConfigRecord({keys.SITE_NAME: "A"}),
        }
    )
    declined = RecordDict(
        {keys.SITE: ConfigRecord({keys.SITE_NAME: "B", keys.DECLINED: "no usable cases"})}
    )
    arrays, _ = s.aggregate_train(1, [make_reply(good, 1), make_reply(declined, 2)])
    assert arrays is not None and np.allclose(arrays["w"].numpy(), 1.0)
    rec = s.rounds[1].to_json()
    assert [t["site"] for t in rec["trained"]] == ["A"]
    assert rec["declined"] == [{"site": "B", "reason": "no usable cases"}]
