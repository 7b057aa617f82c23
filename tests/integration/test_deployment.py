"""A real Deployment Engine run: SuperLink + SuperNodes on localhost, `flwr run`, 2 rounds.

Three SuperNodes: site-1 with a warm site trainer, site-2 training in the ClientApp
process, and site-3 that was never prepared (``fedsynth site prepare``): training never
de-identifies, so it declines every round, naming the command, while the run carries on
with the other two.
"""

from __future__ import annotations

import json

import pytest
import torch

from common.seg.networks import create_network
from deploy.local.consortium import LocalConsortium, SiteNode
from deploy.local.processes import _alive

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_two_rounds_on_the_deployment_engine(tiny_consortium, tmp_path, prepare):
    data, manifest = tiny_consortium
    for i in (1, 2):
        prepare(data / f"site-{i}", tmp_path / f"state-{i}", 64)
    (tmp_path / "broken-site").mkdir()
    (tmp_path / "broken-site" / "notes.txt").write_text("not an image")
    nodes = [
        SiteNode(
            "site-1",
            {
                "site-name": "site-1",
                "data-dir": str(data / "site-1"),
                "state-dir": str(tmp_path / "state-1"),
            },
            trainer=True,
        ),
        SiteNode(
            "site-2",
            {
                "site-name": "site-2",
                "data-dir": str(data / "site-2"),
                "state-dir": str(tmp_path / "state-2"),
            },
        ),
        SiteNode(
            "site-3",
            {
                "site-name": "site-3",
                "data-dir": str(tmp_path / "broken-site"),
                "state-dir": str(tmp_path / "state-3"),
            },
        ),
    ]
    out = tmp_path / "run"
    config = {
        "num-server-rounds": 2,
        "local-epochs": 1,
        "image-size": 64,
        "min-sites": 2,
        "round-timeout": 180.0,
        "eval-dir": str(data / "heldout"),
        "out-dir": str(out),
    }
    with LocalConsortium(tmp_path / "flwr", nodes) as consortium:
        run_id = consortium.submit(config)
        status = consortium.wait(run_id, timeout=900)
        started = consortium.pids()
    assert status["status"] == "finished:completed", status
    assert started, "the consortium should have had live processes"
    assert not [p for p in started if _alive(p)], "processes left behind"

    rounds = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rounds] == [0, 1, 2]
    vendors = {f"{v['manufacturer']} {v['model']}" for v in manifest["heldout"]["vendors"]}
    for r in rounds:
        assert set(r["heldout"]) == vendors | {"overall"}
        for v in vendors:
            assert 0.0 <= r["heldout"][v]["dice"] <= 1.0 and r["heldout"][v]["n"] == 3
    for r in rounds[1:]:
        assert sorted(t["site"] for t in r["sites"]["trained"]) == ["site-1", "site-2"]
        assert [d["site"] for d in r["sites"]["declined"]] == ["site-3"]
        assert "fedsynth site prepare" in r["sites"]["declined"][0]["reason"]
        for t in r["sites"]["trained"]:
            assert t["num-examples"] > 0 and t["train-loss"] > 0

    torch.manual_seed(0)
    initial = create_network("unet").state_dict()
    final = torch.load(out / "checkpoints" / "last.pt")
    assert any(not torch.equal(initial[k], final[k]) for k in initial), "global model unchanged"
    assert (out / "checkpoints" / "best.pt").exists()
    html = (out / "report.html").read_text()
    assert "declined" in html and "Orion Pro 7" in html and "data:image/png;base64" in html
