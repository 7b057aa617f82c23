"""The chest X-ray benchmark's consortium, built from ../shared/data/cxr (skipped without it)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_three_countries_split_by_patient_and_read_through_the_site_intake(tmp_path):
    from bench.cxr import layout
    from common.data.intake import prepare_site

    if not layout.CXR.is_dir():
        pytest.skip(f"chest X-ray data not found at {layout.CXR} (../shared/data/cxr)")
    manifest = layout.build(tmp_path / "data")
    sites = {s["name"]: s["cases"] for s in manifest["sites"]}
    held = manifest["heldout"]["groups"]
    assert {n: sites[n] + held[n] for n in sites} == {
        "montgomery": 138,
        "shenzhen": 566,
        "jsrt": 247,
    }
    for name in sites:  # about a fifth of each site is held out, none in both
        assert 0.12 < held[name] / (sites[name] + held[name]) < 0.28
        at_site = {p.name for p in (tmp_path / "data" / name / "images").iterdir()}
        heldout = {p.name for p in (tmp_path / "data" / "heldout" / name / "images").iterdir()}
        assert at_site and heldout and not at_site & heldout
    assert layout.build(tmp_path / "again")["split"] == manifest["split"]  # deterministic
    links = [p for p in (tmp_path / "data").rglob("*.png")]
    assert links and all(p.is_symlink() for p in links)

    arrays, report = prepare_site(
        tmp_path / "data" / "montgomery", tmp_path / "s", 64, new_secret=True
    )
    assert set(arrays.vendors) == {"Eureka CR (Montgomery, USA)"}
    c = report.counts()
    assert c["total"] == 2 * sites["montgomery"] + 1  # images, masks and dataset.json
    assert c["processed"] + c["quarantined"] + c["rejected"] == c["total"]
    assert len(arrays) >= 0.9 * sites["montgomery"]  # a few may be held for burned-in text
    assert 0.15 < arrays.masks.mean() < 0.5  # two lungs, not a sliver and not everything
