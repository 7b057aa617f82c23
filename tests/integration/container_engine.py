"""The container engine that runs here, and the image build started early.

Building FedSynth's images from nothing takes minutes (a Debian base, the Python stack,
Tesseract). ``conftest.py`` starts ``deploy/docker/build.sh`` in the background as soon
as a session knows it will run the container tests, so the build overlaps the unit
tests instead of adding to the suite's time; the ``images`` fixture waits for it and then
runs the same script again (a cached rebuild, seconds), whose result is what it asserts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "deploy" / "docker" / "build.sh"


def engine() -> str | None:
    """``$FEDSYNTH_ENGINE``, else podman or docker, whichever answers ``info``; or None."""
    candidates = [os.environ["FEDSYNTH_ENGINE"]] if "FEDSYNTH_ENGINE" in os.environ else []
    for name in candidates or ["podman", "docker"]:
        if shutil.which(name) is None:
            continue
        try:
            ok = subprocess.run([name, "info"], capture_output=True, timeout=60).returncode == 0
        except subprocess.TimeoutExpired:
            continue
        if ok:
            return name
    return None


def start_build(name: str, log: Path) -> subprocess.Popen:
    """``build.sh`` with engine ``name`` in the background, its output in ``log``."""
    with log.open("w") as out:
        return subprocess.Popen(
            ["bash", str(BUILD)],
            env={**os.environ, "FEDSYNTH_ENGINE": name},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
