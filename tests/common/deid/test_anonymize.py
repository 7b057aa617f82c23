"""fedsynth anonymize: pydicom's bundled files (many vendors and encodings) and planted PHI."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pydicom
import pytest

from common.deid.anonymize import QUARANTINED, REJECTED, WRITTEN, anonymize_folder, deidentify_file
from common.deid.pseudonyms import TABLE_FILE, ReidentificationTable, SiteSecret
from common.errors import IntakeError

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def pydicom_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("anon")
    before = _tree_digest(PYDICOM_FILES)
    report = anonymize_folder(
        PYDICOM_FILES, base / "out", base / "state" / "site.secret", new_secret=True
    )
    assert _tree_digest(PYDICOM_FILES) == before, "the input folder was modified"
    return base, report


def test_every_input_has_one_fate_and_counts_add_up(pydicom_run):
    base, report = pydicom_run
    n_inputs = sum(1 for p in PYDICOM_FILES.rglob("*") if p.is_file())
    assert report.inputs == n_inputs == len(report.files) == sum(report.counts.values())
    fates = {f["input"]: f for f in report.files}
    written = {f["input"] for f in report.files if f["fate"] == WRITTEN}
    for family in ("jls", "j2k", "jpeg"):  # compressed transfer syntaxes are handled
        assert any(family in name.lower() for name in written), family
    dup = [f for f in report.files if "same SOPInstanceUID" in f.get("reason", "")]
    assert dup, "pydicom's files repeat instances in several encodings"
    assert "DICOMDIR" in fates["dicomdirtests/DICOMDIR"]["reason"]
    assert fates["README.txt"]["reason"] == "not a DICOM file or supported image"
    assert all(f["reason"] for f in report.files if f["fate"] in (QUARANTINED, REJECTED))
    saved = json.loads((base / "state" / "anonymization_report.json").read_text())
    assert saved["counts"] == report.counts
    summary = json.loads((base / "out" / "anonymization_summary.json").read_text())
    assert summary == {"inputs": report.inputs, "counts": report.counts}


def test_no_original_identifier_in_any_output_byte(pydicom_run):
    base, report = pydicom_run
    checked = 0
    for f in report.files:
        if f["fate"] != WRITTEN:
            continue
        src = pydicom.dcmread(PYDICOM_FILES / f["input"], force=True)
        data = (base / "out" / f["output"]).read_bytes()
        out = pydicom.dcmread(base / "out" / f["output"])
        kept = " ".join(str(out.get(k, "")) for k in ("Manufacturer", "ManufacturerModelName"))
        for kw in (
            "PatientName",
            "PatientID",
            "PatientBirthDate",
            "StudyDate",
            "InstitutionName",
            "ReferringPhysicianName",
            "AccessionNumber",
            "SOPInstanceUID",
            "StudyInstanceUID",
            "SeriesInstanceUID",
        ):
            value = str(src.get(kw, "") or "").strip()
            if len(value) >= 4 and len(set(value)) > 1 and value not in kept:
                assert value.encode() not in data, f"{kw} of {f['input']} survived"
        assert out.PatientIdentityRemoved == "YES"
        assert not any(e.tag.is_private for e in out.iterall())
        assert out.preamble == b"\x00" * 128
        checked += 1
    assert checked >= 40


def test_reidentify_maps_pseudonyms_back(pydicom_run):
    base, report = pydicom_run
    f = next(f for f in report.files if f["input"] == "CT_small.dcm")
    out = pydicom.dcmread(base / "out" / f["output"])
    secret = SiteSecret((base / "state" / "site.secret").read_bytes())
    table = ReidentificationTable(base / "state" / TABLE_FILE, secret)
    src = pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm")
    assert table.lookup(str(out.PatientID)) == {"kind": "PatientID", "value": src.PatientID}
    assert table.lookup(str(out.SOPInstanceUID))["value"] == src.SOPInstanceUID
    raw = (base / "state" / TABLE_FILE).read_bytes()
    assert src.PatientID.encode() not in raw  # encrypted at rest
    with pytest.raises(ValueError, match="cannot be decrypted"):
        ReidentificationTable(base / "state" / TABLE_FILE, SiteSecret(b"x" * 32))


def test_workers_give_the_same_outputs(pydicom_run, tmp_path):
    base, report = pydicom_run
    shutil.copy(base / "state" / "site.secret", tmp_path / "site.secret")
    parallel = anonymize_folder(
        PYDICOM_FILES, tmp_path / "out", tmp_path / "site.secret", workers=2
    )
    assert parallel.counts == report.counts
    for f in report.files:
        if f["fate"] == WRITTEN and "note" not in f:
            assert (tmp_path / "out" / f["output"]).read_bytes() == (
                base / "out" / f["output"]
            ).read_bytes()


def _planted(tmp_path: Path) -> Path:
    ds = pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm")
    ds.PatientName = "Planted^Person"
    seq_item = pydicom.Dataset()
    seq_item.PatientName = "Nested^Name"
    seq_item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    ds.ReferencedImageSequence = [seq_item]
    ds.RequestAttributesSequence = [pydicom.Dataset()]
    ds.RequestAttributesSequence[0].RequestedProcedureID = "REQ-PLANTED-99"
    block = ds.private_block(0x0041, "PLANTED VENDOR", create=True)
    block.add_new(0x01, "LO", "Planted^Person")
    ds.ImageComments = "patient Planted Person, MRN 123456"
    ds.file_meta.SourceApplicationEntityTitle = "PLANTED_AE"
    path = tmp_path / "planted.dcm"
    ds.save_as(path)
    return path


def test_planted_phi_in_sequences_private_tags_text_and_meta_is_removed(tmp_path):
    result = deidentify_file(_planted(tmp_path), SiteSecret(b"k" * 32))
    for needle in (b"Planted", b"Nested", b"REQ-PLANTED", b"PLANTED_AE", b"123456"):
        assert needle not in result.data, needle


def test_verification_quarantines_what_the_rules_miss(tmp_path, monkeypatch):
    import common.deid.anonymize as anonymize

    path = _planted(tmp_path)
    real = anonymize.deidentify

    def leaky(ds, secret, mapping=None, *args, **kwargs):  # a rule gap: comments survive
        comments = ds.ImageComments
        real(ds, secret, mapping, *args, **kwargs)
        ds.ContentDescription = comments
        return ds

    monkeypatch.setattr(anonymize, "deidentify", leaky)
    with pytest.raises(IntakeError, match="self-verification") as err:
        deidentify_file(path, SiteSecret(b"k" * 32))
    assert err.value.quarantine
    assert "Planted" not in str(err.value)  # the reason names attributes, not values


def test_output_inside_input_is_refused(tmp_path):
    (tmp_path / "in").mkdir()
    with pytest.raises(IntakeError, match="inside the input"):
        anonymize_folder(tmp_path / "in", tmp_path / "in" / "out", tmp_path / "s.secret")


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_RLE.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_jp2klossless.dcm",
        "JPGExtended.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
    ],
)
def test_compressed_pixel_data_decodes(name):
    """The setup installs decoders for RLE, JPEG-LS, JPEG 2000 and JPEG."""
    ds = pydicom.dcmread(PYDICOM_FILES / name)
    assert ds.file_meta.TransferSyntaxUID.is_compressed
    assert ds.pixel_array.size > 0


def test_multi_frame_ultrasound_with_burned_in_text_is_cleaned(tmp_path):
    """pydicom's 30-frame JPEG ultrasound (YBR) carries text; it is cleaned frame by frame
    or quarantined, never written with text."""
    from common.deid import burned_in

    if not burned_in.ocr_available():
        pytest.skip("tesseract not installed (deploy/install.sh installs it)")
    try:
        result = deidentify_file(PYDICOM_FILES / "examples_ybr_color.dcm", SiteSecret(b"k" * 32))
    except IntakeError as err:
        assert err.quarantine and "frame" in str(err)
        return
    out = pydicom.dcmread(__import__("io").BytesIO(result.data))
    assert int(out.NumberOfFrames) == 30
    assert all(not burned_in.read_words(frame) for frame in out.pixel_array)
