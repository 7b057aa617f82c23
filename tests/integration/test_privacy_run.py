"""DP on the Deployment Engine: a budget that holds, signed releases, an auditable record.

site-1 and site-2 train with DP-SGD; site-2's budget allows one round only, so it
declines round 2 and the run completes with site-1. site-3 signs with a key the
coordinator never registered: the server uses none of its releases.
"""

from __future__ import annotations

import json
import math

import pytest

from common.config import RunSettings, SiteSettings
from common.privacy import audit, ledger, site_keys
from common.privacy.accountant import epsilon_of
from deploy.local.consortium import LocalConsortium, SiteNode

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_budget_ledger_and_registry_on_the_deployment_engine(tiny_consortium, tmp_path, prepare):
    from client.task import load_site
    from common.privacy.dp import plan_round

    data, _ = tiny_consortium
    config = {
        "num-server-rounds": 2,
        "local-epochs": 1,
        "image-size": 32,
        "min-sites": 2,
        "round-timeout": 90.0,
        "eval-dir": str(data / "heldout"),
        "out-dir": str(tmp_path / "run"),
        "dp": "local",
        "dp-noise-multiplier": 1.0,
        "dp-accountant": "rdp",
        "registry": str(tmp_path / "registry"),
    }
    run = RunSettings.from_config(config)
    states = {i: tmp_path / f"state-{i}" for i in (1, 2, 3)}
    for i in (1, 2, 3):
        prepare(data / f"site-{i}", states[i], 32)
    probe = SiteSettings(data_dir=str(data / "site-2"), state_dir=str(states[2]))
    step = plan_round(run.dp_settings(), load_site(probe, run)[0].patients, 4, 1).step
    budget = (epsilon_of([step], 1e-5, "rdp") + epsilon_of([step] * 2, 1e-5, "rdp")) / 2
    for i in (1, 2):
        site_keys.register(
            tmp_path / "registry", f"site-{i}", site_keys.load_or_create(states[i])[1]
        )
    site_keys.load_or_create(states[3])  # a key, but never registered
    site_keys.register(tmp_path / "registry", "site-3", site_keys.load_or_create(tmp_path / "x")[1])

    def node(i, **extra):
        cfg = {"site-name": f"site-{i}", "data-dir": str(data / f"site-{i}")}
        return SiteNode(f"site-{i}", {**cfg, "state-dir": str(states[i]), **extra})

    nodes = [node(1), node(2, **{"max-epsilon": budget}), node(3)]
    with LocalConsortium(tmp_path / "flwr", nodes) as consortium:
        status = consortium.wait(consortium.submit(config), timeout=900)
    assert status["status"] == "finished:completed", status

    rounds = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    sites = {r["round"]: r["sites"] for r in rounds if r["round"] > 0}
    assert sorted(t["site"] for t in sites[1]["trained"]) == ["site-1", "site-2"]
    for r in (2,):
        assert [t["site"] for t in sites[r]["trained"]] == ["site-1"]
        assert [d["site"] for d in sites[r]["declined"]] == ["site-2"]
        assert "privacy budget" in sites[r]["declined"][0]["reason"]
    for r in (1, 2):
        assert [f["site"] for f in sites[r]["failed"]] == ["site-3"]
        assert "not the one registered" in sites[r]["failed"][0]["error"]
        for t in sites[r]["trained"]:
            assert "train-loss" not in t and "val-dice" not in t  # not covered by DP

    site_ledgers = [states[i] / ledger.LEDGER_FILE for i in (1, 2)]
    consortium_ledger = tmp_path / "run" / "ledger" / "consortium.jsonl"
    registry = site_keys.load_registry(tmp_path / "registry")
    assert audit.verify([*site_ledgers, consortium_ledger], registry) == ([], [])
    for path in site_ledgers:  # the privacy unit is the patient, and the ledger says so
        for entry in (e for e in ledger.read_lines(path) if e["dp"]):
            dp = entry["dp"]
            assert dp["unit"] == "patient" and dp["patients"] >= 1
            assert dp["warm_start"] == "none"  # the global model started from random weights
            batch = run.train_settings(1, 0).batch_size
            assert dp["sample_rate"] == pytest.approx(1 / math.ceil(dp["patients"] / batch))
    spent = [e["dp"]["epsilon_total"] for e in ledger.read_lines(site_ledgers[1]) if e["dp"]]
    assert len(spent) == 1 and spent[0] <= budget  # zero rounds beyond the budget
    assert not any(r.too_low for r in audit.recompute(site_ledgers))
    problems, _ = audit.verify([states[3] / ledger.LEDGER_FILE], registry)
    assert problems and "not the one registered" in str(problems[0])
