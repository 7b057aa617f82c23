"""A built-in, deterministic sample consortium: DICOM images, DICOM SEG masks, fake PHI.

Layout written by :func:`write_consortium`::

    OUT/
      manifest.json                  sites, vendors, counts, planted defects
      site-1/  site-2/  ...          one folder per hospital
        <patient-id>/image.dcm       Digital X-Ray image (MONOCHROME1 or 2, 10-16 bit)
        <patient-id>/nodules.seg.dcm DICOM SEG (highdicom), binary, one segment "Nodule",
                                     referencing the image's SOPInstanceUID
      heldout/                       the coordinator's test set: every site vendor plus one
                                     vendor no site has, same layout

Each site scans on its own simulated vendor (:data:`common.data.phantom.VENDORS`). Headers
carry realistic but fake PHI (names, IDs, birth dates, institution, physicians,
accession numbers, study dates, free text, a vendor private block), and some images carry
burned-in patient text, so de-identification has real work to do. Nothing here is a real
person.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from common.data.phantom import VENDORS, VendorProfile, make_phantom

logger = logging.getLogger(__name__)

FIRST = [
    "John",
    "Maria",
    "Ahmed",
    "Li",
    "Sofia",
    "Pieter",
    "Aisha",
    "Kenji",
    "Olga",
    "Carlos",
    "Fatima",
    "Jonas",
    "Priya",
    "Tomasz",
    "Grace",
    "Mehmet",
    "Ana",
    "Erik",
    "Noor",
    "Luca",
]
LAST = [
    "Smith",
    "Garcia",
    "Haddad",
    "Wang",
    "Rossi",
    "de Vries",
    "Okafor",
    "Tanaka",
    "Ivanova",
    "Silva",
    "Khan",
    "Berg",
    "Sharma",
    "Nowak",
    "Murphy",
    "Yilmaz",
    "Costa",
    "Lund",
    "Rahman",
    "Bianchi",
]
HOSPITALS = [
    "St. Aurelia General Hospital",
    "Riverside University Medical Centre",
    "Northgate Children's and Adults' Hospital",
    "Hillcrest Regional Clinic",
    "Lakeside Memorial Hospital",
    "Old Mill Community Hospital",
]
CITIES = ["Utrecht", "Leeds", "Porto", "Graz", "Aarhus", "Lyon"]

DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
UID_ROOT = "1.2.826.0.1.3680043.10.1234."  # fictitious root for the *original* (fake) UIDs


@dataclass(frozen=True)
class SiteSpec:
    """One sample hospital: its folder name, vendor and number of patients."""

    name: str
    vendor: VendorProfile
    cases: int
    institution: str
    city: str


def _uid(rng: np.random.Generator) -> str:
    return UID_ROOT + ".".join(str(int(v)) for v in rng.integers(1, 2**31, size=3))


def _date(rng: np.random.Generator, start_year: int, end_year: int) -> dt.date:
    start = dt.date(start_year, 1, 1).toordinal()
    end = dt.date(end_year, 12, 31).toordinal()
    return dt.date.fromordinal(int(rng.integers(start, end)))


def _burn_in(stored: np.ndarray, text: str, value: int) -> np.ndarray:
    """Burn patient text into the top-left corner, as some modalities do."""
    h, w = stored.shape
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    try:
        font = ImageFont.load_default(size=max(10, h // 22))
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    draw.text((4, 3), text, fill=255, font=font)
    ink = np.asarray(canvas) > 127
    out = stored.copy()
    out[ink] = value
    return out


def _patient(rng: np.random.Generator, site: SiteSpec, index: int) -> dict:
    first, last = FIRST[int(rng.integers(len(FIRST)))], LAST[int(rng.integers(len(LAST)))]
    birth = _date(rng, 1935, 2005)
    study = _date(rng, 2019, 2025)
    return {
        "name": f"{last}^{first}",
        "id": f"MRN{int(rng.integers(10**7, 10**8))}",
        "birth": birth,
        "sex": "F" if rng.random() < 0.5 else "M",
        "age": f"{(study - birth).days // 365:03d}Y",
        "study_date": study,
        "study_time": f"{int(rng.integers(7, 19)):02d}{int(rng.integers(0, 60)):02d}"
        f"{int(rng.integers(0, 60)):02d}",
        "accession": f"ACC{int(rng.integers(10**6, 10**7))}",
        "referring": f"{LAST[int(rng.integers(len(LAST)))]}^{FIRST[int(rng.integers(20))]}^^Dr.",
        "operator": f"{LAST[int(rng.integers(len(LAST)))]}^{FIRST[int(rng.integers(20))]}",
        "address": f"{int(rng.integers(1, 200))} Canal Street, {site.city}",
        "phone": f"+31 6 {int(rng.integers(10**7, 10**8))}",
        "index": index,
    }


def _image_dataset(
    rng: np.random.Generator, site: SiteSpec, p: dict, stored: np.ndarray, burned_in: bool
):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    v = site.vendor
    sop_uid, study_uid, series_uid = _uid(rng), _uid(rng), _uid(rng)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID_ROOT + "1"
    meta.ImplementationVersionName = "FEDSYNTH_SAMPLE"

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = DX_FOR_PRESENTATION
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = _uid(rng)
    ds.Modality = "DX"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = p["study_date"].strftime(
        "%Y%m%d"
    )
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = p["study_time"]
    ds.AccessionNumber = p["accession"]
    ds.StudyID = f"S{p['index']:05d}"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientName = p["name"]
    ds.PatientID = p["id"]
    ds.IssuerOfPatientID = site.institution
    ds.OtherPatientIDs = f"NHS{int(rng.integers(10**9, 10**10))}"
    ds.PatientBirthDate = p["birth"].strftime("%Y%m%d")
    ds.PatientSex = p["sex"]
    ds.PatientAge = p["age"]
    ds.PatientAddress = p["address"]
    ds.PatientTelephoneNumbers = p["phone"]
    ds.ReferringPhysicianName = p["referring"]
    ds.PerformingPhysicianName = p["referring"]
    ds.OperatorsName = p["operator"]
    ds.InstitutionName = site.institution
    ds.InstitutionAddress = f"Hospital Road 1, {site.city}"
    ds.StationName = f"XR-{site.name.upper()}-01"
    ds.DeviceSerialNumber = f"SN{int(rng.integers(10**5, 10**6))}"
    ds.StudyDescription = f"CHEST PA - follow-up nodule ({p['name'].replace('^', ' ')})"
    ds.SeriesDescription = "PA erect"
    ds.ImageComments = f"Referred by {p['referring'].split('^')[0]}; pt {p['id']}"
    ds.Manufacturer = v.manufacturer
    ds.ManufacturerModelName = v.model
    ds.SoftwareVersions = "4.2.1"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.PatientOrientation = ["L", "F"]
    ds.BurnedInAnnotation = "YES" if burned_in else "NO"
    spacing = f"{430.0 / v.size:.4f}"
    ds.ImagerPixelSpacing = [spacing, spacing]
    ds.PixelSpacing = [spacing, spacing]
    ds.PixelIntensityRelationship = "LIN"
    ds.RescaleSlope = f"{v.rescale_slope:g}"
    ds.RescaleIntercept = f"{v.rescale_intercept:g}"
    ds.RescaleType = "US"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if v.monochrome1 else "MONOCHROME2"
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated = 16
    ds.BitsStored = v.bits_stored
    ds.HighBit = v.bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = stored.astype("<u2").tobytes()
    # A vendor private block that (as real ones do) repeats identifying values.
    block = ds.private_block(0x0029, "FEDSYNTH SAMPLE VENDOR", create=True)
    block.add_new(0x10, "LO", p["name"])
    block.add_new(0x11, "DA", p["study_date"].strftime("%Y%m%d"))
    block.add_new(0x12, "UI", sop_uid)
    return ds


def _seg_dataset(image_ds, mask: np.ndarray, rng: np.random.Generator):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="Nodule",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Nodule,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )
    seg = hd.seg.Segmentation(
        source_images=[image_ds],
        pixel_array=mask.astype(bool)[None],
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description],
        series_instance_uid=_uid(rng),
        series_number=2,
        sop_instance_uid=_uid(rng),
        instance_number=1,
        manufacturer="FedSynth sample annotator",
        manufacturer_model_name="manual",
        software_versions="0.1",
        device_serial_number="0",
        content_creator_name=image_ds.ReferringPhysicianName,
        omit_empty_frames=False,
    )
    # Deterministic output: date the SEG with the study, not with "now".
    for prefix in ("Content", "InstanceCreation", "Series"):
        setattr(seg, f"{prefix}Date", image_ds.StudyDate)
        setattr(seg, f"{prefix}Time", image_ds.StudyTime)
    org_uid = _uid(rng)
    for item in seg.get("DimensionOrganizationSequence", []):
        item.DimensionOrganizationUID = org_uid
    for item in seg.get("DimensionIndexSequence", []):
        if "DimensionOrganizationUID" in item:
            item.DimensionOrganizationUID = org_uid
    for item in seg.get("ContributingEquipmentSequence", []):
        item.ContributionDateTime = image_ds.StudyDate + image_ds.StudyTime
    return seg


def default_sites(n_sites: int, cases_per_site: int) -> list[SiteSpec]:
    """The first ``n_sites`` hospitals, cycling over the site vendors (all but the last).

    Args:
        n_sites: number of hospitals (>= 1).
        cases_per_site: patients per hospital (>= 4).

    Returns:
        One :class:`SiteSpec` per hospital.
    """
    if n_sites < 1:
        raise ValueError(f"--sites must be at least 1, got {n_sites}")
    if cases_per_site < 4:
        raise ValueError(f"--cases-per-site must be at least 4, got {cases_per_site}")
    site_vendors = VENDORS[:-1]
    return [
        SiteSpec(
            f"site-{i + 1}",
            site_vendors[i % len(site_vendors)],
            cases_per_site,
            HOSPITALS[i % len(HOSPITALS)],
            CITIES[i % len(CITIES)],
        )
        for i in range(n_sites)
    ]


def write_case(
    out_dir: Path, site: SiteSpec, rng: np.random.Generator, index: int, with_mask: bool = True
) -> dict:
    """Write one patient's image (and SEG) under ``out_dir/<patient-id>/``.

    Returns:
        A dict with the case's original patient ID and whether text was burned in.
    """
    v = site.vendor
    att, mask = make_phantom(rng, size=v.size)
    stored = v.render(att, rng)
    p = _patient(rng, site, index)
    burned = bool(rng.random() < v.burned_in_fraction)
    if burned:
        full = 2**v.bits_stored - 1
        text = f"{p['name'].replace('^', ', ')}  {p['id']}  DOB {p['birth']:%d/%m/%Y}"
        stored = _burn_in(stored, text, 0 if v.monochrome1 else full)
    image_ds = _image_dataset(rng, site, p, stored, burned)
    case_dir = out_dir / p["id"]
    case_dir.mkdir(parents=True, exist_ok=True)
    image_ds.save_as(case_dir / "image.dcm", enforce_file_format=True)
    if with_mask:
        _seg_dataset(image_ds, mask, rng).save_as(case_dir / "nodules.seg.dcm")
    return {"patient_id": p["id"], "burned_in": burned}


def _plant_defects(site_dir: Path, site: SiteSpec, rng: np.random.Generator) -> list[dict]:
    """Add the kinds of bad input a real export contains, so intake shows what it does."""
    defects = []
    (site_dir / "README.txt").write_text("Export from PACS, nodule follow-up cohort.\n")
    defects.append({"file": "README.txt", "kind": "not DICOM"})
    case = write_case(site_dir, site, rng, 9000, with_mask=False)
    defects.append({"file": f"{case['patient_id']}/image.dcm", "kind": "image without mask"})
    trunc = write_case(site_dir, site, rng, 9001)
    path = site_dir / trunc["patient_id"] / "image.dcm"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    defects.append({"file": f"{trunc['patient_id']}/image.dcm", "kind": "truncated DICOM"})
    defects.append(
        {"file": f"{trunc['patient_id']}/nodules.seg.dcm", "kind": "mask whose image is unreadable"}
    )
    return defects


def write_consortium(
    out: Path,
    n_sites: int = 3,
    cases_per_site: int = 40,
    heldout_per_vendor: int = 16,
    seed: int = 0,
    defects: bool = True,
    progress=None,
) -> dict:
    """Generate the sample consortium under ``out`` and return its manifest.

    Args:
        out: output folder (created; must be empty or absent).
        n_sites: number of hospitals.
        cases_per_site: patients per hospital.
        heldout_per_vendor: held-out patients per vendor (all site vendors + one unseen).
        seed: the whole consortium is a function of this seed.
        defects: plant a few bad files in the last site (see ``manifest.json``).
        progress: optional callable ``progress(advance: int)`` called once per case.

    Returns:
        The manifest, also written to ``out/manifest.json``.

    The files are written to ``out.part`` first, which becomes ``out`` once complete: an
    interrupted run leaves no half consortium (the next one starts ``out.part`` afresh).
    An ``out`` that exists empty (a container's volume, whose parent is not writable) is
    filled through ``out/.part`` instead, ``manifest.json`` moved in last.
    """
    final = Path(out)
    if final.exists() and any(p.name != ".part" for p in final.iterdir()):
        raise FileExistsError(f"{final} is not empty; choose a new folder or delete it first")
    inside = final.is_dir()
    out = final / ".part" if inside else final.with_name(final.name + ".part")
    if out.exists():
        shutil.rmtree(out)
    sites = default_sites(n_sites, cases_per_site)
    manifest: dict = {"seed": seed, "format": "fedsynth-sample/1", "sites": [], "heldout": {}}
    for s_idx, site in enumerate(sites):
        site_dir = out / site.name
        burned = 0
        for c in range(site.cases):
            rng = np.random.default_rng([seed, s_idx, c])
            burned += write_case(site_dir, site, rng, c)["burned_in"]
            if progress:
                progress(1)
        entry = {
            "name": site.name,
            "dir": site.name,
            "manufacturer": site.vendor.manufacturer,
            "model": site.vendor.model,
            "cases": site.cases,
            "burned_in": burned,
            "institution": site.institution,
            "defects": [],
        }
        if defects and s_idx == len(sites) - 1:
            entry["defects"] = _plant_defects(
                site_dir, site, np.random.default_rng([seed, s_idx, 99999])
            )
        manifest["sites"].append(entry)
    site_vendors = {s.vendor.model for s in sites}
    held = []
    for v_idx, vendor in enumerate(VENDORS):
        spec = SiteSpec(
            "heldout", vendor, heldout_per_vendor, "Coordinator Reference Set", "Geneva"
        )
        for c in range(heldout_per_vendor):
            rng = np.random.default_rng([seed, 1000 + v_idx, c])
            write_case(out / "heldout", spec, rng, c)
            if progress:
                progress(1)
        held.append(
            {
                "manufacturer": vendor.manufacturer,
                "model": vendor.model,
                "cases": heldout_per_vendor,
                "seen_by_sites": vendor.model in site_vendors,
            }
        )
    manifest["heldout"] = {"dir": "heldout", "vendors": held}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    if inside:  # the manifest last: its presence says the consortium is complete
        for child in sorted(out.iterdir(), key=lambda p: p.name == "manifest.json"):
            child.replace(final / child.name)
        out.rmdir()
    else:
        out.replace(final)
    return manifest


def count_cases(n_sites: int, cases_per_site: int, heldout_per_vendor: int) -> int:
    """Number of cases :func:`write_consortium` writes (for progress bars)."""
    return n_sites * cases_per_site + len(VENDORS) * heldout_per_vendor
