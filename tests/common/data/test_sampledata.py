from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest

from common.data.phantom import VENDORS, make_phantom
from common.data.sampledata import write_consortium


def test_manifest_lists_sites_vendors_and_counts(tiny_consortium):
    out, manifest = tiny_consortium
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert [s["name"] for s in manifest["sites"]] == ["site-1", "site-2", "site-3"]
    assert len({s["model"] for s in manifest["sites"]}) == 3
    unseen = [v for v in manifest["heldout"]["vendors"] if not v["seen_by_sites"]]
    assert len(unseen) >= 1, "held-out set must include a vendor no site has"
    for site in manifest["sites"][:2]:
        assert len(list((out / site["dir"]).glob("*/image.dcm"))) == site["cases"]


def test_each_site_has_its_own_vendor_appearance(tiny_consortium):
    out, manifest = tiny_consortium
    seen = {}
    for site in manifest["sites"]:
        ds = pydicom.dcmread(next((out / site["dir"]).glob("*/image.dcm")))
        assert ds.Manufacturer == site["manufacturer"]
        seen[site["name"]] = (ds.Rows, int(ds.BitsStored), str(ds.PhotometricInterpretation))
    assert len(set(seen.values())) == 3


def test_headers_carry_fake_phi_and_seg_references_its_image(tiny_consortium):
    out, _ = tiny_consortium
    case = next((out / "site-1").glob("*/image.dcm")).parent
    img = pydicom.dcmread(case / "image.dcm")
    seg = pydicom.dcmread(case / "nodules.seg.dcm")
    for keyword in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "InstitutionName",
        "ReferringPhysicianName",
        "AccessionNumber",
        "StudyDate",
        "StudyDescription",
    ):
        assert str(img.get(keyword, "")), keyword
    ref = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID
    assert ref == img.SOPInstanceUID
    assert seg.pixel_array.shape[-2:] == img.pixel_array.shape


def test_generator_is_deterministic(tmp_path):
    a = write_consortium(
        tmp_path / "a", n_sites=1, cases_per_site=4, heldout_per_vendor=1, defects=False
    )
    b = write_consortium(
        tmp_path / "b", n_sites=1, cases_per_site=4, heldout_per_vendor=1, defects=False
    )
    assert a == b
    fa = sorted((tmp_path / "a").rglob("*.dcm"))
    fb = sorted((tmp_path / "b").rglob("*.dcm"))
    assert [f.relative_to(tmp_path / "a") for f in fa] == [
        f.relative_to(tmp_path / "b") for f in fb
    ]
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(fa, fb))


def test_fills_an_existing_empty_folder_whose_parent_is_read_only(tmp_path):
    """A container's volume: the folder exists, empty, and its parent is not writable."""
    volume = tmp_path / "mnt" / "sample"
    volume.mkdir(parents=True)
    inode = volume.stat().st_ino  # a mount point cannot be replaced, only filled
    (tmp_path / "mnt").chmod(0o555)
    try:
        made = write_consortium(volume, n_sites=1, cases_per_site=4, heldout_per_vendor=1)
    finally:
        (tmp_path / "mnt").chmod(0o755)
    assert volume.stat().st_ino == inode
    assert [p.name for p in (tmp_path / "mnt").iterdir()] == ["sample"]
    assert sorted(p.name for p in volume.iterdir()) == ["heldout", "manifest.json", "site-1"]
    assert json.loads((volume / "manifest.json").read_text()) == made
    assert len(list((volume / "site-1").rglob("*.dcm"))) >= 4


def test_refuses_to_overwrite(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        write_consortium(tmp_path / "x", n_sites=1, cases_per_site=4)


def test_phantom_nodules_lie_in_lungs_and_vendor_render_shapes():
    att, mask = make_phantom(np.random.default_rng(3), size=96)
    assert mask.sum() > 0
    assert 0.0 <= att.min() and att.max() <= 1.0
    for v in VENDORS:
        stored = v.render(np.zeros((v.size, v.size), np.float32), np.random.default_rng(0))
        assert stored.max() <= 2**v.bits_stored - 1
    with pytest.raises(ValueError, match="shape"):
        VENDORS[0].render(att, np.random.default_rng(0))
