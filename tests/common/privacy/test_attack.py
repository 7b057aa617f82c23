"""The membership-inference test: its statistic, and the site's command that records it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from client.task import load_site
from common.config import RunSettings, SiteSettings
from common.privacy import ledger
from common.privacy.attack import membership_auc
from common.seg.networks import create_network
from deploy.cli import privacy, site_privacy
from deploy.cli.main import app
from deploy.local.runner import default_run_config


def test_auc_is_one_when_losses_give_members_away_and_half_when_they_do_not():
    leaky = membership_auc([5.0, 6.0, 7.0, 8.0], [1.0, 2.0, 3.0])
    assert leaky.auc == 1.0 and leaky.low == 1.0
    rng = np.random.default_rng(0)
    blind = membership_auc(rng.normal(size=300), rng.normal(size=300))
    assert 0.42 < blind.auc < 0.58 and blind.low < 0.5 < blind.high
    assert membership_auc([1.0, 1.0], [1.0, 1.0]).auc == 0.5  # ties count half
    flipped = membership_auc([1.0, 2.0], [5.0, 6.0])
    assert flipped.auc == 0.0  # members look *less* like members: still information
    with pytest.raises(ValueError, match="at least 2 training and 2 held-back"):
        membership_auc([1.0], [2.0, 3.0])


def test_attack_at_a_site_is_recorded_and_shown_to_the_auditor(tiny_consortium, prepare, tmp_path):
    data, _ = tiny_consortium
    state = tmp_path / "state"
    prepare(data / "site-1", state, 32)
    torch.manual_seed(0)
    weights = tmp_path / "best.pt"
    torch.save(create_network("unet", 1).state_dict(), weights)
    runner = CliRunner()
    site_privacy.console.width = privacy.console.width = 250
    args = ["privacy", "attack", "--state-dir", str(state), "--data-dir", str(data / "site-1")]
    args += ["--weights", str(weights), "--image-size", "32", "--network", "unet"]
    res = runner.invoke(app, [*args, "--site-name", "site-1"])
    assert res.exit_code == 0, res.output
    assert "membership inference (loss): AUC" in res.output
    assert "on 6 training and 2 held-back patients" in res.output
    (entry,) = ledger.read_lines(state / ledger.LEDGER_FILE)
    attack = entry["release"]["attack"]
    assert entry["kind"] == "metrics" and 0.0 <= attack["low"] <= attack["auc"] <= attack["high"]
    assert len(entry["release"]["target_sha256"]) == 64  # which model was attacked
    path = str(state / ledger.LEDGER_FILE)
    res = runner.invoke(app, ["audit", "report", path])
    assert res.exit_code == 0 and f"{attack['auc']:.3f} [" in res.output, res.output
    assert runner.invoke(app, ["audit", "verify", path]).exit_code == 0
    # Synthetic "pairs" that are copies of the training images give every member away.
    run = RunSettings.from_config({**default_run_config(), "image-size": 32, "network": "unet"})
    site = SiteSettings(str(data / "site-1"), str(state), "site-1")
    train, _ = load_site(site, run)
    leaky = tmp_path / "leaky.npz"
    np.savez(leaky, images=train.images.astype(np.float32), masks=train.masks)
    only_synthetic = [a for a in args if a not in ("--weights", str(weights))]
    res = runner.invoke(app, [*only_synthetic, "--synthetic", str(leaky), "--site-name", "site-1"])
    assert res.exit_code == 0, res.output
    assert "membership inference (synthetic distance): AUC 1.000" in res.output
    assert [e["kind"] for e in ledger.read_lines(state / ledger.LEDGER_FILE)] == ["metrics"] * 2
    missing = [str(tmp_path / "none.pt") if a == str(weights) else a for a in args]
    res = runner.invoke(app, missing)
    assert res.exit_code == 2 and "none.pt" in res.output  # a missing model, named
