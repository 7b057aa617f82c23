from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from common.data.intake import PROCESSED, QUARANTINED, REJECTED, prepare_site
from common.errors import IntakeError


def _reasons(report) -> dict[str, str]:
    return {f.path: f.reason for f in report.files if f.fate != PROCESSED}


def test_every_file_has_a_fate_and_counts_add_up(tiny_consortium, tmp_path):
    out, manifest = tiny_consortium
    site = out / "site-3"
    arrays, report = prepare_site(site, tmp_path / "state", image_size=64, new_secret=True)
    n_files = sum(1 for p in site.rglob("*") if p.is_file())
    c = report.counts()
    assert c["total"] == n_files == c[PROCESSED] + c[QUARANTINED] + c[REJECTED]
    reasons = _reasons(report)
    planted = {d["file"]: d["kind"] for d in manifest["sites"][2]["defects"]}
    for path in planted:
        assert path in reasons, f"planted defect {path} was not reported"
    assert reasons["README.txt"] == "not a DICOM file or supported image"
    assert any("without a mask" in r for r in reasons.values())
    assert any(r.startswith("pixel data truncated") for r in reasons.values())
    assert len(arrays) == manifest["sites"][2]["cases"] == report.cases
    assert arrays.images.shape == (len(arrays), 1, 64, 64) and arrays.images.dtype == np.float16
    assert 0.0 <= float(arrays.images.min()) and float(arrays.images.max()) <= 1.0
    assert set(np.unique(arrays.masks)) <= {0, 1} and arrays.masks.sum() > 0
    saved = json.loads((tmp_path / "state" / "intake_report.json").read_text())
    assert saved["counts"] == c


def test_cache_is_reused_and_rebuilt_when_the_folder_changes(tiny_consortium, tmp_path):
    out, _ = tiny_consortium
    site = tmp_path / "site"
    shutil.copytree(out / "site-1", site)
    a, _ = prepare_site(site, tmp_path / "state", 64, new_secret=True)
    cache = tmp_path / "state" / "cache" / "site-64.npz"
    stamp = cache.stat().st_mtime_ns
    b, _ = prepare_site(site, tmp_path / "state", 64)
    assert cache.stat().st_mtime_ns == stamp and np.array_equal(a.images, b.images)
    shutil.rmtree(next(site.iterdir()))
    c, _ = prepare_site(site, tmp_path / "state", 64)
    assert len(c) == len(a) - 1


def test_no_original_identifier_reaches_the_cache(tiny_consortium, tmp_path):
    import pydicom

    out, _ = tiny_consortium
    prepare_site(out / "site-2", tmp_path / "state", 64, new_secret=True)
    blob = b"".join(p.read_bytes() for p in (tmp_path / "state" / "cache").iterdir())
    for path in (out / "site-2").glob("*/image.dcm"):
        ds = pydicom.dcmread(path)
        for value in (
            ds.PatientID,
            str(ds.PatientName).split("^")[0],
            ds.AccessionNumber,
            ds.SOPInstanceUID,
        ):
            assert str(value).encode() not in blob


def test_burned_in_text_is_blanked_for_known_devices(tiny_consortium, tmp_path):
    import pydicom

    from common.deid.profile import SiteSecret, deidentify

    out, manifest = tiny_consortium
    site2 = out / manifest["sites"][1]["dir"]
    arrays, report = prepare_site(site2, tmp_path / "state", 128, new_secret=True)
    secret = SiteSecret.load(tmp_path / "state" / "site.secret")
    burned = [
        str(deidentify(pydicom.dcmread(p), secret).PatientID)
        for p in site2.glob("*/image.dcm")
        if pydicom.dcmread(p).BurnedInAnnotation == "YES"
    ]
    if not burned:
        pytest.skip("no burned-in image among the tiny consortium's cases")
    assert report.counts()[QUARANTINED] == 0
    rows = int(128 * 0.08)
    for pid in burned:
        band = arrays.images[list(arrays.cases).index(pid), :, :rows].astype(np.float32)
        assert float(band.std()) < 1e-3  # flat band: the text is gone


def test_unknown_device_with_burned_in_text_is_quarantined(tiny_consortium, tmp_path):
    import pydicom

    out, _ = tiny_consortium
    site = tmp_path / "site"
    shutil.copytree(next((out / "site-1").glob("MRN*")), site / "case")
    ds = pydicom.dcmread(site / "case" / "image.dcm")
    ds.BurnedInAnnotation = "YES"
    ds.save_as(site / "case" / "image.dcm")
    arrays, report = prepare_site(site, tmp_path / "state", 64, new_secret=True)
    fates = {f.path: (f.fate, f.reason) for f in report.files}
    assert fates["case/image.dcm"][0] == QUARANTINED
    assert "burned-in" in fates["case/image.dcm"][1]
    assert len(list((tmp_path / "state" / "quarantine").iterdir())) == 1
    assert len(arrays) == 0


def test_image_folders_with_second_annotator_and_bad_files(tmp_path):
    data = tmp_path / "data"
    for sub in ("images", "masks", "masks2"):
        (data / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(
            data / "images" / f"c{i}.png"
        )
        m = np.zeros((40, 50), np.uint8)
        m[10:20, 10:30] = 255
        Image.fromarray(m).save(data / "masks" / f"c{i}_mask.gif")
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(data / "masks2" / "c0.png")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(data / "masks2" / "c1.png")  # wrong size
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(data / "images" / "lonely.png")  # no mask
    (data / "masks" / "orphan.png").write_bytes(b"")  # no image, and empty
    (data / "junk.bin").write_bytes(b"\x00\x01garbage")
    (data / "empty.dcm").write_bytes(b"")
    (data / "dataset.json").write_text(json.dumps({"manufacturer": "Canon", "model": "CR5"}))
    arrays, report = prepare_site(data, tmp_path / "state", 32, new_secret=True)
    reasons = _reasons(report)
    assert len(arrays) == 3 and set(arrays.vendors) == {"Canon CR5"}
    assert arrays.has_mask2.tolist() == [True, False, False]
    assert "differs from its image" in reasons["masks2/c1.png"]
    assert reasons["images/lonely.png"] == "image without a mask"
    assert "without an image" in reasons["masks/orphan.png"]
    assert reasons["empty.dcm"] == "empty file (0 bytes)"
    assert "not a DICOM" in reasons["junk.bin"]
    c = report.counts()
    assert c["total"] == sum(1 for p in data.rglob("*") if p.is_file())


def test_missing_or_empty_data_dir(tmp_path):
    with pytest.raises(IntakeError, match="does not exist"):
        prepare_site(tmp_path / "nope", tmp_path / "state")
    (tmp_path / "empty").mkdir()
    arrays, report = prepare_site(tmp_path / "empty", tmp_path / "state", new_secret=True)
    assert len(arrays) == 0 and report.counts()["total"] == 0


def test_split_is_deterministic_and_disjoint(tiny_consortium, tmp_path):
    out, _ = tiny_consortium
    arrays, _ = prepare_site(out / "site-1", tmp_path / "state", 32, new_secret=True)
    train, val = arrays.split(0.25, seed=1)
    train2, val2 = arrays.split(0.25, seed=1)
    assert list(val.cases) == list(val2.cases) and len(val) == 2
    assert not set(train.cases) & set(val.cases)
    with pytest.raises(ValueError, match="val_fraction"):
        arrays.split(1.5)


def test_grouped_image_folders_each_with_their_camera(tmp_path):
    """One data dir, two cameras: each group's dataset.json names its vendor, and the same
    file name in two groups is two cases."""
    data = tmp_path / "heldout"
    for group, maker in (("canon", "Canon"), ("nidek", "Nidek")):
        for sub in ("images", "masks"):
            (data / group / sub).mkdir(parents=True)
        (data / group / "dataset.json").write_text(json.dumps({"manufacturer": maker}))
        for i in range(2):
            img = np.full((24, 24, 3), 60 * (i + 1), np.uint8)
            Image.fromarray(img).save(data / group / "images" / f"eye{i}.png")
            m = np.zeros((24, 24), np.uint8)
            m[4:9, 4:20] = 255
            Image.fromarray(m).save(data / group / "masks" / f"eye{i}.png")
    arrays, report = prepare_site(data, tmp_path / "state", 32, new_secret=True)
    assert len(arrays) == 4
    assert sorted(arrays.vendors.tolist()) == ["Canon", "Canon", "Nidek", "Nidek"]
    assert report.counts()["rejected"] == 0 and report.counts()["processed"] == 10


def _image_folder_site(images, masks, n: int = 4) -> None:
    """``n`` image/mask PNG pairs of a few sizes, written into ``images`` and ``masks``."""
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        h, w = 30 + 4 * (i % 2), 40
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
            images / f"eye{i}.png"
        )
        m = np.zeros((h, w), np.uint8)
        m[5:15, 5:25] = 255
        Image.fromarray(m).save(masks / f"eye{i}.png")


def test_folders_linked_from_elsewhere_prepare_like_real_folders(tmp_path):
    real = tmp_path / "real"
    _image_folder_site(real / "images", real / "masks")
    elsewhere = tmp_path / "elsewhere"
    _image_folder_site(elsewhere / "imgs", elsewhere / "msks")
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "images").symlink_to(elsewhere / "imgs", target_is_directory=True)
    (linked / "masks").symlink_to(elsewhere / "msks", target_is_directory=True)
    a, ra = prepare_site(real, tmp_path / "state-real", 32, new_secret=True)
    b, rb = prepare_site(linked, tmp_path / "state-linked", 32, new_secret=True)
    assert len(b) == len(a) == rb.cases == 4
    assert rb.counts() == ra.counts() == {PROCESSED: 8, QUARANTINED: 0, REJECTED: 0, "total": 8}
    assert [f.path for f in rb.files] == [f.path for f in ra.files]  # link paths, not targets
    assert sorted(b.cases.tolist()) == sorted(a.cases.tolist())
    assert np.array_equal(a.images, b.images) and np.array_equal(a.masks, b.masks)


def test_a_link_loop_ends_and_a_broken_link_is_rejected(tmp_path):
    data = tmp_path / "data"
    _image_folder_site(data / "images", data / "masks", n=2)
    (data / "images" / "loop").symlink_to("..", target_is_directory=True)
    (data / "masks" / "self").symlink_to(data / "masks", target_is_directory=True)
    (data / "scan.dcm").symlink_to(tmp_path / "gone.dcm")
    arrays, report = prepare_site(data, tmp_path / "state", 32, new_secret=True)
    assert len(arrays) == 2
    assert report.counts() == {PROCESSED: 4, QUARANTINED: 0, REJECTED: 1, "total": 5}
    assert _reasons(report) == {"scan.dcm": "broken symbolic link"}


def test_size_summary_gives_the_range_and_the_commonest_sizes():
    from common.data.intake import IntakeReport

    sizes = {f"{w}x{h}": 1 for w in range(500, 1351, 50) for h in range(500, 1081, 20)}
    sizes.update({"622x529": 35, "576x720": 20, "1280x1024": 18, "1350x1080": 2})
    report = IntakeReport(data_dir="d", image_sizes=sizes)
    text = report.size_summary()
    assert text == (
        f"500x500 to 1350x1080 ({len(sizes)} distinct); "
        "most common: 622x529 (35), 576x720 (20), 1280x1024 (18)"
    )
    assert len(report.size_summary(top=5)) < 150 and len(sizes) > 500
    assert IntakeReport(data_dir="d", image_sizes={"512x512": 40}).size_summary() == (
        "512x512 (all 40)"
    )
    assert IntakeReport(data_dir="d").size_summary() == "none"
    with pytest.raises(ValueError, match="top must be at least 1, got 0"):
        report.size_summary(top=0)


def test_a_report_saved_before_size_summaries_still_loads(tmp_path):
    """prepare_site reloads reports with IntakeReport(**saved): old JSON must still fit."""
    from common.data.intake import IntakeReport

    saved = {
        "data_dir": "d",
        "files": [],
        "cases": 3,
        "vendors": {"Canon": 3},
        "image_sizes": {"50x40": 2, "40x30": 1},
        "foreground_fraction": 0.1,
        "objects_per_case": 1.0,
        "empty_masks": 0,
        "second_annotator": 0,
        "counts": {},
    }
    report = IntakeReport(**{k: v for k, v in saved.items() if k != "counts"})
    assert report.size_summary() == "40x30 to 50x40 (2 distinct); most common: 50x40 (2), 40x30 (1)"


def test_the_report_keeps_every_image_size_commonest_first(tmp_path):
    data = tmp_path / "data"
    _image_folder_site(data / "images", data / "masks", n=5)
    _, report = prepare_site(data, tmp_path / "state", 32, new_secret=True)
    assert list(report.image_sizes.items()) == [("40x30", 3), ("40x34", 2)]
    saved = json.loads((tmp_path / "state" / "intake_report.json").read_text())
    assert saved["image_sizes"] == {"40x30": 3, "40x34": 2}


def test_image_folders_get_the_pixel_check(tmp_path):
    """No header vouches for a PNG: text is cleaned (the reason says so), the review sheet
    stays private, and every file's fate is recorded."""
    from PIL import Image, ImageDraw, ImageFont

    from common.deid import burned_in

    if not burned_in.detector_available():
        pytest.skip("text detector not installed (deploy/install.sh installs it)")
    site = tmp_path / "site"
    (site / "images").mkdir(parents=True)
    (site / "masks").mkdir()
    yy, xx = np.mgrid[:256, :256]
    organ = np.clip(40 + 160 * np.exp(-((xx - 140) ** 2 + (yy - 150) ** 2) / 5000), 0, 255)
    lesion = ((xx - 150) ** 2 + (yy - 160) ** 2) < 30**2
    for name, text in (("a", "12/03/2019 10:41:07"), ("b", None)):
        img = Image.fromarray(np.stack([organ, organ * 0.6, organ * 0.5], -1).astype(np.uint8))
        if text:
            ImageDraw.Draw(img).text(
                (6, 8), text, fill=(255, 255, 255), font=ImageFont.load_default(size=11)
            )
        img.save(site / "images" / f"{name}.png")
        Image.fromarray((lesion * 255).astype(np.uint8)).save(site / "masks" / f"{name}.png")
    arrays, report = prepare_site(site, tmp_path / "state", 64, new_secret=True)
    fates = {f.path: f for f in report.files}
    assert fates["images/a.png"].fate == PROCESSED
    assert fates["images/a.png"].reason.startswith("burned-in text cleaned")
    assert fates["images/b.png"].reason == "" and len(arrays) == 2
    review = tmp_path / "state" / "pixel_review.png"
    assert review.exists() and review.stat().st_mode & 0o777 == 0o600
    c = report.counts()
    assert c["processed"] + c["quarantined"] + c["rejected"] == c["total"] == 4
