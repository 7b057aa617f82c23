"""Ctrl-C during `fedsynth demo` stops every process the demo started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _processes_using(workdir: Path) -> list[int]:
    """PIDs whose environment points Flower at ``workdir`` (every process the demo starts)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if str(workdir).encode() in environ.read_bytes():
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return [p for p in found if p != os.getpid()]


def test_ctrl_c_stops_superlink_supernodes_and_trainers(tmp_path):
    workdir = tmp_path / "demo"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "deploy.cli",
            "demo",
            "--workdir",
            str(workdir),
            "--sites",
            "2",
            "--cases-per-site",
            "4",
            "--rounds",
            "50",
            "--no-baselines",
            "--run-config",
            "image-size=32",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    lines = []
    deadline = time.monotonic() + 300
    for line in proc.stdout:
        lines.append(line)
        if "submitted" in line or time.monotonic() > deadline:
            break
    assert any("submitted" in x for x in lines), "".join(lines)
    time.sleep(3)
    assert _processes_using(workdir), "the consortium should be running"
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    time.sleep(1)
    assert _processes_using(workdir) == []
