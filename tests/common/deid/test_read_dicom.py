from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest

from common.deid.anonymize import read_dicom
from common.errors import IntakeError

BAD_UID = "1.2.840.SMITHJOHN.1955"  # letters are not allowed in a UI value
BAD_NESTED = "9.9.DOEJANE"


@pytest.fixture
def warning_file(tmp_path, monkeypatch):
    """A DICOM file whose UI values break their VR, one of them inside a sequence."""
    from pydicom import config
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    # pydicom validates on assignment with the reading mode, and on writing with the other
    monkeypatch.setattr(config.settings, "writing_validation_mode", config.IGNORE)
    monkeypatch.setattr(config.settings, "reading_validation_mode", config.IGNORE)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = BAD_UID
    item = Dataset()
    item.ReferencedSOPInstanceUID = BAD_NESTED
    ds.ReferencedImageSequence = [item]
    path = tmp_path / "bad.dcm"
    ds.save_as(path, enforce_file_format=True)
    monkeypatch.setattr(config.settings, "reading_validation_mode", config.WARN)  # the default
    return path


def test_the_file_does_make_pydicom_warn(warning_file):
    import pydicom

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pydicom.dcmread(warning_file).walk(lambda _ds, _elem: None)
    text = " ".join(str(w.message) for w in caught)
    assert BAD_UID in text and BAD_NESTED in text  # what must not reach a terminal or log


def test_reading_warnings_go_to_one_debug_line_without_values(warning_file, caplog):
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = read_dicom(warning_file)
        assert str(ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID) == BAD_NESTED
    assert caught == []
    ours = [r for r in caplog.records if r.name == "common.deid.anonymize"]
    assert len(ours) == 1 and ours[0].levelno == logging.DEBUG
    assert "2 warning(s)" in ours[0].getMessage() and "UserWarning x2" in ours[0].getMessage()
    for value in (BAD_UID, BAD_NESTED, "SMITHJOHN", "DOEJANE"):
        assert value not in caplog.text
    assert not [r for r in caplog.records if r.name.startswith("pydicom")]


def test_a_clean_read_logs_nothing_and_the_pydicom_log_is_restored(tmp_path, caplog):
    from pydicom.data import get_testdata_file

    caplog.set_level(logging.DEBUG)
    read_dicom(Path(get_testdata_file("CT_small.dcm")))
    assert not [r for r in caplog.records if r.name == "common.deid.anonymize"]
    assert logging.getLogger("pydicom").filters == []
    (tmp_path / "empty.dcm").write_bytes(b"")
    with pytest.raises(IntakeError, match="empty file"):
        read_dicom(tmp_path / "empty.dcm")
    assert logging.getLogger("pydicom").filters == []
