"""SIGINT and SIGTERM stop `fedsynth demo` and `fedsynth simulate` cleanly in every phase.

Each test starts the real command, waits for a phase's first line, sends the signal, and
checks that the command stopped (a generous watchdog, not a speed target: that one is in
bench/), said which phase it stopped in, left no process behind (Flower, site trainers,
OCR, Ray), and left the work folder in a state a re-run goes on from.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from bench.stop_time import interrupt_at, leftovers

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STOP_WATCHDOG = 60.0  # seconds; the benchmark's target is 10 (bench/stop_time.py)


def _interrupt_at(args: list[str], cwd: Path, marker: str, sig: int, delay: float = 0.0):
    res = interrupt_at(args, cwd, marker, sig, delay, watchdog=STOP_WATCHDOG)
    assert res.returncode != 0, res.output
    return res.output, res.seconds, res.started


def _assert_nothing_left(workdir: Path, started: list[int], output: str) -> None:
    left = leftovers(workdir, started)
    assert not left, f"processes left behind: {left}\n{output}"


def _demo(workdir: Path, *extra: str) -> list[str]:
    return ["demo", "--workdir", str(workdir), *extra]


SMALL = ["--sites", "2", "--cases-per-site", "4", "--rounds", "2"]
FAST = "image-size=32 local-epochs=1 round-timeout=120.0"


def test_demo_stops_in_sample_data_intake_and_baselines_and_a_rerun_goes_on(tmp_path):
    workdir = tmp_path / "demo"
    # Two small sites, one round of one epoch: the federated phase only has to end; the
    # baselines (a local model per site, a central one, each scored on the held-out set)
    # last seconds.
    args = _demo(workdir, "--sites", "2", "--cases-per-site", "4", "--rounds", "1")
    args += ["--run-config", FAST]
    out, took, started = _interrupt_at(args, tmp_path, "== sample-data", signal.SIGTERM, 1.0)
    assert "stopped during sample-data" in out, out
    _assert_nothing_left(workdir, started, out)
    assert not (workdir / "data").exists() or (workdir / "data" / "manifest.json").exists()

    # Ctrl-C in intake: the re-run regenerated the sample data (it got to intake).
    out, took, started = _interrupt_at(args, tmp_path, "== intake", signal.SIGINT)
    assert "stopped during intake" in out, out
    _assert_nothing_left(workdir, started, out)
    assert (workdir / "data" / "manifest.json").exists()
    assert not list(workdir.rglob("*.part")), "a half-written file was left"

    # The next re-run goes on through intake and the federated run to the baselines
    # (stopping in the federated phase itself: test_simulate_stops_in_the_simulation).
    out, took, started = _interrupt_at(args, tmp_path, "== baselines", signal.SIGTERM, 0.5)
    assert "stopped during baselines" in out, out
    _assert_nothing_left(workdir, started, out)
    run_dir = next((workdir / "runs").iterdir())
    assert (run_dir / "metrics.jsonl").exists()  # the federated run is kept


def test_demo_stops_in_generator_training(tmp_path):
    workdir = tmp_path / "demo"
    args = _demo(workdir, *SMALL, "--no-baselines", "--share", "synthetic")
    args += ["--run-config", FAST + ' synth-config="tiny" synth-train-steps=100000']
    out, took, started = _interrupt_at(args, tmp_path, "== generators", signal.SIGTERM, 3.0)
    assert "stopped during generators" in out, out
    _assert_nothing_left(workdir, started, out)


def test_simulate_stops_in_the_simulation(tmp_path):
    workdir = tmp_path / "sim"
    args = ["simulate", "--workdir", str(workdir), "--sites", "2", "--rounds", "20"]
    args += ["--cases-per-site", "4", "--run-config", FAST]
    out, took, started = _interrupt_at(args, tmp_path, "simulation run", signal.SIGINT, 3.0)
    assert "stopped during federated" in out, out
    _assert_nothing_left(workdir, started, out)
