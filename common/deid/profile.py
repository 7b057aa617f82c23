"""DICOM de-identification by the PS3.15 Basic Application Level Confidentiality Profile.

The rules are data: :mod:`common.deid.ps315_e11`, generated from a pinned edition of PS3.15
Table E.1-1 (every attribute, its Basic Profile action and its option columns). They
apply at any depth of nested sequences; attributes the table does not list are kept.

How each action is carried out here:

* ``X`` remove; ``Z`` empty value (an empty sequence for SQ); ``K`` keep (sequences are
  cleaned item by item); ``U`` a keyed UID under the 2.25 root (same input, same site
  secret, same UID: references between files stay intact);
* ``D`` a dummy of the right VR, except that PatientID, PatientName, AccessionNumber,
  StudyID and OtherPatientIDs always get keyed pseudonyms (the site can reverse them);
* combined actions, where the IOD's type decides: ``Z/D`` and ``X/D`` -> ``D``, ``X/Z``
  and ``X/Z/D`` -> ``Z``, ``X/Z/U*`` -> ``U`` for UIDs and cleaned item by item for
  sequences, ``Z`` otherwise;
* ``C`` (an option's "clean"): dates and date-times are shifted by a keyed, per-patient
  number of days (Retain Longitudinal Temporal Information with Modified Dates); a
  descriptor is kept only if it contains none of the file's identifying values (Clean
  Descriptors); anything else marked ``C`` is removed;
* private attributes are removed, except, with Retain Safe Private, the numeric ones in
  :data:`common.deid.safe_private.SAFE_PRIVATE`; curves
  (50xx) and whole overlay groups (60xx) are removed unless Clean Graphics is chosen.

Afterwards PatientIdentityRemoved, DeidentificationMethod,
DeidentificationMethodCodeSequence (CID 7050, naming only the options applied) and
LongitudinalTemporalInformationModified are set, and the preamble is zeroed.

Example:
    >>> from pydicom.dataset import Dataset
    >>> ds = Dataset(); ds.PatientName = "Doe^Jane"; ds.PatientID = "MRN1"
    >>> out = deidentify(ds, b"0123456789abcdef-site-secret")
    >>> str(out.PatientName).startswith("PS-"), out.PatientIdentityRemoved
    (True, 'YES')
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import UID

from common.deid.ps315_e11 import EDITION, RULES
from common.deid.pseudonyms import SiteSecret
from common.deid.safe_private import is_safe_private

__all__ = ["DeidOptions", "SiteSecret", "action_for", "deidentify", "is_kept", "is_public_uid"]

#: Replaced by a keyed-hash pseudonym whenever the profile does not remove them.
PSEUDONYMISE = frozenset(
    {"PatientName", "PatientID", "AccessionNumber", "StudyID", "OtherPatientIDs"}
)

#: CID 7050 codes (DCM scheme) for DeidentificationMethodCodeSequence.
CODES = {
    "basic": ("113100", "Basic Application Confidentiality Profile"),
    "clean_pixel_data": ("113101", "Clean Pixel Data Option"),
    "clean_graphics": ("113103", "Clean Graphics Option"),
    "clean_structured_content": ("113104", "Clean Structured Content Option"),
    "clean_descriptors": ("113105", "Clean Descriptors Option"),
    "retain_longitudinal_full_dates": (
        "113106",
        "Retain Longitudinal Temporal Information Full Dates Option",
    ),
    "retain_longitudinal_modified_dates": (
        "113107",
        "Retain Longitudinal Temporal Information Modified Dates Option",
    ),
    "retain_patient_characteristics": ("113108", "Retain Patient Characteristics Option"),
    "retain_device_identity": ("113109", "Retain Device Identity Option"),
    "retain_uids": ("113110", "Retain UIDs Option"),
    "retain_safe_private": ("113111", "Retain Safe Private Option"),
    "retain_institution_identity": ("113112", "Retain Institution Identity Option"),
}

_DUMMY = {
    "PN": "ANONYMOUS",
    "DA": "19000101",
    "TM": "000000",
    "DT": "19000101000000",
    "AS": "000Y",
    "DS": "0",
    "IS": "0",
    "CS": "REMOVED",
    "AE": "REMOVED",
}
_TEXT_VRS = {"LO", "SH", "LT", "ST", "UT", "UC", "PN"}


@dataclass(frozen=True)
class DeidOptions:
    """The profile options (PS3.15 E.3). All off: the Basic Profile alone.

    Manufacturer and model are kept in any case (the table does not list them), so
    per-vendor evaluation works with the defaults.
    """

    retain_safe_private: bool = False
    retain_uids: bool = False
    retain_device_identity: bool = False
    retain_institution_identity: bool = False
    retain_patient_characteristics: bool = False
    retain_longitudinal_full_dates: bool = False
    retain_longitudinal_modified_dates: bool = False
    clean_descriptors: bool = False
    clean_structured_content: bool = False
    clean_graphics: bool = False

    def __post_init__(self) -> None:
        if self.retain_longitudinal_full_dates and self.retain_longitudinal_modified_dates:
            raise ValueError(
                "choose one of retain_longitudinal_full_dates and "
                "retain_longitudinal_modified_dates, not both"
            )

    def enabled(self) -> list[str]:
        """Names of the options switched on, in table order."""
        return [f.name for f in fields(self) if getattr(self, f.name)]


def _rule_key(tag: BaseTag) -> str:
    if tag.is_private:
        return "PRIVATE"
    key = f"{tag.group:04X}{tag.element:04X}"
    if key in RULES:
        return key
    if tag.group & 0xFF00 == 0x5000:
        return "50xxxxxx"
    if tag.group & 0xFF00 == 0x6000:
        return "60xx" + key[4:] if "60xx" + key[4:] in RULES else "60xx3000"
    return key


def is_kept(tag: BaseTag, options: DeidOptions = DeidOptions()) -> bool:
    """Whether the profile keeps ``tag``'s value as it is (K) or cleans it in place (C)."""
    return not tag.is_private and action_for(tag, options) in ("K", "C")


def action_for(tag: BaseTag, options: DeidOptions = DeidOptions()) -> str:
    """The action the profile takes on ``tag`` with ``options`` (``K`` if not listed).

    Example:
        >>> from pydicom.tag import Tag
        >>> action_for(Tag("StudyDate")), action_for(Tag("StudyDate"),
        ...     DeidOptions(retain_longitudinal_modified_dates=True))
        ('Z', 'C')
    """
    rule = RULES.get(_rule_key(tag))
    if rule is None:
        return "K"
    basic, by_option = rule
    for name in options.enabled():
        if name in by_option:
            return by_option[name]
    return basic


def _resolve(action: str, vr: str, keyword: str) -> str:
    if action in ("X", "Z", "D", "K", "U", "C"):
        return action
    if action in ("Z/D", "X/D"):
        return "D"
    if action == "X/Z/U*":
        return "U" if vr == "UI" else "K" if vr == "SQ" else "Z"
    return "Z"  # X/Z, X/Z/D


class _Context:
    def __init__(
        self,
        secret: SiteSecret,
        options: DeidOptions,
        mapping: dict,
        identifiers: set[str],
        patient: str,
    ) -> None:
        self.secret, self.options, self.mapping = secret, options, mapping
        self.identifiers, self.patient = identifiers, patient
        self.shift_days = secret.date_offset_days(patient)

    def pseudonym(self, keyword: str, value: str) -> str:
        new = self.secret.pseudonym(keyword, value)
        self.mapping[new] = (keyword, value)
        return new

    def uid(self, keyword: str, value: str) -> str:
        if not value or is_public_uid(value):
            return value
        new = self.secret.uid(value)
        self.mapping[new] = (keyword or "UID", value)
        return new

    def shift(self, vr: str, value: str) -> str:
        text = str(value).strip()
        if vr not in ("DA", "DT") or len(text) < 8:
            return text if vr == "TM" else ""
        try:
            day = dt.datetime.strptime(text[:8], "%Y%m%d").date()
        except ValueError:
            return ""
        return (day + dt.timedelta(days=self.shift_days)).strftime("%Y%m%d") + text[8:]


def is_public_uid(value: str) -> bool:
    """Whether ``value`` is a UID the standard defines (SOP class, transfer syntax...)."""
    uid = UID(value)
    return uid.is_valid and uid.name != value


def _values(elem) -> list:
    if elem.VM > 1:
        return list(elem.value)
    return [elem.value]


def _set(elem, values: list) -> None:
    elem.value = values if len(values) > 1 else values[0]


def _apply(ds: Dataset, ctx: _Context) -> None:
    opts = ctx.options
    for elem in list(ds):
        tag, vr, keyword = elem.tag, elem.VR, elem.keyword
        if tag.is_private:
            # Creators (gggg,0010-00FF) are judged after their blocks; the rest go unless
            # Retain Safe Private is on and the attribute is on the safe list.
            if not (0x10 <= tag.element <= 0xFF) and not (
                opts.retain_safe_private and is_safe_private(ds, elem)
            ):
                del ds[tag]
            continue
        if tag.group & 0xFF00 == 0x6000 and not opts.clean_graphics:
            del ds[tag]  # the whole overlay group goes with its data
            continue
        action = _resolve(action_for(tag, opts), vr, keyword)
        if keyword in PSEUDONYMISE and action in ("D", "Z") and elem.value:
            _set(elem, [ctx.pseudonym(keyword, str(v)) for v in _values(elem) if v])
            continue
        if vr == "SQ":
            if action in ("X", "C"):
                del ds[tag]
            elif action in ("Z", "D"):
                elem.value = Sequence()
            else:  # K, U: keep the sequence, clean every item
                for item in elem.value or []:
                    _apply(item, ctx)
            continue
        if action == "X":
            del ds[tag]
        elif action == "Z":
            elem.value = None if vr not in ("OB", "OW", "UN") else b""
        elif action == "U" or (action == "D" and vr == "UI"):
            if elem.value:
                _set(elem, [ctx.uid(keyword, str(v)) for v in _values(elem)])
        elif action == "D":
            elem.value = (
                _DUMMY.get(vr, "REMOVED")
                if vr not in ("OB", "OW", "UN", "OF", "OD", "OL", "OV")
                else b""
            )
        elif action == "C":
            _clean(ds, elem, ctx)
    _drop_unused_creators(ds)


def _drop_unused_creators(ds: Dataset) -> None:
    """Remove private creators whose block kept nothing (all of them, by default)."""
    used = {(t.group, t.element >> 8) for t in ds.keys() if t.is_private and t.element > 0xFF}
    for tag in [t for t in ds.keys() if t.is_private and 0x10 <= t.element <= 0xFF]:
        if (tag.group, tag.element) not in used:
            del ds[tag]


def _clean(ds: Dataset, elem, ctx: _Context) -> None:
    opts, vr = ctx.options, elem.VR
    if vr in ("DA", "DT", "TM") and opts.retain_longitudinal_modified_dates:
        shifted = [ctx.shift(vr, v) for v in _values(elem) if v]
        if shifted and all(shifted):
            _set(elem, shifted)
        else:
            elem.value = None
        return
    if vr in _TEXT_VRS and opts.clean_descriptors:
        text = " ".join(str(v) for v in _values(elem) if v).upper()
        if not any(ident in text for ident in ctx.identifiers):
            return  # nothing of this file's identity in it: keep the descriptor
        elem.value = None
        return
    del ds[elem.tag]


def _identifiers(ds: Dataset) -> set[str]:
    """Upper-case identifying strings of ``ds`` (names, IDs, dates) for Clean Descriptors."""
    out: set[str] = set()
    for elem in ds.iterall():
        if elem.VR == "PN":
            for v in _values(elem):
                out.update(p.strip().upper() for p in str(v).replace("=", "^").split("^"))
        elif elem.VR in ("DA", "DT") or elem.keyword in PSEUDONYMISE | {"IssuerOfPatientID"}:
            out.update(str(v).strip().upper() for v in _values(elem) if v)
    return {s for s in out if len(s) >= 3}


def deidentify(
    ds: Dataset,
    secret: SiteSecret | bytes,
    mapping: dict[str, tuple[str, str]] | None = None,
    options: DeidOptions = DeidOptions(),
    pixels_cleaned: bool = False,
) -> Dataset:
    """De-identify ``ds`` in place by the Basic Profile with ``options``; return it.

    Args:
        ds: a dataset as read by pydicom (file meta included, if any).
        secret: the site's :class:`SiteSecret` (or its raw key bytes).
        mapping: if given, receives ``{pseudonym: (keyword, original value)}`` for every
            value replaced, for the site's re-identification table.
        options: the profile options to apply.
        pixels_cleaned: burned-in text was removed from the pixels (adds the Clean Pixel
            Data Option to the method codes).

    Returns:
        The same dataset, de-identified.
    """
    if not isinstance(secret, SiteSecret):
        secret = SiteSecret(secret)
    patient = str(ds.get("PatientID", "") or ds.get("PatientName", "") or "")
    ctx = _Context(
        secret,
        options,
        {} if mapping is None else mapping,
        _identifiers(ds) if options.clean_descriptors else set(),
        patient,
    )
    _apply(ds, ctx)
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        for keyword in ("MediaStorageSOPInstanceUID",):
            if keyword in meta:
                setattr(meta, keyword, ctx.uid(keyword, str(meta.get(keyword))))
        for keyword in (
            "ImplementationVersionName",
            "SourceApplicationEntityTitle",
            "SendingApplicationEntityTitle",
            "ReceivingApplicationEntityTitle",
            "PrivateInformation",
            "PrivateInformationCreatorUID",
        ):
            if keyword in meta:
                del meta[keyword]
    ds.preamble = b"\x00" * 128
    _mark(ds, options, pixels_cleaned)
    return ds


def _mark(ds: Dataset, options: DeidOptions, pixels_cleaned: bool) -> None:
    applied = ["basic", *options.enabled()] + (["clean_pixel_data"] if pixels_cleaned else [])
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = [f"PS3.15 {EDITION} Basic Profile (FedSynth)"] + [
        CODES[name][1][:64] for name in applied[1:]
    ]
    items = []
    for name in applied:
        code, meaning = CODES[name]
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code, "DCM", meaning
        items.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(items)
    if options.retain_longitudinal_full_dates:
        ds.LongitudinalTemporalInformationModified = "UNMODIFIED"
    elif options.retain_longitudinal_modified_dates:
        ds.LongitudinalTemporalInformationModified = "MODIFIED"
    else:
        ds.LongitudinalTemporalInformationModified = "REMOVED"
