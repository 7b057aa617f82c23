"""Synthetic sharing on the Deployment Engine: sites release gated pairs, never weights.

Three SuperNodes with share=synthetic: each trains its (tiny) diffusion model, releases
the pairs that pass its memorisation gate with a signed ledger entry, and the server
trains the global model on the pool and evaluates it on the held-out set as usual.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from common.privacy import audit, ledger, site_keys
from deploy.local.consortium import LocalConsortium, SiteNode

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_synthetic_mode_end_to_end(tiny_consortium, tmp_path, prepare):
    data, _ = tiny_consortium
    out = tmp_path / "run"
    states = {i: tmp_path / f"state-{i}" for i in (1, 2, 3)}
    for i in (1, 2, 3):
        prepare(data / f"site-{i}", states[i], 32)
        site_keys.register(
            tmp_path / "registry", f"site-{i}", site_keys.load_or_create(states[i])[1]
        )
    config = {
        "num-server-rounds": 2,
        "image-size": 32,
        "min-sites": 3,
        "round-timeout": 300.0,
        "eval-dir": str(data / "heldout"),
        "out-dir": str(out),
        "registry": str(tmp_path / "registry"),
        "share": "synthetic",
        "synth-config": "tiny",
        "synth-n": 6,
        "server-epochs": 1,
        "synth-mask-quantile": 0.0,  # tiny generators draw noise masks: no mask check,
        "synth-draw-factor": 1,  # and one draw, which the gate alone decides on
    }
    nodes = [
        SiteNode(
            f"site-{i}",
            {
                "site-name": f"site-{i}",
                "data-dir": str(data / f"site-{i}"),
                "state-dir": str(states[i]),
                "val-fraction": 0.5,  # enough held-out images for the gate's own thresholds
            },
            trainer=i == 1,
        )
        for i in (1, 2, 3)
    ]
    with LocalConsortium(tmp_path / "flwr", nodes) as consortium:
        status = consortium.wait(consortium.submit(config), timeout=900)
    assert status["status"] == "finished:completed", status

    rounds = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rounds] == [0, 1, 2]
    releases = {x["site"]: x for x in rounds[1]["sites"]["synthetic"]}
    assert sorted(releases) == ["site-1", "site-2", "site-3"]
    for x in releases.values():
        assert x["synthetic-generated"] == 6 and x["synthetic-implausible"] == 0
        assert x["synthetic-released"] + x["synthetic-dropped"] == 6
    assert "synthetic" not in rounds[2]["sites"]  # released once (synth-every=0)
    for r in rounds[1:]:
        assert r["sites"]["trained"] == []  # no site trained or sent weights
        assert r["sites"]["server-training"]["examples"] == sum(
            x["synthetic-released"] for x in releases.values()
        )
        assert 0.0 <= r["heldout"]["overall"]["dice"] <= 1.0

    pool = np.load(out / "synthetic" / "pool.npz")
    assert pool["images"].shape[1:] == (1, 16, 16)  # (k, C, S, S): grey phantoms
    assert pool["masks"].shape == (len(pool["images"]), 16, 16)
    assert set(np.unique(pool["masks"])) <= {0, 1}
    quality = json.loads((out / "synthetic" / "quality.json").read_text())
    assert quality["n_synthetic"] == len(pool["images"]) and "frechet_distance" in quality
    # after the last round, also in the trained model's features, and per site
    assert quality["frechet_distance_segmentation"] >= 0
    assert {k: v["pairs"] for k, v in quality["per_site"].items()} == {
        s: x["synthetic-released"] for s, x in releases.items()
    }
    assert all((out / "synthetic" / f"pairs_{s}.png").exists() for s in releases)
    html = (out / "report.html").read_text()
    assert "Synthetic data" in html and "memorisation gate" in html
    assert "features of the consortium's trained model" in html

    # What left each site: synthetic pairs only, each with its gate counts, all verified.
    site_ledgers = [states[i] / ledger.LEDGER_FILE for i in (1, 2, 3)]
    for path in site_ledgers:
        entries = ledger.read_lines(path)
        assert [e["kind"] for e in entries] == ["synthetic"]
        gate = entries[0]["release"]["gate"]
        assert gate["generated"] == 6
        assert gate["released"] == gate["generated"] - gate["dropped"]
        assert entries[0]["release"]["tensors"] == 2  # images and masks
    registry = site_keys.load_registry(tmp_path / "registry")
    consortium_ledger = out / "ledger" / "consortium.jsonl"
    assert audit.verify([*site_ledgers, consortium_ledger], registry) == ([], [])


def test_exchange_mode_sites_train_on_each_others_pairs(tiny_consortium, tmp_path, prepare):
    """share=exchange: each site trains on its data plus the other sites' gated pairs, and
    its ledger says, with the weights it released, which pairs it had received."""
    data, _ = tiny_consortium
    out = tmp_path / "run"
    states = {i: tmp_path / f"state-{i}" for i in (1, 2)}
    for i in (1, 2):
        prepare(data / f"site-{i}", states[i], 32)
        site_keys.register(
            tmp_path / "registry", f"site-{i}", site_keys.load_or_create(states[i])[1]
        )
    config = {
        "num-server-rounds": 1,
        "image-size": 32,
        "min-sites": 2,
        "round-timeout": 300.0,
        "eval-dir": str(data / "heldout"),
        "out-dir": str(out),
        "registry": str(tmp_path / "registry"),
        "share": "exchange",
        "synth-config": "tiny",
        "synth-n": 8,
        "synth-gate-quantile": 0.0,  # tiny generators: keep every pair so each site gets some
        "synth-mask-quantile": 0.0,
    }
    nodes = [
        SiteNode(
            f"site-{i}",
            {
                "site-name": f"site-{i}",
                "data-dir": str(data / f"site-{i}"),
                "state-dir": str(states[i]),
                "val-fraction": 0.5,
            },
        )
        for i in (1, 2)
    ]
    with LocalConsortium(tmp_path / "flwr", nodes) as consortium:
        status = consortium.wait(consortium.submit(config), timeout=900)
    assert status["status"] == "finished:completed", status

    rounds = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    released = {x["site"]: int(x["synthetic-released"]) for x in rounds[1]["sites"]["synthetic"]}
    assert sorted(released) == ["site-1", "site-2"] and all(released.values())
    for r in rounds[1:]:
        assert sorted(x["site"] for x in r["sites"]["trained"]) == ["site-1", "site-2"]
        assert "server-training" not in r["sites"]  # the server trains on nothing
        sent = {x["to"]: x for x in r["sites"]["exchanged"]}
        assert sent["site-1"]["from"] == {"site-2": released["site-2"]}
        assert sent["site-2"]["from"] == {"site-1": released["site-1"]}

    pool = np.load(out / "synthetic" / "pool.npz")
    for i, other in ((1, "site-2"), (2, "site-1")):
        entries = ledger.read_lines(states[i] / ledger.LEDGER_FILE)
        assert [e["kind"] for e in entries] == ["synthetic", "weights"]
        for e in entries[1:]:
            received = e["release"]["received"]
            assert received["from"] == {other: released[other]}
            assert received["pairs"] == released[other]
        # the digest is that of the other site's release as the server pooled it
        mine = pool["sites"] == other
        digest = ledger.release_digest(
            {"images": pool["images"][mine].astype(np.float16), "masks": pool["masks"][mine]}
        )
        assert entries[1]["release"]["received"]["sha256"] == digest["sha256"]
    registry = site_keys.load_registry(tmp_path / "registry")
    site_ledgers = [states[i] / ledger.LEDGER_FILE for i in (1, 2)]
    consortium_ledger = out / "ledger" / "consortium.jsonl"
    assert audit.verify([*site_ledgers, consortium_ledger], registry) == ([], [])
