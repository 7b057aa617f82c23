"""Seconds from SIGTERM to exit, in every phase of ``fedsynth demo`` and ``fedsynth simulate``.

Starts the real command, waits for a phase's first line (plus a delay, so that the phase
is under way), sends SIGTERM, and records how long the command took to exit and whether
any process it started was left behind (Flower's processes, site trainers, OCR, Ray).
Target: at most 10 s in every phase, nothing left.

Usage::

    python bench/stop_time.py [--out bench/results/stop_time.json]

The helpers here (:func:`interrupt_at`, :func:`leftovers`) are also what
``tests/integration/test_interrupts.py`` uses.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from deploy.local.processes import _alive, descendants

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Interrupted:
    """One interrupted command: its output, the seconds from the signal to its exit, the
    PIDs it had started when it was signalled, and its exit code."""

    output: str
    seconds: float
    started: list[int]
    returncode: int


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt_at(
    args: list[str],
    cwd: Path,
    marker: str,
    sig: int = signal.SIGTERM,
    delay: float = 0.0,
    watchdog: float = 60.0,
) -> Interrupted:
    """Run ``fedsynth ARGS``; send ``sig`` ``delay`` seconds after a line contains ``marker``.

    Raises:
        RuntimeError: the command never printed ``marker``, or was still running
            ``watchdog`` seconds after the signal (it is then killed).
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "deploy.cli.main", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"},
        # Ctrl-C as a person at a terminal sends it: a caller started in the background
        # by a shell without job control ignores SIGINT, and its children would inherit that
        preexec_fn=_default_sigint,
    )
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if marker in line:
            break
    if marker not in "".join(lines):
        proc.kill()
        raise RuntimeError(f"never reached {marker!r}:\n{''.join(lines)}{proc.stdout.read()}")
    time.sleep(delay)
    started = descendants(proc.pid)
    sent = time.monotonic()
    proc.send_signal(sig)
    try:
        rest, _ = proc.communicate(timeout=watchdog)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise RuntimeError(
            f"still running {watchdog:.0f} s after the signal:\n{''.join(lines)}"
        ) from None
    return Interrupted("".join(lines) + rest, time.monotonic() - sent, started, proc.returncode)


def _ancestors() -> set[int]:
    """This process's parents up to init (their command lines may name the test folder)."""
    out, pid = set(), os.getppid()
    while pid > 1:
        out.add(pid)
        try:
            stat = (Path("/proc") / str(pid) / "stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return out


def leftovers(workdir: Path, started: list[int], settle: float = 1.0) -> list[int]:
    """Processes still alive that the command started, or whose command line or
    environment names ``workdir`` (Flower's processes get their FLWR_HOME under it)."""
    time.sleep(settle)
    needle = str(workdir).encode()
    found = [p for p in started if _alive(p)]
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if (
                needle in (proc / "environ").read_bytes()
                or needle in (proc / "cmdline").read_bytes()
            ):
                found.append(int(proc.name))
        except OSError:
            continue
    # this process and its parents (e.g. `timeout ... --basetemp=DIR`) name it too
    mine = {os.getpid(), *_ancestors()}
    return sorted({p for p in found if p not in mine})


def _scenarios(tmp: Path) -> list[tuple[str, list[str], str, float]]:
    """(phase, fedsynth arguments, marker, delay): the default demo's phases on the
    default sample data where a phase is long enough, smaller runs to reach the later ones."""
    demo = tmp / "demo"
    base = ["demo", "--workdir", str(demo), "--no-baselines"]
    small = ["--sites", "2", "--cases-per-site", "8"]
    return [
        ("sample-data", base, "== sample-data", 1.0),
        ("intake", base, "== intake", 0.0),
        ("federated", base, "submitted", 20.0),
        (
            "generators",
            ["demo", "--workdir", str(tmp / "synth"), *small, "--share", "synthetic"],
            "== generators",
            5.0,
        ),
        (
            "baselines",
            ["demo", "--workdir", str(tmp / "base"), *small, "--rounds", "1"]
            + ["--local-epochs", "30"],
            "== baselines",
            3.0,
        ),
        (
            "simulate: federated",
            ["simulate", "--workdir", str(tmp / "sim"), "--sites", "3", "--rounds", "20"],
            "simulation run",
            10.0,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "stop_time.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="fedsynth-stop-") as tmp:
        for phase, cli, marker, delay in _scenarios(Path(tmp)):
            res = interrupt_at(cli, ROOT, marker, signal.SIGTERM, delay)
            workdir = Path(cli[cli.index("--workdir") + 1])
            left = leftovers(workdir, res.started)
            stopped = f"stopped during {phase.split(': ')[-1]}" in res.output
            rows.append(
                {
                    "phase": phase,
                    "seconds to exit": round(res.seconds, 2),
                    "stopped in that phase": stopped,
                    "processes started": len(res.started),
                    "processes left": len(left),
                    "exit code": res.returncode,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    result = {"measured": time.strftime("%Y-%m-%d %H:%M"), "signal": "SIGTERM", "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
