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
    assert not left, f"processes left behind by the tests: {_commands(left)}"


def _commands(pids: list[int]) -> list[str]:
    """Each PID with its command line (or that it has exited since)."""
    out = []
    for pid in pids:
        try:
            cmd = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ")
            out.append(f"{pid}: {cmd.decode(errors='replace').strip()[:200]}")
        except OSError:
            out.append(f"{pid}: (exited)")
    return out


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


@pytest.fixture(scope="session")
def colour_consortium(tmp_path_factory) -> Path:
    """Two colour sites and a colour held-out set of image folders (``site-1``,
    ``site-2``, ``heldout`` with two vendors): red lesions on pink mucosa, where the lesion
    differs from its surroundings in hue more than in brightness."""
    import json

    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("colour") / "data"
    rng = np.random.default_rng(0)
    groups = {"site-1": ("site-1", 10), "site-2": ("site-2", 10)}
    groups.update({"heldout/a": ("A", 4), "heldout/b": ("B", 4)})
    for folder, (vendor, n) in groups.items():
        out = root / folder
        (out / "images").mkdir(parents=True)
        (out / "masks").mkdir()
        (out / "dataset.json").write_text(json.dumps({"manufacturer": vendor, "model": "cam"}))
        for i in range(n):
            yy, xx = np.mgrid[0:48, 0:48] / 48
            cy, cx, r = *rng.uniform(0.3, 0.7, 2), rng.uniform(0.12, 0.2)
            lesion = ((yy - cy) ** 2 + (xx - cx) ** 2) < r**2
            shade = 0.75 + 0.2 * rng.random() + 0.05 * np.sin(9 * xx + 5 * yy)
            rgb = np.stack([shade, 0.55 * shade, 0.55 * shade], axis=-1)
            rgb[lesion] = np.stack([shade, 0.3 * shade, 0.3 * shade], axis=-1)[lesion]
            Image.fromarray((rgb * 255).astype(np.uint8)).save(out / "images" / f"{i}.png")
            Image.fromarray(lesion.astype(np.uint8) * 255).save(out / "masks" / f"{i}.png")
    return root
