"""Shared fixtures: a tiny sample consortium generated once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.data.sampledata import write_consortium

RETINA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "retina"


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind(tmp_path_factory):
    """After the whole session: no process started by a test is still alive (Flower's
    SuperLink and SuperNodes, site trainers, Ray), found by the test folders they name."""
    yield
    from bench.stop_time import leftovers

    left = leftovers(tmp_path_factory.getbasetemp(), [], settle=1.0)
    assert not left, f"processes left behind by the tests: {left}"


@pytest.fixture(scope="session")
def tiny_consortium(tmp_path_factory) -> tuple[Path, dict]:
    """3 sites x 8 cases, 3 held-out cases per vendor, defects planted in site-3."""
    out = tmp_path_factory.mktemp("consortium") / "data"
    manifest = write_consortium(out, n_sites=3, cases_per_site=8, heldout_per_vendor=3, seed=0)
    return out, manifest


@pytest.fixture(scope="session")
def prepare():
    """``prepare(data_dir, state_dir, image_size)``: what ``fedsynth site prepare`` does.

    Training reads only prepared data, so every site a test trains must be prepared first.
    """
    from common.data.intake import prepare_site

    def _prepare(data_dir, state_dir, image_size: int):
        new = not (Path(state_dir) / "site.secret").exists()  # a new site: make its secret
        return prepare_site(Path(data_dir), Path(state_dir), image_size, new_secret=new)

    return _prepare


@pytest.fixture
def retina_dir() -> Path:
    """The shared retina data, or a skip that says where it was looked for."""
    if not RETINA.is_dir():
        pytest.skip(
            f"real retina data not found at {RETINA} (../shared/data/retina); "
            "these tests need the workplace's shared folder beside the repository"
        )
    return RETINA
