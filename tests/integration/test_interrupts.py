"""SIGINT and SIGTERM stop `fedsynth demo` and `fedsynth simulate` cleanly in every phase.

Each test starts the real command, waits for a phase's first line, sends the signal, and
checks that the command stopped (a generous watchdog, not a speed target: that one is in
bench/), said which phase it stopped in, left no process behind (Flower, site trainers,
OCR, Ray), and left the work folder in a state a re-run goes on from.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STOP_WATCHDOG = 60.0  # seconds; the benchmark's target is 10


def _processes_using(workdir: Path) -> list[int]:
    """PIDs whose command line or environment names ``workdir`` (all the command started:
    Flower's processes get FLWR_HOME under it, trainers and OCR inherit the CLI's cwd)."""
    found = []
    needle = str(workdir).encode()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if (
                needle in (proc / "environ").read_bytes()
                or needle in (proc / "cmdline").read_bytes()
            ):
                found.append(int(proc.name))
        except OSError:
            continue
    return [p for p in found if p != os.getpid()]


def _children_of(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                out.append(int(stat.parent.name))
                todo.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _interrupt_at(args: list[str], cwd: Path, marker: str, sig: int, delay: float = 0.0):
    """Run ``fedsynth ARGS``, send ``sig`` once a line contains ``marker``.

    Returns:
        ``(output, seconds from the signal to exit, pids the command had started)``.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "deploy.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"},
    )
    lines = []
    deadline = time.monotonic() + 600
    for line in proc.stdout:
        lines.append(line)
        if marker in line or time.monotonic() > deadline:
            break
    if marker not in "".join(lines):
        proc.kill()
        pytest.fail(f"never reached {marker!r}:\n{''.join(lines)}{proc.stdout.read()}")
    time.sleep(delay)
    started = _children_of(proc.pid)
    sent = time.monotonic()
    proc.send_signal(sig)
    try:
        rest, _ = proc.communicate(timeout=STOP_WATCHDOG)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"still running {STOP_WATCHDOG:.0f} s after the signal:\n{''.join(lines)}")
    took = time.monotonic() - sent
    output = "".join(lines) + rest
    assert proc.returncode != 0, output
    return output, took, started


def _assert_nothing_left(workdir: Path, started: list[int], output: str) -> None:
    time.sleep(1)
    left = [p for p in started if _alive(p)] + _processes_using(workdir)
    assert not left, f"processes left behind: {left}\n{output}"


def _demo(workdir: Path, *extra: str) -> list[str]:
    return ["demo", "--workdir", str(workdir), *extra]


SMALL = ["--sites", "2", "--cases-per-site", "4", "--rounds", "2"]
FAST = "image-size=32 local-epochs=1 round-timeout=120.0"


def test_demo_stops_in_sample_data_and_intake_and_a_rerun_goes_on(tmp_path):
    workdir = tmp_path / "demo"
    args = _demo(workdir, "--sites", "3", "--no-baselines", "--rounds", "1")
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

    # The next re-run goes on through intake to the federated phase.
    out, took, started = _interrupt_at(args, tmp_path, "submitted", signal.SIGTERM, 2.0)
    assert "stopped during federated" in out, out
    _assert_nothing_left(workdir, started, out)


def test_demo_stops_in_generator_training(tmp_path):
    workdir = tmp_path / "demo"
    args = _demo(workdir, *SMALL, "--no-baselines", "--share", "synthetic")
    args += ["--run-config", FAST + ' synth-config="tiny" synth-train-steps=100000']
    out, took, started = _interrupt_at(args, tmp_path, "== generators", signal.SIGTERM, 3.0)
    assert "stopped during generators" in out, out
    _assert_nothing_left(workdir, started, out)


def test_demo_stops_in_baselines(tmp_path):
    workdir = tmp_path / "demo"
    args = _demo(workdir, *SMALL, "--run-config", FAST + " local-epochs=30")
    out, took, started = _interrupt_at(args, tmp_path, "== baselines", signal.SIGTERM, 0.5)
    assert "stopped during baselines" in out, out
    _assert_nothing_left(workdir, started, out)
    run_dir = next((workdir / "runs").iterdir())
    assert (run_dir / "metrics.jsonl").exists()  # the federated run is kept


def test_simulate_stops_in_the_simulation(tmp_path):
    workdir = tmp_path / "sim"
    args = ["simulate", "--workdir", str(workdir), "--sites", "2", "--rounds", "20"]
    args += ["--cases-per-site", "4", "--run-config", FAST]
    out, took, started = _interrupt_at(args, tmp_path, "simulation run", signal.SIGINT, 3.0)
    assert "stopped during federated" in out, out
    _assert_nothing_left(workdir, started, out)
