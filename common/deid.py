"""DICOM de-identification: the one function every DICOM file passes through first.

This is the first version of the site's de-identification (names, IDs, dates, UIDs,
private tags, identifying free text, overlays), applied at any depth of nested
sequences. Pseudonyms are keyed hashes under the site secret, so the same patient or
UID always maps to the same pseudonym at a site (references between an image and its
SEG stay intact) while nobody without the secret can compute or reverse them.

The full PS3.15 Basic Application Level Confidentiality Profile (issue 4) will replace
the rules here behind the same :func:`deidentify` signature.

Example:
    >>> from pydicom.dataset import Dataset
    >>> ds = Dataset(); ds.PatientName = "Doe^Jane"; ds.PatientID = "MRN1"
    >>> out = deidentify(ds, b"0123456789abcdef-site-secret")
    >>> str(out.PatientName).startswith("PS-"), out.PatientIdentityRemoved
    (True, 'YES')
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.uid import UID

from common.pseudonyms import SiteSecret

__all__ = ["SiteSecret", "deidentify"]

METHOD = "FedSynth deid v1: keyed pseudonyms; dates, text, private removed"

#: Kept because training and per-vendor evaluation need them (device identity is retained).
KEEP = frozenset(
    {
        "Manufacturer",
        "ManufacturerModelName",
        "Modality",
        "SOPClassUID",
        "BodyPartExamined",
        "ViewPosition",
        "PatientSex",
        "ImageType",
        "PresentationIntentType",
        "BurnedInAnnotation",
        "PixelSpacing",
        "ImagerPixelSpacing",
        "PixelIntensityRelationship",
        "RescaleSlope",
        "RescaleIntercept",
        "RescaleType",
        "SamplesPerPixel",
        "PhotometricInterpretation",
        "Rows",
        "Columns",
        "BitsAllocated",
        "BitsStored",
        "HighBit",
        "PixelRepresentation",
        "PixelData",
        "SpecificCharacterSet",
        "WindowCenter",
        "WindowWidth",
        "VOILUTFunction",
        "SeriesNumber",
        "InstanceNumber",
        "PatientOrientation",
        "NumberOfFrames",
        "SegmentationType",
        "SegmentSequence",
        "SegmentNumber",
        "SegmentLabel",
        "SegmentAlgorithmType",
        "SegmentedPropertyCategoryCodeSequence",
        "SegmentedPropertyTypeCodeSequence",
        "CodeValue",
        "CodingSchemeDesignator",
        "CodeMeaning",
        "MaximumFractionalValue",
        "SegmentationFractionalType",
        "PerFrameFunctionalGroupsSequence",
        "SharedFunctionalGroupsSequence",
        "SegmentIdentificationSequence",
        "ReferencedSegmentNumber",
        "DerivationImageSequence",
        "SourceImageSequence",
        "ReferencedSeriesSequence",
        "ReferencedInstanceSequence",
        "ReferencedSOPClassUID",
        "ReferencedSOPInstanceUID",
        "ReferencedFrameNumber",
        "PixelMeasuresSequence",
        "PlanePositionSequence",
        "PlaneOrientationSequence",
        "ImagePositionPatient",
        "ImageOrientationPatient",
        "SliceThickness",
        "SpacingBetweenSlices",
        "DimensionIndexSequence",
        "DimensionOrganizationSequence",
        "DimensionIndexValues",
        "DimensionIndexPointer",
        "FunctionalGroupPointer",
        "FrameContentSequence",
        "DimensionOrganizationType",
        "LossyImageCompression",
        "ContentLabel",
        "PurposeOfReferenceCodeSequence",
        "ContentQualification",
        "PatientIdentityRemoved",
        "DeidentificationMethod",
        "LargestImagePixelValue",
        "SmallestImagePixelValue",
        "LossyImageCompressionRatio",
        "LossyImageCompressionMethod",
        "DerivationCodeSequence",
        "ContextGroupVersion",
        "MappingResource",
        "ContextIdentifier",
        "CodingSchemeVersion",
        "SegmentsOverlap",
        "DimensionDescriptionLabel",
        "PixelPaddingValue",
        "PlanarConfiguration",
        "PositionReferenceIndicator",
        "TotalPixelMatrixRows",
        "TotalPixelMatrixColumns",
        "ImageLaterality",
        "Laterality",
        "PatientPosition",
    }
)

#: Replaced by a keyed-hash pseudonym (same input, same site secret -> same output).
PSEUDONYMISE = frozenset({"PatientName", "PatientID", "AccessionNumber", "StudyID"})


def _is_standard_uid(value: str) -> bool:
    """SOP classes, transfer syntaxes and coding schemes are public: keep them."""
    return UID(value).is_valid and UID(value).name != value


def _clean(ds: Dataset, secret: SiteSecret, mapping: dict[str, tuple[str, str]]) -> None:
    for elem in list(ds):
        keyword = elem.keyword
        if elem.tag.is_private or (elem.tag.group & 0xFF00) in (0x5000, 0x6000):
            del ds[elem.tag]  # private tags, curves, overlays
        elif elem.VR == "SQ":
            if keyword in KEEP:
                for item in elem.value:
                    _clean(item, secret, mapping)
            else:
                del ds[elem.tag]
        elif elem.VR == "UI":
            if elem.value and not _is_standard_uid(str(elem.value)):
                values = elem.value if elem.VM > 1 else [elem.value]
                mapped = [secret.uid(str(v)) for v in values]
                for old, new in zip(values, mapped):
                    mapping[new] = (keyword or "UID", str(old))
                elem.value = mapped if elem.VM > 1 else mapped[0]
        elif keyword in PSEUDONYMISE:
            if elem.value:
                new = secret.pseudonym(keyword, str(elem.value))
                mapping[new] = (keyword, str(elem.value))
                elem.value = new
        elif keyword not in KEEP:
            del ds[elem.tag]


def deidentify(
    ds: Dataset, secret: SiteSecret | bytes, mapping: dict[str, tuple[str, str]] | None = None
) -> Dataset:
    """De-identify ``ds`` in place and return it.

    Args:
        ds: a dataset as read by pydicom (file meta included, if any).
        secret: the site's :class:`SiteSecret` (or its raw key bytes).
        mapping: if given, receives ``{pseudonym: (keyword, original value)}`` for every
            value replaced, for the site's re-identification table.

    Returns:
        The same dataset, with identifying attributes removed or pseudonymised and
        PatientIdentityRemoved / DeidentificationMethod set.
    """
    if not isinstance(secret, SiteSecret):
        secret = SiteSecret(secret)
    _clean(ds, secret, {} if mapping is None else mapping)
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "MediaStorageSOPInstanceUID" in meta:
        meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", meta.MediaStorageSOPInstanceUID)
        if "SOPInstanceUID" not in ds:
            meta.MediaStorageSOPInstanceUID = secret.uid(str(meta.MediaStorageSOPInstanceUID))
    if meta is not None:
        for keyword in ("ImplementationVersionName", "SourceApplicationEntityTitle"):
            if keyword in meta:
                del meta[keyword]
    ds.preamble = b"\x00" * 128
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = METHOD
    return ds
