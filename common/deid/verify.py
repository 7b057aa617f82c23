"""Self-verification: search a de-identified file's raw bytes for its input's identifiers.

Rules can miss what nobody anticipated (a vendor's private block, a value repeated in a
nested sequence or the file meta). So before de-identification every identifying value
of the input is collected: all PN, DA, DT, TM and non-public UI values, every other
string value of an attribute the profile does not keep, and the string values of
private elements. After writing, the output's raw bytes are searched for each value in
every encoding the file could carry; any hit means the file must be quarantined.

Values that the output keeps on purpose (e.g. the manufacturer) are allowed,
and neither are values shorter than :data:`MIN_LENGTH` bytes, which would match by chance.

Example:
    >>> from pydicom.dataset import Dataset
    >>> ds = Dataset(); ds.PatientName = "Doe^Jane"
    >>> found_in(b"...Doe^Jane...", identifying_values(ds, kept=lambda tag: False))
    ['PatientName']
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

from common.deid.profile import is_public_uid

MIN_LENGTH = 4
ALWAYS = {"PN", "DA", "DT", "TM", "UI"}
TEXT = {"LO", "SH", "LT", "ST", "UT", "UC", "AE", "CS", "AS", "IS", "DS"}
IDENTIFYING_TEXT = {"LO", "SH", "LT", "ST", "UT", "UC", "AE"}


def _strings(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [str(v) for v in value if v is not None]
    return [str(value)]


def _encodings(ds: Dataset) -> list[str]:
    from pydicom.charset import convert_encodings

    charset = ds.get("SpecificCharacterSet", "ISO_IR 6")
    try:
        encodings = convert_encodings(charset)
    except Exception:
        encodings = []
    return list(dict.fromkeys([*encodings, "ascii", "latin_1", "utf_8", "utf_16_le"]))


def _variants(text: str, vr: str) -> set[str]:
    text = text.strip().strip("\x00")
    out = {text}
    if vr == "PN":
        for group in text.split("="):
            out.update(part.strip() for part in group.split("^"))
            out.add(group.replace("^", " ").strip())
    # Too short, or one repeated character ("000000"): would match by chance.
    return {t for t in out if len(t) >= MIN_LENGTH and len(set(t)) > 1}


def identifying_values(ds: Dataset, kept: Callable[[BaseTag], bool]) -> dict[bytes, str]:
    """Every identifying value of ``ds`` (file meta and nested items included).

    Args:
        ds: the input dataset, before de-identification.
        kept: whether the profile keeps an attribute's value (see
            :func:`common.deid.profile.is_kept`); the text of kept attributes is not searched
            for, but PN, DA, DT, TM and non-public UI values always are.

    Returns:
        ``{encoded bytes: keyword}`` for each value in each plausible encoding.
    """
    encodings = _encodings(ds)
    found: dict[bytes, str] = {}

    def walk(d: Dataset) -> None:
        for elem in d:
            if elem.VR == "SQ":
                for item in elem.value or []:
                    walk(item)
                continue
            keyword = elem.keyword or f"private {elem.tag}"
            private = elem.tag.is_private
            if elem.VR == "UI":
                values = [v for v in _strings(elem.value) if not is_public_uid(v)]
            elif elem.VR in ALWAYS or (elem.VR in IDENTIFYING_TEXT and not kept(elem.tag)):
                values = _strings(elem.value)
            elif (
                private and elem.VR in TEXT | {"UN", "OB"} and isinstance(elem.value, (str, bytes))
            ):
                values = [
                    elem.value.decode("latin_1") if isinstance(elem.value, bytes) else elem.value
                ]
            else:
                continue
            for value in values:
                for text in _variants(value, elem.VR):
                    for enc in encodings:
                        try:
                            found.setdefault(text.encode(enc), keyword)
                        except (UnicodeEncodeError, LookupError):
                            continue

    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        walk(meta)
    walk(ds)
    return found


def kept_values(ds: Dataset, kept: Callable[[BaseTag], bool]) -> set[bytes]:
    """Raw string values of the attributes the profile keeps on purpose.

    Computed on the *input*: an identifying value that reappears in the output is allowed
    only if the input already held it in an attribute the profile keeps (a model name in
    a vendor's private block, say), not if a rule put it somewhere new.
    """
    out: set[bytes] = set()
    for elem in ds.iterall():
        if elem.VR == "SQ" or not kept(elem.tag):
            continue
        for v in _strings(elem.value):
            if isinstance(v, bytes):
                continue
            for enc in ("ascii", "latin_1", "utf_8"):
                try:
                    out.add(v.strip().encode(enc))
                except UnicodeEncodeError:
                    pass
    return out


def found_in(data: bytes, values: dict[bytes, str], allowed: Iterable[bytes] = ()) -> list[str]:
    """Keywords of the values in ``values`` that occur in ``data`` (sorted, unique).

    Args:
        data: the output file's raw bytes.
        values: from :func:`identifying_values` on the input.
        allowed: values the output keeps on purpose (see :func:`kept_values`); a value
            that is part of one of them (a vendor's private copy of the model name, say)
            is not a leak.
    """
    allowed = set(allowed)
    return sorted(
        {kw for v, kw in values.items() if v in data and not any(v in kept for kept in allowed)}
    )
