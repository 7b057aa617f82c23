from __future__ import annotations

import pydicom
import pytest

from common.deid.profile import SiteSecret, deidentify

SECRET = SiteSecret(b"0123456789abcdef0123456789abcdef")
IDENTIFYING = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "InstitutionName",
    "InstitutionAddress",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "OperatorsName",
    "AccessionNumber",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "ImageComments",
    "OtherPatientIDs",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "DeviceSerialNumber",
    "StationName",
    "IssuerOfPatientID",
)


def _originals(ds) -> list[str]:
    vals = []
    for kw in IDENTIFYING:
        if kw in ds and str(ds.data_element(kw).value):
            vals.append(str(ds.data_element(kw).value))
    vals.append(str(ds.SOPInstanceUID))
    vals.append(str(ds.StudyInstanceUID))
    return vals


def test_no_original_identifier_in_any_output_byte(tiny_consortium, tmp_path):
    out, _ = tiny_consortium
    for path in sorted((out / "site-2").glob("*/*.dcm"))[:6]:
        original = pydicom.dcmread(path)
        values = _originals(original)
        ds = deidentify(pydicom.dcmread(path), SECRET)
        target = tmp_path / path.name
        ds.save_as(target, enforce_file_format=True)
        data = target.read_bytes()
        for v in values:
            for piece in {v, v.replace("^", " "), v.split("^")[0]}:
                if len(piece) >= 4:
                    assert piece.encode() not in data, f"{piece!r} survived in {path.name}"
        assert ds.PatientIdentityRemoved == "YES"
        assert not any(e.tag.is_private for e in ds.iterall())
        assert data[:128] == b"\x00" * 128


def test_pseudonyms_are_stable_keyed_and_keep_references(tiny_consortium):
    out, _ = tiny_consortium
    case = next((out / "site-1").glob("*/image.dcm")).parent
    img = deidentify(pydicom.dcmread(case / "image.dcm"), SECRET)
    seg = deidentify(pydicom.dcmread(case / "nodules.seg.dcm"), SECRET)
    ref = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID
    assert ref == img.SOPInstanceUID == img.file_meta.MediaStorageSOPInstanceUID
    assert str(img.SOPInstanceUID).startswith("2.25.")
    assert img.SOPClassUID == pydicom.dcmread(case / "image.dcm").SOPClassUID  # public UID kept
    again = deidentify(pydicom.dcmread(case / "image.dcm"), SECRET)
    assert again.PatientID == img.PatientID and len(str(img.PatientID)) <= 16
    other = deidentify(pydicom.dcmread(case / "image.dcm"), SiteSecret(b"another-site-secret-key!"))
    assert other.PatientID != img.PatientID
    assert img.Manufacturer and img.ManufacturerModelName  # kept for per-vendor evaluation


def test_secret_file_is_made_only_on_purpose_private_and_reused(tmp_path):
    from common.deid.pseudonyms import SiteSecretError

    path = tmp_path / "s" / "site.secret"
    with pytest.raises(SiteSecretError, match=f"no site secret at {path}"):
        SiteSecret.load(path)
    assert not path.exists() and not path.parent.exists()  # nothing made by accident
    a = SiteSecret.create(path)
    assert path.stat().st_mode & 0o777 == 0o600
    b = SiteSecret.load(path)
    assert a.pseudonym("PatientID", "x") == b.pseudonym("PatientID", "x")
    with pytest.raises(SiteSecretError, match="never replaced"):
        SiteSecret.create(path)
    assert SiteSecret.load(path).pseudonym("PatientID", "x") == a.pseudonym("PatientID", "x")
    with pytest.raises(ValueError, match="at least 16 bytes"):
        SiteSecret(b"short")
