"""Site intake: raw folder -> de-identified, preprocessed, cached arrays, and a report.

Every file under the data directory ends in exactly one of three fates, recorded in
``intake_report.json`` in the state directory:

* ``processed``: used (an image, or the mask paired with it);
* ``quarantined``: copied to ``STATE/quarantine/`` for a person to review (e.g. burned-in
  text that cannot be cleaned with confidence); never used;
* ``rejected``: not usable, with the reason (not DICOM, truncated, no mask, wrong size...).

Two layouts are understood, and may be mixed:

* **DICOM**: image files plus DICOM SEG files that reference them by SOPInstanceUID, in
  any folder structure. Each file goes through the site's one de-identification path
  (:func:`common.deid.anonymize.deidentify_file`: de-identify, clean burned-in text, verify)
  right after it is read, before anything else looks at it; the pseudonyms made are
  added to the site's encrypted re-identification table.
* **Image folders**: ``images/NAME.ext`` with ``masks/NAME.ext`` (the first annotator),
  optionally ``masks2/NAME.ext`` (a second annotator) and ``fov/NAME.ext`` (field of
  view); ``ext`` is png, jpg, jpeg, tif, tiff, gif or bmp, and a mask may also be named
  ``NAME_mask.ext``. An optional ``dataset.json`` gives ``{"manufacturer": ..., "model":
  ...}`` for the vendor columns. These folders may sit in several group folders (say
  ``canon/images/`` and ``nidek/images/``), each with its own ``dataset.json``: the
  nearest one above a group applies, so one data dir can hold several cameras.

Image-folder images have no header to vouch for their pixels: each gets the strict
burned-in text check (:func:`common.deid.burned_in.clean_image`); a cleaned image is processed
with the number of regions filled in its reason, one that cannot be cleaned with
confidence is quarantined, and ``STATE/pixel_review.png`` (mode 0600: it shows the text)
holds before/after crops of what was cleaned, for the privacy officer.

Colour is kept: images are cached ``(N, C, S, S)`` with C = 3 as soon as one image of
the site is in colour (greyscale saved as RGB counts as greyscale); a run's ``channels``
setting picks what it trains on (:mod:`common.data.channels`).

The cache (``STATE/cache/site-<size>.npz``) is rebuilt when the folder's file list,
sizes or modification times change, or when the training resolution changes.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from common.data import imaging
from common.data.arrays import SiteArrays
from common.data.folders import IMAGE_EXTS, folder_role, list_files, read_image
from common.data.prepared import cache_path, fingerprint, load_cached, replaced
from common.data.review import REVIEW_FILE, crops, write_review
from common.deid.anonymize import decode_pixels, deidentify_file, quarantine_copy
from common.deid.pseudonyms import SECRET_FILE, TABLE_FILE, ReidentificationTable, SiteSecret
from common.errors import IntakeError

logger = logging.getLogger(__name__)

PROCESSED, QUARANTINED, REJECTED = "processed", "quarantined", "rejected"
REPORT_FILE = "intake_report.json"


@dataclass
class FileFate:
    """What happened to one input file (``path`` is relative to the data directory)."""

    path: str
    fate: str
    reason: str = ""


@dataclass
class IntakeReport:
    """The outcome of preparing one site's folder."""

    data_dir: str
    files: list[FileFate] = field(default_factory=list)
    cases: int = 0
    patients: int = 0  # distinct patient pseudonyms (DP's privacy unit); 0 in old reports
    vendors: dict[str, int] = field(default_factory=dict)
    image_sizes: dict[str, int] = field(default_factory=dict)
    foreground_fraction: float = 0.0
    objects_per_case: float = 0.0
    empty_masks: int = 0
    second_annotator: int = 0
    colour: int = 0  # cases whose image is in colour

    def counts(self) -> dict[str, int]:
        """Number of files per fate, plus the total (they add up by construction)."""
        c = Counter(f.fate for f in self.files)
        return {
            PROCESSED: c[PROCESSED],
            QUARANTINED: c[QUARANTINED],
            REJECTED: c[REJECTED],
            "total": len(self.files),
        }

    def to_json(self) -> dict:
        """A JSON-ready dict. It names local input files, whose paths may carry
        identifiers: it stays in the site's state dir and is never sent."""
        return {**asdict(self), "counts": self.counts()}

    def size_summary(self, top: int = 3) -> str:
        """The image sizes in one short line: the range, then the commonest few.

        ``image_sizes`` keeps every distinct size with its count (the site's own record);
        this is what a person reads. Sizes are ordered by pixel count.

        Args:
            top: how many of the commonest sizes to name (at least 1).

        Returns:
            e.g. ``"500x500 to 1350x1080 (312 distinct); most common: 622x529 (35),
            576x720 (20), 1280x1024 (18)"``, ``"512x512 (all 40)"`` when every image has
            the same size, or ``"none"`` when there is no image.

        Raises:
            ValueError: if ``top`` is less than 1.
        """
        if top < 1:
            raise ValueError(f"top must be at least 1, got {top}")
        sizes = {k: n for k, n in self.image_sizes.items() if n > 0}
        if not sizes:
            return "none"
        if len(sizes) == 1:
            size, n = next(iter(sizes.items()))
            return f"{size} (all {n})"
        by_area = sorted(sizes, key=_size_order)
        commonest = sorted(sizes.items(), key=lambda kv: (-kv[1], _size_order(kv[0])))[:top]
        common = ", ".join(f"{k} ({n})" for k, n in commonest)
        return f"{by_area[0]} to {by_area[-1]} ({len(sizes)} distinct); most common: {common}"


def _size_order(size: str) -> tuple[int, int, str]:
    """Sort key for a ``"WxH"`` size: pixel count, then width (unparsable keys first)."""
    w, _, h = size.partition("x")
    if not (w.isdigit() and h.isdigit()):
        return (-1, -1, size)
    return (int(w) * int(h), int(w), size)


# ------------------------------------------------------------------------------ reading


def _image_from_dicom(ds) -> np.ndarray:
    """A single-frame image as float32: 2D greyscale, or ``(H, W, 3)`` colour.

    Colour comes as RGB, YBR_FULL or YBR_FULL_422 (pydicom converts YBR to RGB when it
    decodes) or as a palette; VL Endoscopic, VL Photographic and Secondary Capture images
    are the usual ones.
    """
    arr = decode_pixels(ds)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if int(ds.get("NumberOfFrames", 1) or 1) > 1 or arr.ndim != (3 if samples == 3 else 2):
        raise IntakeError(
            f"not a single-frame greyscale or colour image (pixel array shape {arr.shape}, "
            f"{samples} sample(s) per pixel): cine loops and volumes are not supported yet"
        )
    if samples == 3:
        return imaging.to_channels(arr)  # burned-in text: cleaned in deidentify_file
    if str(ds.get("PhotometricInterpretation", "")) == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        return imaging.to_channels(apply_color_lut(arr, ds))
    return imaging.dicom_to_unit(ds, arr)


def _mask_from_seg(ds) -> np.ndarray:
    arr = decode_pixels(ds)
    if arr.ndim == 3:
        arr = arr.max(axis=0)  # all segments / frames -> one foreground label
    return (arr > 0).astype(np.uint8)


def _seg_reference(ds) -> str:
    for series in ds.get("ReferencedSeriesSequence", []):
        for inst in series.get("ReferencedInstanceSequence", []):
            return str(inst.ReferencedSOPInstanceUID)
    raise IntakeError("SEG references no source image")


@dataclass
class _Case:
    image: np.ndarray
    vendor: str
    case: str
    mask: np.ndarray | None = None
    mask2: np.ndarray | None = None
    fov: np.ndarray | None = None
    sources: list[str] = field(default_factory=list)
    cleaned: int = 0  # burned-in text regions filled in the image


# ---------------------------------------------------------------------------- prepare


def prepare_site(
    data_dir: Path,
    state_dir: Path,
    image_size: int = 128,
    secret: SiteSecret | None = None,
    force: bool = False,
    progress=None,
    new_secret: bool = False,
) -> tuple[SiteArrays, IntakeReport]:
    """De-identify, check, preprocess and cache a site's data directory.

    Args:
        data_dir: the site's raw data (read only; never modified).
        state_dir: the site's private working folder (cache, secret, quarantine, report).
        image_size: training resolution (square).
        secret: pseudonymisation key; defaults to ``STATE/site.secret``, which must exist
            unless ``new_secret``.
        force: rebuild the cache even if the folder did not change.
        progress: optional ``progress(total=..., advance=...)`` callable.
        new_secret: make ``STATE/site.secret`` (a new site); refused if it exists.

    Returns:
        ``(arrays, report)``. ``arrays`` may be empty; the report says why.

    Raises:
        IntakeError: if ``data_dir`` does not exist or is not a readable folder.
    """
    data_dir, state_dir = Path(data_dir), Path(state_dir)
    if not data_dir.is_dir():
        raise IntakeError(
            f"data dir {data_dir} does not exist or is not a folder; "
            "set the SuperNode's node_config data-dir to the site's images"
        )
    state_dir.mkdir(parents=True, exist_ok=True)
    cache_npz = cache_path(state_dir, image_size)
    cache_meta = cache_npz.with_suffix(".json")
    try:
        files = list_files(data_dir)
    except PermissionError:
        raise IntakeError(f"data dir {data_dir} cannot be listed: permission denied") from None
    stamp = fingerprint(data_dir, files, image_size)
    report_path = state_dir / REPORT_FILE
    if not force and cache_npz.exists() and cache_meta.exists() and report_path.exists():
        meta = json.loads(cache_meta.read_text())
        if meta.get("fingerprint") == stamp:
            saved = json.loads(report_path.read_text())
            report = IntakeReport(**{k: v for k, v in saved.items() if k != "counts"})
            report.files = [FileFate(**f) for f in saved["files"]]
            return load_cached(cache_npz), report

    secret = secret or SiteSecret.open(state_dir / SECRET_FILE, new=new_secret)
    report = IntakeReport(data_dir=str(data_dir))
    fates: dict[str, FileFate] = {}
    cases: dict[str, _Case] = {}
    segs: list[tuple[str, object]] = []
    mapping: dict[str, tuple[str, str]] = {}
    plain: dict[tuple[str, str], dict[str, Path]] = {}  # (group folder, stem) -> parts
    if progress:
        progress(total=len(files))

    def fate(rel: str, what: str, reason: str = "") -> None:
        fates[rel] = FileFate(rel, what, reason)

    for path in files:
        rel = str(path.relative_to(data_dir))
        if progress:
            progress(advance=1)
        role = folder_role(Path(rel))
        if role is not None:
            stem = path.stem[:-5] if role != "image" and path.stem.endswith("_mask") else path.stem
            plain.setdefault((str(Path(rel).parent.parent), stem), {})[role] = path
            continue
        if path.name == "dataset.json":
            fate(rel, PROCESSED, "dataset description")
            continue
        if path.suffix.lower() in IMAGE_EXTS:
            fate(rel, REJECTED, "image outside an images/, masks/, masks2/ or fov/ folder")
            continue
        if path.is_symlink() and not path.exists():
            fate(rel, REJECTED, "broken symbolic link")
            continue
        try:
            done = deidentify_file(path, secret)
            mapping.update(done.mapping)
            ds = done.ds
            if str(ds.get("Modality", "")) == "SEG":
                segs.append((rel, ds))
                continue
            image = _image_from_dicom(ds)
            uid = str(ds.SOPInstanceUID)
            vendor = f"{ds.get('Manufacturer', 'unknown')} {ds.get('ManufacturerModelName', '')}"
            cases[uid] = _Case(
                image=image,
                vendor=vendor.strip(),
                case=str(ds.get("PatientID", uid)),
                sources=[rel],
            )
        except IntakeError as exc:
            if exc.quarantine:
                quarantine_copy(path, rel, state_dir / "quarantine")
            fate(rel, QUARANTINED if exc.quarantine else REJECTED, str(exc))

    for rel, ds in segs:
        try:
            ref = _seg_reference(ds)
            if ref not in cases:
                raise IntakeError("mask whose source image is missing or was not usable")
            mask = _mask_from_seg(ds)
            if mask.shape != cases[ref].image.shape[:2]:
                raise IntakeError(
                    f"mask size {mask.shape} differs from its image {cases[ref].image.shape[:2]}"
                )
            cases[ref].mask = mask
            cases[ref].sources.append(rel)
        except IntakeError as exc:
            fate(rel, REJECTED, str(exc))

    review: list[tuple[np.ndarray, np.ndarray]] = []

    def check(path: Path, rel: str, raw: np.ndarray) -> tuple[np.ndarray, int]:
        """The strict pixel check of an image-folder image (no header vouches for it)."""
        from common.deid import burned_in

        pixels = raw[..., :3] if raw.ndim == 3 else raw
        if not burned_in.policy(None).strict:  # the recipe turned image folders off
            return pixels, 0
        try:
            cleaned, done = burned_in.clean_image(pixels)
        except IntakeError as exc:
            if exc.quarantine:
                quarantine_copy(path, rel, state_dir / "quarantine")
            raise
        review.extend(crops(pixels, cleaned, done.boxes))
        return cleaned, len(done.boxes)

    for (group, stem), parts in plain.items():
        vendor = _plain_vendor(data_dir, data_dir / group)
        _plain_case(data_dir, group, stem, parts, vendor, cases, fate, check)

    good = []
    for key, case in cases.items():
        if case.mask is None:
            for rel in case.sources:
                fate(rel, REJECTED, "image without a mask")
            continue
        for rel in case.sources:
            cleaned = case.cleaned and rel == case.sources[0]
            fate(
                rel,
                PROCESSED,
                f"burned-in text cleaned: {case.cleaned} region(s)" if cleaned else "",
            )
        good.append(case)

    report.files = [fates[k] for k in sorted(fates)]
    if mapping:
        table = ReidentificationTable(state_dir / TABLE_FILE, secret)
        table.add(mapping)
        table.save()
    arrays = _to_arrays(good, image_size)
    if review:
        write_review(state_dir / REVIEW_FILE, review)
    _summarise(report, good, arrays)
    # Each file is written whole or not at all, the cache's description last: an
    # interrupted intake leaves the previous cache or none, never half of one.
    cache_npz.parent.mkdir(parents=True, exist_ok=True)
    cache_meta.unlink(missing_ok=True)
    with replaced(cache_npz) as f:
        np.savez(f, **{k: getattr(arrays, k) for k in SiteArrays.__dataclass_fields__})
    # The report names input files (paths can carry identifiers): it stays in the state
    # dir for the site's staff. The cache holds only pseudonymised arrays and counts.
    with replaced(report_path) as f:
        f.write(json.dumps(report.to_json(), indent=2).encode())
    meta = {
        "fingerprint": stamp,
        "data_dir": str(data_dir.resolve()),
        "image_size": image_size,
        "cases": report.cases,
        "counts": report.counts(),
    }
    with replaced(cache_meta) as f:
        f.write(json.dumps(meta).encode())
    logger.info("prepared site: %d cases, %s", report.cases, report.counts())
    return arrays, report


def _plain_vendor(data_dir: Path, group: Path) -> str:
    """The camera named by the ``dataset.json`` nearest above ``group`` (within the site)."""
    for folder in (group, *group.parents):
        desc = folder / "dataset.json"
        if desc.exists():
            try:
                info = json.loads(desc.read_text())
                return f"{info.get('manufacturer', 'unknown')} {info.get('model', '')}".strip()
            except (json.JSONDecodeError, AttributeError):
                return "unknown"
        if folder == data_dir:
            break
    return "unknown"


def _plain_case(data_dir, group, stem, parts, vendor, cases, fate, check) -> None:
    rels = {role: str(p.relative_to(data_dir)) for role, p in parts.items()}
    if "image" not in parts:
        for rel in rels.values():
            fate(rel, REJECTED, "mask without an image of the same name in images/")
        return
    try:
        raw = read_image(parts["image"])
    except IntakeError as exc:
        for rel in rels.values():
            fate(rel, REJECTED, str(exc) if rel == rels["image"] else "its image is unreadable")
        return
    try:
        raw, regions = check(parts["image"], rels["image"], raw)
    except IntakeError as exc:  # quarantined (copied for review) or refused
        what = QUARANTINED if exc.quarantine else REJECTED
        for rel in rels.values():
            fate(rel, what, str(exc) if rel == rels["image"] else f"its image was {what}")
        return
    image = imaging.to_channels(raw)  # (H, W, 3) if the image holds colour, else (H, W)
    case = _Case(image=image, vendor=vendor, case=f"IMG-{stem}", sources=[rels["image"]])
    case.cleaned = regions
    for role in ("mask", "mask2", "fov"):
        if role not in parts:
            continue
        try:
            arr = imaging.to_grey(read_image(parts[role]))
            if arr.shape != image.shape[:2]:
                raise IntakeError(
                    f"{role} size {arr.shape} differs from its image {image.shape[:2]}"
                )
            setattr(case, role, (arr > 127).astype(np.uint8))
            case.sources.append(rels[role])
        except IntakeError as exc:
            fate(rels[role], REJECTED, str(exc))
    cases[f"plain:{group}/{stem}"] = case


def _to_arrays(cases: list[_Case], size: int) -> SiteArrays:
    n = len(cases)
    colour = any(c.image.ndim == 3 for c in cases)  # one colour image: the site is colour
    images = np.zeros((n, 3 if colour else 1, size, size), np.float16)
    masks = np.zeros((n, size, size), np.uint8)
    masks2 = np.zeros((n, size, size), np.uint8)
    fov = np.ones((n, size, size), np.uint8)
    has2 = np.zeros(n, bool)
    for i, c in enumerate(cases):
        images[i] = imaging.channel_first(c.image, size)  # greyscale repeated if colour
        masks[i] = imaging.resize_mask(c.mask, size)
        if c.mask2 is not None:
            masks2[i], has2[i] = imaging.resize_mask(c.mask2, size), True
        if c.fov is not None:
            fov[i] = imaging.resize_mask(c.fov, size)
    return SiteArrays(
        images=images,
        masks=masks,
        vendors=np.array([c.vendor for c in cases], dtype=str),
        cases=np.array([c.case for c in cases], dtype=str),
        masks2=masks2,
        has_mask2=has2,
        fov=fov,
    )


def _summarise(report: IntakeReport, cases: list[_Case], arrays: SiteArrays) -> None:
    from scipy import ndimage

    report.cases = len(cases)
    report.patients = len({c.case for c in cases})
    report.vendors = dict(Counter(c.vendor for c in cases))
    report.colour = sum(c.image.ndim == 3 for c in cases)
    sizes = Counter(f"{c.image.shape[1]}x{c.image.shape[0]}" for c in cases)
    report.image_sizes = dict(sizes.most_common())  # every size, commonest first
    if cases:
        report.foreground_fraction = float(np.mean([c.mask.mean() for c in cases]))
        report.objects_per_case = float(np.mean([ndimage.label(c.mask)[1] for c in cases]))
        report.empty_masks = int(sum(not c.mask.any() for c in cases))
        report.second_annotator = int(arrays.has_mask2.sum())
