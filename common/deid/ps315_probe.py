"""A probe for de-identifiers: one dataset holding every attribute of PS3.15 Table E.1-1.

:func:`probe_dataset` fills every concrete tag of the table (file meta and command groups
aside) with a recognisable value of its VR, sequences with an item naming a person;
:func:`leftovers` lists the attributes a de-identifier left with their original value.
Used by the tests and by ``bench/deid_comparison.py``.

Example:
    >>> ds = probe_dataset()
    >>> len(ds) > 500, leftovers(ds, ds)[:1] != []
    (True, True)
"""

from __future__ import annotations

from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from common.deid.ps315_e11 import RULES

_NUMERIC = {"US": 7, "SS": -7, "UL": 70000, "SL": -70000, "FL": 1.5, "FD": 2.5, "UV": 9, "SV": -9}
_TEXT = {
    "DA": "20010203",
    "TM": "101010",
    "DT": "20010203101010",
    "DS": "12.5",
    "IS": "42",
    "CS": "ORIGCS",
    "AS": "042Y",
}


def _value(vr: str, i: int):
    if vr == "PN":
        return f"Orig^Name{i}"
    if vr == "UI":
        return f"1.2.3.4.{i}"
    if vr == "AE":
        return f"ORIGAE{i}"
    if vr in _TEXT:
        return _TEXT[vr]
    if vr in _NUMERIC:
        return _NUMERIC[vr]
    if vr in ("OB", "OW", "UN", "OF", "OD", "OL", "OV"):
        return b"ORIGDATA"
    if vr == "AT":
        return Tag(0x0010, 0x0010)
    if vr == "SQ":
        item = Dataset()
        item.PatientName = f"Nested^Person{i}"
        return Sequence([item])
    return f"ORIG{i:05d}"


def probe_dataset() -> Dataset:
    """A dataset with every concrete Table E.1-1 attribute that pydicom knows the VR of."""
    ds = Dataset()
    for i, key in enumerate(RULES):
        if not all(c in "0123456789ABCDEF" for c in key):
            continue
        tag = Tag(int(key, 16))
        if tag.group < 0x0008:
            continue  # command and file meta groups are not dataset attributes
        try:
            vr = dictionary_VR(tag).split(" or ")[0]
        except KeyError:
            continue
        ds.add_new(tag, vr, _value(vr, i))
    return ds


def leftovers(original: Dataset, result: Dataset) -> list[str]:
    """Keywords of attributes of ``original`` that ``result`` still holds unchanged."""
    left = []
    for elem in original:
        if elem.tag not in result:
            continue
        new = result[elem.tag]
        if elem.VR == "SQ":
            if any("Nested" in str(item.get("PatientName", "")) for item in new.value or []):
                left.append(elem.keyword or str(elem.tag))
        elif new.value == elem.value and new.value not in (None, "", b""):
            left.append(elem.keyword or str(elem.tag))
    return left
