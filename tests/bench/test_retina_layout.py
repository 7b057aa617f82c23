"""The retina benchmark's consortium, built from ../shared/data/retina (skipped without it)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from common.data.intake import prepare_site

pytestmark = [pytest.mark.retina, pytest.mark.slow]


def test_drive_and_chase_enter_through_the_site_intake(retina_dir, tmp_path):
    from bench.retina import layout

    manifest = layout.build(tmp_path / "data")
    assert [s["cases"] for s in manifest["sites"]] == [20, 14]
    assert manifest["heldout"]["groups"] == {"drive": 20, "chase": 14}
    links = [p for p in (tmp_path / "data").rglob("*") if p.is_file()]
    assert all(p.is_symlink() or p.name in ("dataset.json", "manifest.json") for p in links)

    site2, report = prepare_site(tmp_path / "data" / "site-2", tmp_path / "s2", 64, new_secret=True)
    assert len(site2) == 14 and set(site2.vendors) == {"Nidek NM-200-D"}
    assert site2.has_mask2.all() and report.counts()["rejected"] == 0
    assert 0.3 < site2.fov.mean() < 0.95  # the round aperture, not the whole square
    assert 0.03 < site2.masks.mean() < 0.2  # thin vessels, thresholded at > 127

    # The held-out set: the same layout (the site's intake above reads it the same way),
    # checked from its links: both observers, both cameras, and no CHASE child on both sides.
    held = tmp_path / "data" / "heldout"
    images = sorted(p.stem for p in held.glob("*/images/*"))
    assert len(images) == 34
    assert sorted(p.stem for p in held.glob("*/masks2/*")) == images
    cameras = {json.loads(d.read_text())["model"] for d in held.glob("*/dataset.json")}
    assert cameras == {"CR5 non-mydriatic 3CCD", "NM-200-D"}
    site_children = {c.split("_")[1][:2] for c in site2.cases}
    held_children = {c.split("_")[1][:2] for c in images if c.startswith("Image_")}
    assert site_children and held_children and not site_children & held_children


def test_second_observer_agrees_with_the_first_as_published(retina_dir, tmp_path):
    """DRIVE's second observer against the first, inside the FOV, at full resolution:
    about 0.79 Dice in the literature; a wrong threshold or FOV would move it far."""
    from PIL import Image

    from common.seg.metrics import case_metrics

    root = retina_dir / "DRIVE" / "test"
    dice = []
    for n in range(1, 21):

        def read(folder, name):
            return np.asarray(Image.open(root / folder / name).convert("L")) > 127

        fov = read("mask", f"{n:02d}_test_mask.gif")
        first = read("1st_manual", f"{n:02d}_manual1.gif") & fov
        second = read("2nd_manual", f"{n:02d}_manual2.gif") & fov
        dice.append(case_metrics(second, first)["dice"])
    assert 0.75 < float(np.mean(dice)) < 0.83
