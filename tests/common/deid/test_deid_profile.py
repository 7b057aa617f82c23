"""The Basic Profile from PS3.15 Table E.1-1, its options and its bookkeeping."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from common.deid.profile import DeidOptions, action_for, deidentify
from common.deid.ps315_e11 import EDITION
from common.deid.ps315_probe import leftovers, probe_dataset
from common.deid.pseudonyms import SiteSecret

SECRET = SiteSecret(b"0123456789abcdef0123456789abcdef")


def test_no_table_attribute_keeps_its_original_value():
    original = probe_dataset()
    assert len(original) > 500, "most of Table E.1-1 should be exercised"
    left = leftovers(original, deidentify(probe_dataset(), SECRET))
    assert left == [], f"{len(left)} attributes kept their original value: {left[:10]}"


def test_actions_come_from_the_table():
    assert EDITION == "2026d"
    assert action_for(Tag("PatientName")) == "Z"
    assert action_for(Tag("SOPInstanceUID")) == "U"
    assert action_for(Tag("Manufacturer")) == "K"  # not listed: kept
    assert action_for(Tag("DeviceSerialNumber"), DeidOptions(retain_device_identity=True)) == "K"
    assert action_for(Tag(0x0029, 0x1010)) == "X"  # private
    assert action_for(Tag(0x6000, 0x3000)) == "X"  # overlay data


def _study(patient: str, date: str) -> Dataset:
    ds = Dataset()
    ds.PatientID, ds.PatientName, ds.StudyDate = patient, f"{patient}^Test", date
    ds.DeviceSerialNumber, ds.SeriesDescription = "SN-998877", f"follow-up of {patient}"
    ds.SOPInstanceUID = f"1.2.840.99.{len(patient)}"
    return ds


def test_modified_dates_shift_consistently_per_patient():
    opts = DeidOptions(retain_longitudinal_modified_dates=True)
    a1 = deidentify(_study("MRN-A", "20200101"), SECRET, options=opts)
    a2 = deidentify(_study("MRN-A", "20200111"), SECRET, options=opts)
    b = deidentify(_study("MRN-B", "20200101"), SECRET, options=opts)
    assert a1.StudyDate not in ("", "20200101")
    assert int(a2.StudyDate) - int(a1.StudyDate) == 10  # intervals survive
    assert b.StudyDate != a1.StudyDate  # other patient, other shift
    assert a1.LongitudinalTemporalInformationModified == "MODIFIED"
    codes = [item.CodeValue for item in a1.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113107"]


def test_defaults_follow_the_basic_profile_and_say_so():
    ds = deidentify(_study("MRN-A", "20200101"), SECRET)
    assert not ds.StudyDate and "DeviceSerialNumber" not in ds or not ds.DeviceSerialNumber
    assert "SeriesDescription" not in ds
    assert ds.LongitudinalTemporalInformationModified == "REMOVED"
    assert [i.CodeValue for i in ds.DeidentificationMethodCodeSequence] == ["113100"]
    methods = ds.DeidentificationMethod
    methods = [methods] if isinstance(methods, str) else list(methods)
    assert methods == ["PS3.15 2026d Basic Profile (FedSynth)"]


def test_options_keep_what_they_promise():
    opts = DeidOptions(retain_device_identity=True, clean_descriptors=True)
    ds = deidentify(_study("MRN-A", "20200101"), SECRET, options=opts)
    assert ds.DeviceSerialNumber == "SN-998877"
    assert not ds.get("SeriesDescription")  # it named the patient: cleaned away
    clean = _study("MRN-A", "20200101")
    clean.SeriesDescription = "PA erect"
    assert deidentify(clean, SECRET, options=opts).SeriesDescription == "PA erect"
    with pytest.raises(ValueError, match="not both"):
        DeidOptions(retain_longitudinal_full_dates=True, retain_longitudinal_modified_dates=True)


def test_nested_sequences_are_cleaned_at_any_depth():
    ds = _study("MRN-A", "20200101")
    inner = Dataset()
    inner.PatientName = "Deep^Person"
    inner.ReferencedSOPInstanceUID = "1.2.840.99.5"
    middle = Dataset()
    middle.ReferencedSOPSequence = Sequence([inner])
    ds.ReferencedStudySequence = Sequence([middle])
    ds.SourceImageSequence = Sequence([Dataset()])
    ds.SourceImageSequence[0].ReferencedSOPInstanceUID = "1.2.840.99.5"
    out = deidentify(ds, SECRET)
    text = str(out)
    assert "Deep" not in text and "1.2.840.99.5" not in text
    if "ReferencedStudySequence" in out and len(out.ReferencedStudySequence):
        ref = out.ReferencedStudySequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        assert (
            ref == out.SourceImageSequence[0].ReferencedSOPInstanceUID == SECRET.uid("1.2.840.99.5")
        )


def _with_private_blocks() -> Dataset:
    ds = Dataset()
    ds.PatientName, ds.Modality = "Private^Carrier", "MR"
    siemens = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    siemens.add_new(0x0C, "IS", "1000")  # b-value: on the safe list
    siemens.add_new(0x0E, "FD", [0.0, 0.6, 0.8])  # gradient direction: on the list
    siemens.add_new(0x08, "LO", "Private^Carrier")  # text: not on the list
    other = ds.private_block(0x0029, "ACME NOTES", create=True)
    other.add_new(0x01, "IS", "19650412")  # numeric, but its block is not listed
    item = Dataset()
    nested = item.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    nested.add_new(0x0C, "LO", "1000")  # listed element with the wrong VR
    ds.ReferencedImageSequence = Sequence([item])
    return ds


def test_private_attributes_are_removed_by_default():
    ds = deidentify(_with_private_blocks(), SiteSecret(b"k" * 32))
    assert not any(elem.tag.is_private for elem in ds.iterall())


def test_retain_safe_private_keeps_only_listed_numeric_attributes():
    options = DeidOptions(retain_safe_private=True)
    ds = deidentify(_with_private_blocks(), SiteSecret(b"k" * 32), options=options)
    kept = {(e.tag.group, e.tag.element): e.value for e in ds.iterall() if e.tag.is_private}
    assert kept[(0x0019, 0x0010)] == "SIEMENS MR HEADER"  # its block kept something
    assert kept[(0x0019, 0x100C)] == 1000 and list(kept[(0x0019, 0x100E)]) == [0.0, 0.6, 0.8]
    assert set(kept) == {(0x0019, 0x0010), (0x0019, 0x100C), (0x0019, 0x100E)}
    codes = {item.CodeValue for item in ds.DeidentificationMethodCodeSequence}
    assert "113111" in codes  # Retain Safe Private Option, named because it was applied
