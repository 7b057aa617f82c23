"""The privacy planner: the noise a run will use, told before it runs, and a verdict."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from common.errors import ConfigError
from common.privacy.accountant import MechanismStep, epsilon_of
from common.privacy.dp import DPSettings, plan_round
from common.privacy.planner import alternatives, plan
from deploy.cli import site_privacy
from deploy.cli.main import app


@pytest.mark.parametrize(
    ("patients", "epsilon", "rounds", "epochs", "batch", "verdict"),
    [
        # measured here: retina site (16 training images), Dice at the floor
        (16, 10.0, 12, 3, 4, "no learning"),
        # Montgomery alone at eps = 8 (bench/dp): 0.90x of its non-DP Dice
        (94, 8.0, 10, 2, 8, "learns, at a cost"),
        # forecast beyond the runs measured: a site of 2000 patients at eps = 8
        (2000, 8.0, 10, 2, 8, "close to non-DP"),
    ],
)
def test_verdicts_of_the_measured_sites(patients, epsilon, rounds, epochs, batch, verdict):
    p = plan(patients, epsilon, 1e-5, rounds, epochs, batch)
    assert p.verdict == verdict, p.describe()
    assert f"{patients} patients" in p.describe()


def test_the_plan_is_the_noise_the_rounds_will_use_and_spends_exactly_epsilon(tmp_path):
    p = plan(40, 8.0, 1e-5, 5, 2, 8, state_dir=tmp_path)
    dp = DPSettings("local", epsilon=8.0, delta=1e-5, rounds=5)
    round_plan = plan_round(dp, 40, 8, 2, tmp_path)  # reads the cache the plan wrote
    assert round_plan.step.noise_multiplier == p.noise_multiplier
    assert round_plan.step.steps * 5 == p.steps
    cache = json.loads((tmp_path / "privacy" / "noise_cache.json").read_text())
    assert list(cache.values()) == [p.noise_multiplier]
    spent = epsilon_of([round_plan.step] * 5, 1e-5)
    assert 7.8 <= spent <= 8.0 * 1.01
    # a noise 10% lower would spend more than the target: the calibration is tight
    lower = MechanismStep(p.noise_multiplier * 0.9, p.sample_rate, round_plan.step.steps)
    assert epsilon_of([lower] * 5, 1e-5) > 8.0


def test_what_to_change_lifts_the_verdict_or_nothing_is_offered():
    base = plan(1000, 3.0, 1e-5, 6, 2, 8)  # 388: learns, at a cost
    options = alternatives(base)
    assert options and all(o.verdict == "close to non-DP" for _, o in options)
    assert [label for label, _ in options] == ["ε = 12"]  # 2 rounds or ε = 6 do not lift it
    tiny = plan(16, 10.0, 1e-5, 12, 3, 4)
    assert alternatives(tiny) == []  # nothing up to 4x the epsilon helps 16 patients


@pytest.mark.parametrize("field", ["patients", "rounds", "epochs", "batch-size"])
def test_bad_values_are_named(field):
    args = {"patients": 10, "rounds": 2, "epochs": 1, "batch-size": 4}
    args[field] = 0
    with pytest.raises(ConfigError, match=field):
        plan(args["patients"], 8.0, 1e-5, args["rounds"], args["epochs"], args["batch-size"])


def test_cli_plans_from_a_count_or_says_what_is_missing(tmp_path):
    runner = CliRunner()
    site_privacy.console.width = 250
    # (RDP: calibrations in milliseconds, for the CLI's plumbing; PRV is tested above)
    res = runner.invoke(app, ["privacy", "plan", "--patients", "16", "--accountant", "rdp"])
    assert res.exit_code == 0, res.output
    assert "no learning: 16 patients: at ε = 10" in res.output
    assert 'share="synthetic"' in res.output
    res = runner.invoke(app, ["privacy", "plan", "--state-dir", str(tmp_path)])
    assert res.exit_code == 2 and "fedsynth site prepare" in res.output
    (tmp_path / "intake_report.json").write_text(json.dumps({"cases": 563}))
    res = runner.invoke(
        app,
        ["privacy", "plan", "--state-dir", str(tmp_path), "--epsilon", "8", "--accountant", "rdp"],
    )
    assert res.exit_code == 0, res.output
    assert "450 patients" in res.output  # 563 cases less the 20% validation split


def test_central_dp_is_planned_with_the_noise_the_server_charges():
    from common.privacy.accountant import gaussian_epsilon
    from common.privacy.planner import plan_central

    p = plan_central(3, 8.0, 1e-5, 10)
    # the server charges every site one Gaussian release of noise sigma per round
    assert gaussian_epsilon([p.noise_multiplier] * 10, 1e-5) == pytest.approx(8.0, rel=0.01)
    assert p.steps == 10 and p.expected_batch == 3  # all sites, every round
    assert p.step_noise_to_signal == pytest.approx(p.noise_multiplier / 3)
    assert "3 sites" in p.describe() and "patients" not in p.describe()
    # three sites cannot hide one another: no learning at any of the bench's epsilons
    assert plan_central(3, 8.0, 1e-5, 10).verdict == "no learning"
    with pytest.raises(ConfigError, match="sites must be at least 1"):
        plan_central(0, 8.0, 1e-5, 10)


def test_a_small_site_is_carried_by_the_consortium_it_averages_with():
    from common.privacy.planner import consortium_signal_to_noise

    # k equal sites: the average's noise shrinks by sqrt(k)
    assert consortium_signal_to_noise([(100, 50.0)] * 4) == pytest.approx(100.0)
    # a small site beside a large one: the model is near the large site's forecast
    mixed = consortium_signal_to_noise([(20, 30.0), (400, 300.0)])
    assert 280 < mixed < 320
    with pytest.raises(ConfigError, match="sites with patients"):
        consortium_signal_to_noise([])


def test_cli_adds_the_consortiums_forecast_when_told_the_other_sites():
    runner = CliRunner()
    args = ["privacy", "plan", "--patients", "94", "--epsilon", "8", "--rounds", "10"]
    args += ["--epochs", "2", "--batch-size", "8", "--accountant", "rdp"]
    res = runner.invoke(app, [*args, "--others", "362,158"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert text.startswith("learns, at a cost: 94 patients")  # the site's own forecast
    assert "the consortium's model (3 sites: 94, 362, 158 patients" in text
    # carried by the two larger sites: 349, where 94 patients alone are at 108
    assert "signal 349× the noise over the run: learns, at a cost" in text
    bad = runner.invoke(app, [*args, "--others", "362,many"])
    assert bad.exit_code == 2 and "--others '362,many'" in " ".join(bad.output.split())
