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
  (:func:`common.anonymize.deidentify_file`: de-identify, clean burned-in text, verify)
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
burned-in text check (:func:`common.pixel_phi.clean_image`); a cleaned image is processed
with the number of regions filled in its reason, one that cannot be cleaned with
confidence is quarantined, and ``STATE/pixel_review.png`` (mode 0600: it shows the text)
holds before/after crops of what was cleaned, for the privacy officer.

The cache (``STATE/cache/site-<size>.npz``) is rebuilt when the folder's file list,
sizes or modification times change, or when the training resolution changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from common import imaging
from common.anonymize import decode_pixels, deidentify_file, quarantine_copy
from common.errors import IntakeError
from common.pseudonyms import SECRET_FILE, TABLE_FILE, ReidentificationTable, SiteSecret

logger = logging.getLogger(__name__)

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".bmp"}
FOLDER_ROLES = {"images": "image", "masks": "mask", "masks2": "mask2", "fov": "fov"}
CACHE_VERSION = "3"
PROCESSED, QUARANTINED, REJECTED = "processed", "quarantined", "rejected"
REPORT_FILE = "intake_report.json"
#: Before/after crops of every region cleaned in image-folder images, for the privacy
#: officer. It shows the burned-in text itself: it stays in the state dir, mode 0600.
REVIEW_FILE = "pixel_review.png"
REVIEW_CROPS = 60


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
    vendors: dict[str, int] = field(default_factory=dict)
    image_sizes: dict[str, int] = field(default_factory=dict)
    foreground_fraction: float = 0.0
    objects_per_case: float = 0.0
    empty_masks: int = 0
    second_annotator: int = 0

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


@dataclass
class SiteArrays:
    """A site's preprocessed cases, ready for training. Indexes line up across fields.

    ``images`` is float16 ``(N, S, S)`` in ``[0, 1]``; ``masks`` uint8 ``(N, S, S)``;
    ``masks2`` holds a second annotator's masks where ``has_mask2`` is true; ``fov`` is
    the field of view (all ones when none was given); ``vendors`` and ``cases`` are string
    arrays (cases are pseudonyms, never original identifiers).
    """

    images: np.ndarray
    masks: np.ndarray
    vendors: np.ndarray
    cases: np.ndarray
    masks2: np.ndarray
    has_mask2: np.ndarray
    fov: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: np.ndarray) -> SiteArrays:
        """The cases at ``index`` (an integer or boolean array)."""
        return SiteArrays(**{k: getattr(self, k)[index] for k in self.__dataclass_fields__})

    def split(self, val_fraction: float, seed: int = 0) -> tuple[SiteArrays, SiteArrays]:
        """Deterministic train/validation split by case pseudonym.

        Args:
            val_fraction: share of cases held out for local validation (0 gives none).
            seed: changes the split.

        Returns:
            ``(train, val)``; ``val`` is empty when there are fewer than 5 cases.
        """
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        order = np.argsort([hashlib.sha256(f"{seed}:{c}".encode()).hexdigest() for c in self.cases])
        n_val = int(round(len(self) * val_fraction)) if len(self) >= 5 else 0
        if val_fraction > 0 and len(self) >= 5:
            n_val = max(1, n_val)
        return self.subset(np.sort(order[n_val:])), self.subset(np.sort(order[:n_val]))

    @staticmethod
    def concat(parts: list[SiteArrays]) -> SiteArrays:
        """Pool several sites' arrays (for centralised baselines)."""
        fields = SiteArrays.__dataclass_fields__
        return SiteArrays(**{k: np.concatenate([getattr(p, k) for p in parts]) for k in fields})


# ------------------------------------------------------------------------------ reading


def _fingerprint(data_dir: Path, files: list[Path], image_size: int) -> str:
    h = hashlib.sha256(f"{CACHE_VERSION}:{image_size}".encode())
    for f in files:
        try:
            st = f.stat()
            h.update(f"{f.relative_to(data_dir)}:{st.st_size}:{st.st_mtime_ns}".encode())
        except OSError:
            h.update(f"{f.relative_to(data_dir)}:unreadable".encode())
    return h.hexdigest()


def _list_files(data_dir: Path) -> list[Path]:
    """Every file under ``data_dir``, sorted, following symbolic links to folders.

    Paths stay under ``data_dir`` as written (a file reached through the link ``images ->
    /elsewhere/imgs`` is ``DATA/images/x.png``), since relative paths name files in the
    report. A linked folder whose real path was already listed (a loop such as ``images/up
    -> ..``, or a second link to the same folder) is skipped. Links to files are listed, and
    so are broken links, which intake rejects.

    Raises:
        PermissionError: if ``data_dir`` itself cannot be listed.
    """
    skipped: list[str] = []

    def unreadable(exc: OSError) -> None:
        if exc.filename is None or Path(exc.filename) == data_dir:
            raise exc
        skipped.append(exc.filename)

    visited = {os.path.realpath(data_dir)}
    files: list[Path] = []
    looped = 0
    for folder, subfolders, names in os.walk(data_dir, onerror=unreadable, followlinks=True):
        keep = []
        for name in sorted(subfolders):
            real = os.path.realpath(os.path.join(folder, name))
            if real in visited:
                looped += 1
            else:
                visited.add(real)
                keep.append(name)
        subfolders[:] = keep  # os.walk descends only into these
        files.extend(Path(folder) / name for name in names)
    if looped:
        logger.info(
            "skipped %d link(s) to a folder already listed (a loop or a second link to the "
            "same folder); their files are listed once",
            looped,
        )
    if skipped:
        logger.warning(
            "%d folder(s) under the data dir could not be listed and are not in the intake "
            "report; give the SuperNode's user read access to every folder under it",
            len(skipped),
        )
    return sorted(files)


def _folder_role(rel: Path) -> str | None:
    if rel.suffix.lower() not in IMAGE_EXTS or len(rel.parts) < 2:
        return None
    return FOLDER_ROLES.get(rel.parts[-2].lower())


def _image_from_dicom(ds) -> np.ndarray:
    arr = decode_pixels(ds)
    if int(ds.get("NumberOfFrames", 1) or 1) > 1 or arr.ndim != 2:
        raise IntakeError(f"not a single-frame greyscale image (pixel array shape {arr.shape})")
    return imaging.dicom_to_unit(ds, arr)  # burned-in text: cleaned in deidentify_file


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


def read_image(path: Path) -> np.ndarray:
    """An image-folder file as an array (palette and 1-bit images as 8-bit grey).

    Raises:
        IntakeError: the file is not a readable image; the reason names the error type.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("P", "1", "LA", "PA", "I;16", "I"):
                img = img.convert("L") if img.mode in ("P", "1", "LA", "PA") else img
            return np.asarray(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise IntakeError(f"unreadable image ({type(exc).__name__})") from None


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
        files = _list_files(data_dir)
    except PermissionError:
        raise IntakeError(f"data dir {data_dir} cannot be listed: permission denied") from None
    fingerprint = _fingerprint(data_dir, files, image_size)
    report_path = state_dir / REPORT_FILE
    if not force and cache_npz.exists() and cache_meta.exists() and report_path.exists():
        meta = json.loads(cache_meta.read_text())
        if meta.get("fingerprint") == fingerprint:
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
        role = _folder_role(Path(rel))
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
            if mask.shape != cases[ref].image.shape:
                raise IntakeError(
                    f"mask size {mask.shape} differs from its image {cases[ref].image.shape}"
                )
            cases[ref].mask = mask
            cases[ref].sources.append(rel)
        except IntakeError as exc:
            fate(rel, REJECTED, str(exc))

    review: list[tuple[np.ndarray, np.ndarray]] = []

    def check(path: Path, rel: str, raw: np.ndarray) -> tuple[np.ndarray, int]:
        """The strict pixel check of an image-folder image (no header vouches for it)."""
        from common import pixel_phi

        pixels = raw[..., :3] if raw.ndim == 3 else raw
        if not pixel_phi.policy(None).strict:  # the recipe turned image folders off
            return pixels, 0
        try:
            cleaned, done = pixel_phi.clean_image(pixels)
        except IntakeError as exc:
            if exc.quarantine:
                quarantine_copy(path, rel, state_dir / "quarantine")
            raise
        review.extend(_crops(pixels, cleaned, done.boxes))
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
        _write_review(state_dir / REVIEW_FILE, review)
    _summarise(report, good, arrays)
    # Each file is written whole or not at all, the cache's description last: an
    # interrupted intake leaves the previous cache or none, never half of one.
    cache_npz.parent.mkdir(parents=True, exist_ok=True)
    cache_meta.unlink(missing_ok=True)
    with _replaced(cache_npz) as f:
        np.savez(f, **{k: getattr(arrays, k) for k in SiteArrays.__dataclass_fields__})
    # The report names input files (paths can carry identifiers): it stays in the state
    # dir for the site's staff. The cache holds only pseudonymised arrays and counts.
    with _replaced(report_path) as f:
        f.write(json.dumps(report.to_json(), indent=2).encode())
    meta = {
        "fingerprint": fingerprint,
        "data_dir": str(data_dir.resolve()),
        "image_size": image_size,
        "cases": report.cases,
        "counts": report.counts(),
    }
    with _replaced(cache_meta) as f:
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
    image = imaging.to_grey(raw)
    case = _Case(image=image, vendor=vendor, case=f"IMG-{stem}", sources=[rels["image"]])
    case.cleaned = regions
    for role in ("mask", "mask2", "fov"):
        if role not in parts:
            continue
        try:
            arr = imaging.to_grey(read_image(parts[role]))
            if arr.shape != image.shape:
                raise IntakeError(f"{role} size {arr.shape} differs from its image {image.shape}")
            setattr(case, role, (arr > 127).astype(np.uint8))
            case.sources.append(rels[role])
        except IntakeError as exc:
            fate(rels[role], REJECTED, str(exc))
    cases[f"plain:{group}/{stem}"] = case


def _to_arrays(cases: list[_Case], size: int) -> SiteArrays:
    n = len(cases)
    images = np.zeros((n, size, size), np.float16)
    masks = np.zeros((n, size, size), np.uint8)
    masks2 = np.zeros((n, size, size), np.uint8)
    fov = np.ones((n, size, size), np.uint8)
    has2 = np.zeros(n, bool)
    for i, c in enumerate(cases):
        images[i] = imaging.normalise(imaging.resize_image(c.image, size))
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
    report.vendors = dict(Counter(c.vendor for c in cases))
    sizes = Counter(f"{c.image.shape[1]}x{c.image.shape[0]}" for c in cases)
    report.image_sizes = dict(sizes.most_common())  # every size, commonest first
    if cases:
        report.foreground_fraction = float(np.mean([c.mask.mean() for c in cases]))
        report.objects_per_case = float(np.mean([ndimage.label(c.mask)[1] for c in cases]))
        report.empty_masks = int(sum(not c.mask.any() for c in cases))
        report.second_annotator = int(arrays.has_mask2.sum())


def _crops(before: np.ndarray, after: np.ndarray, boxes) -> list[tuple[np.ndarray, np.ndarray]]:
    """(before, after) crops around each cleaned box, with some context."""
    out = []
    for top, left, height, width in boxes:
        pad = max(4, height)
        y0, x0 = max(0, top - pad), max(0, left - pad)
        y1, x1 = top + height + pad, left + width + pad
        out.append((before[y0:y1, x0:x1].copy(), after[y0:y1, x0:x1].copy()))
    return out


def _write_review(path: Path, crops: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """A contact sheet: one row per cleaned region, before | after, 48 px high (mode 0600)."""
    from PIL import Image

    rows = []
    for before, after in crops[:REVIEW_CROPS]:
        lo, hi = float(before.min()), float(before.max())  # one scale for both
        pair = [_to_rgb8(x, lo, hi) for x in (before, after)]
        h = 48
        pair = [
            np.asarray(Image.fromarray(x).resize((max(1, x.shape[1] * h // max(1, x.shape[0])), h)))
            for x in pair
        ]
        gap = np.full((h, 4, 3), 255, np.uint8)
        rows.append(np.concatenate([pair[0], gap, pair[1]], axis=1))
    width = max(r.shape[1] for r in rows)
    sheet = np.full((len(rows) * 52, width, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        sheet[i * 52 : i * 52 + 48, : row.shape[1]] = row
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        Image.fromarray(sheet).save(f, format="PNG")


def _to_rgb8(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    arr = ((x.astype(np.float32) - lo) / max(hi - lo, 1e-6) * 255).clip(0, 255).astype(np.uint8)
    return arr if arr.ndim == 3 else np.repeat(arr[..., None], 3, axis=-1)


def cache_path(state_dir: Path, image_size: int) -> Path:
    """Where :func:`prepare_site` keeps a site's arrays at ``image_size``."""
    return Path(state_dir) / "cache" / f"site-{image_size}.npz"


@contextlib.contextmanager
def _replaced(path: Path):
    """A binary file handle whose content replaces ``path`` only if the block completes."""
    part = path.with_name(path.name + ".part")
    try:
        with open(part, "wb") as f:
            yield f
        part.replace(path)
    finally:
        part.unlink(missing_ok=True)


def load_prepared(data_dir: Path, state_dir: Path, image_size: int) -> tuple[SiteArrays, dict]:
    """The arrays ``fedsynth site prepare`` cached for a site; never de-identifies.

    Training reads only what intake produced: de-identification (with pixel OCR) is a
    phase of its own. A folder that changed since it was prepared is still served from
    the prepared cache, with a warning in the log.

    Args:
        data_dir: the site's raw data folder (only compared, never read).
        state_dir: the site's state dir, where intake left its cache.
        image_size: the run's training resolution.

    Returns:
        ``(arrays, description)``; the description has the intake ``counts``.

    Raises:
        IntakeError: no cache at this size, or one prepared from another data folder; the
            message says which command to run (it names no path: it may leave the site).
    """
    npz = cache_path(state_dir, image_size)
    meta_path = npz.with_suffix(".json")
    if not npz.exists() or not meta_path.exists():
        raise IntakeError(
            f"no prepared data at image-size {image_size}: run `fedsynth site prepare "
            f"--image-size {image_size}` with this node's data-dir and state-dir before "
            "the run (training never de-identifies)"
        )
    meta = json.loads(meta_path.read_text())
    data_dir = Path(data_dir)
    prepared_from = meta.get("data_dir")
    if prepared_from and data_dir.exists() and Path(prepared_from) != data_dir.resolve():
        raise IntakeError(
            "the prepared data came from another folder than this node's data-dir: run "
            f"`fedsynth site prepare --image-size {image_size}` again with the data-dir "
            "in use"
        )
    try:
        current = _fingerprint(data_dir, _list_files(data_dir), image_size)
    except OSError:
        current = meta.get("fingerprint")
    if current != meta.get("fingerprint"):
        logger.warning(
            "the data folder changed since it was prepared; training on the data prepared "
            "then. Run `fedsynth site prepare` to include the changes"
        )
    return load_cached(npz), meta


def load_cached(path: Path) -> SiteArrays:
    """Load a cache written by :func:`prepare_site` (fast: one ``np.load``)."""
    with np.load(path) as z:
        return SiteArrays(**{k: z[k] for k in SiteArrays.__dataclass_fields__})
