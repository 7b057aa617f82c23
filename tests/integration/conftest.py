"""Integration tests' shared set-up: the container images' build, started early."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from container_engine import engine, start_build

BUILD_KEY = pytest.StashKey[object]()


def pytest_collection_finish(session: pytest.Session) -> None:
    """When the container tests are selected and an engine runs, start building the
    images now: the build overlaps the tests that run before them."""
    if not any("test_container_images.py" in item.nodeid for item in session.items):
        return
    name = engine()
    if name is not None:
        log = Path(tempfile.gettempdir()) / f"fedsynth-image-build-{os.getpid()}.log"
        session.config.stash[BUILD_KEY] = (name, start_build(name, log), log)


@pytest.fixture(scope="session")
def early_build(request) -> tuple[str, object, object] | None:
    """``(engine, process, log)`` of the build started at collection, or None."""
    return request.config.stash.get(BUILD_KEY, None)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A build still running when the session ends (tests deselected, interrupted) stops."""
    started = session.config.stash.get(BUILD_KEY, None)
    if started is not None and started[1].poll() is None:
        started[1].terminate()
        started[1].wait(timeout=60)
