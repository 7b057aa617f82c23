"""Private attributes that the Retain Safe Private option keeps (PS3.15 E.3.10).

The standard lists its safe private attributes in Table E.3.10-1; the pinned
machine-readable source this project generates its rules from
(:mod:`common.deid.ps315_generate`) holds Table E.1-1 only, so the entries below were
transcribed by hand from E.3.10-1 and limited to what segmentation and diffusion-MRI
pipelines read: acquisition numbers. Each entry also names the value representation it
must carry, and only numeric ones are listed: a number cannot hold a name, and an element
whose VR differs (an implicit-VR file reads it as UN) is removed, not guessed at.
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.tag import BaseTag, Tag

#: (private creator, group, element within the block) -> (VR, what it holds).
SAFE_PRIVATE: dict[tuple[str, int, int], tuple[str, str]] = {
    ("SIEMENS MR HEADER", 0x0019, 0x0C): ("IS", "diffusion b-value"),
    ("SIEMENS MR HEADER", 0x0019, 0x0E): ("FD", "diffusion gradient direction"),
    ("SIEMENS MR HEADER", 0x0019, 0x27): ("FD", "diffusion b-matrix"),
    ("GEMS_PARM_01", 0x0043, 0x39): ("IS", "diffusion b-value (slop_int_6..9)"),
    ("Philips Imaging DD 001", 0x2001, 0x03): ("FL", "diffusion b-factor"),
}

NUMERIC_VRS = frozenset({"IS", "DS", "FD", "FL", "SS", "US", "SL", "UL", "SV", "UV"})


def creator_of(ds: Dataset, tag: BaseTag) -> str | None:
    """The private creator that reserved ``tag``'s block, or ``None``."""
    if tag.element < 0x1000:
        return None
    elem = ds.get(Tag(tag.group, tag.element >> 8))
    return str(elem.value).strip() if elem is not None and elem.value else None


def is_safe_private(ds: Dataset, elem) -> bool:
    """Whether ``elem`` (private, in ``ds``) is on the safe list with the VR it must have."""
    creator = creator_of(ds, elem.tag)
    entry = SAFE_PRIVATE.get((creator or "", elem.tag.group, elem.tag.element & 0xFF))
    return entry is not None and elem.VR == entry[0] and elem.VR in NUMERIC_VRS
