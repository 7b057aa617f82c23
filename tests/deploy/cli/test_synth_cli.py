"""`fedsynth synth train` and `fedsynth synth sample`: what a site sees before a release."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from deploy.cli.main import app

runner = CliRunner()


def test_train_then_sample_shows_which_pairs_would_be_released_and_why(
    tiny_consortium, prepare, tmp_path
):
    data, _ = tiny_consortium
    state, out = tmp_path / "state", tmp_path / "look"
    prepare(data / "site-1", state, 32)
    config = 'image-size=32 synth-config="tiny"'
    site = ["--state-dir", str(state), "--run-config", config, "--val-fraction", "0.5"]
    res = runner.invoke(app, ["synth", "train", "--data-dir", str(data / "site-1"), *site])
    assert res.exit_code == 0, res.output
    assert "trained 4 steps" in res.output and "stopped by" not in res.output
    res = runner.invoke(app, ["synth", "sample", "--site-state", str(state), "--run-config",
                              config, "--val-fraction", "0.5", "--n", "12", "--out", str(out)],
                        terminal_width=400)  # fmt: skip
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "gate.json").read_text())
    drawn = np.load(out / "samples.npz")
    assert len(drawn["images"]) == summary["generated"] == 12
    assert summary["implausible"] == int((~drawn["plausible"]).sum())
    assert summary["implausible"] == sum(summary["outside"].values())
    assert summary["released"] == int(drawn["released"].sum())
    assert not (drawn["released"] & ~drawn["plausible"]).any()  # implausible never released
    assert f"{summary['released']} would be released" in res.output
    assert f"{summary['implausible']} with masks unlike yours" in res.output
    assert (out / "samples.png").stat().st_size > 0


def test_train_says_when_the_time_budget_stopped_it(tiny_consortium, prepare, tmp_path):
    data, _ = tiny_consortium
    state = tmp_path / "state"
    prepare(data / "site-1", state, 32)
    config = 'image-size=32 synth-config="tiny" synth-train-steps=1000000'
    config += " synth-train-minutes=0.0001"
    res = runner.invoke(app, ["synth", "train", "--data-dir", str(data / "site-1"),
                              "--state-dir", str(state), "--run-config", config,
                              "--val-fraction", "0.5"], terminal_width=400)  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "stopped by synth-train-minutes=0.0001, short of 1000000" in res.output
