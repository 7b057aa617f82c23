"""The site's one de-identification path, for one file and for a whole folder.

:func:`deidentify_file` reads a DICOM file, notes every identifying value it holds,
de-identifies it (:func:`common.deid.profile.deidentify`), cleans or refuses burned-in text
(:mod:`common.deid.burned_in`), serialises it, and searches the result's raw bytes for the
noted values (:mod:`common.deid.verify`). The site intake and ``fedsynth anonymize`` both go
through it.

:func:`anonymize_folder` runs it over a folder with worker processes and gives every
input one fate: **written** (to ``OUT/<patient pseudonym>/<instance UID>.dcm``),
**quarantined** (the input copied to the site's private quarantine folder, with the
reason) or **rejected** (with the reason). The input folder is only read.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from common.deid.profile import DeidOptions, deidentify, is_kept
from common.deid.pseudonyms import TABLE_FILE, ReidentificationTable, SiteSecret
from common.errors import IntakeError

logger = logging.getLogger(__name__)

WRITTEN, QUARANTINED, REJECTED = "written", "quarantined", "rejected"


@dataclass
class Deidentified:
    """A de-identified, verified file: the dataset, its bytes and the pseudonyms made."""

    ds: object
    data: bytes
    mapping: dict[str, tuple[str, str]]


@contextlib.contextmanager
def _quiet_pydicom():
    """No value validation while reading: pydicom's warnings quote header values (PHI)."""
    from pydicom import config

    modes = config.settings.reading_validation_mode, config.settings.writing_validation_mode
    config.settings.reading_validation_mode = config.IGNORE
    config.settings.writing_validation_mode = config.IGNORE
    try:
        yield
    finally:
        config.settings.reading_validation_mode, config.settings.writing_validation_mode = modes


@contextlib.contextmanager
def _pydicom_warnings_to_log():
    """Hold back pydicom's warnings, and the log lines it doubles them with, for the block;
    then log one debug line naming only their count and categories. Their text is dropped:
    pydicom's warnings can quote header values (PHI)."""
    import warnings

    def drop_pydicom_warnings(record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING

    pydicom_log = logging.getLogger("pydicom")
    pydicom_log.addFilter(drop_pydicom_warnings)  # a new filter per call: threads may overlap
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        pydicom_log.removeFilter(drop_pydicom_warnings)
        if caught:
            kinds = Counter(w.category.__name__ for w in caught)
            logger.debug(
                "%d warning(s) while reading a DICOM file: %s (text not logged: it can quote "
                "header values)",
                len(caught),
                ", ".join(f"{name} x{n}" for name, n in sorted(kinds.items())),
            )


def read_dicom(path: Path):
    """Read a DICOM file or raise :class:`IntakeError` with a reason (no header values).

    Every element is decoded here (pydicom decodes lazily), so that the warnings reading
    raises are all raised now: they go to the log as one debug line that names only their
    count and categories, never to the caller or the terminal. A file whose elements cannot
    be decoded is refused here too.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        if path.stat().st_size == 0:
            raise IntakeError("empty file (0 bytes)")
        with _pydicom_warnings_to_log():
            try:
                ds = pydicom.dcmread(path)
            except InvalidDicomError:
                # No preamble or file meta (older exports): accept only if it parses as a
                # dataset with a SOP class.
                ds = pydicom.dcmread(path, force=True)
                if "SOPClassUID" not in ds:
                    raise InvalidDicomError("no preamble and no SOP class") from None
            ds.walk(lambda _ds, _elem: None)  # decode every element, nested ones included
    except IntakeError:
        raise
    except InvalidDicomError:
        raise IntakeError("not a DICOM file or supported image") from None
    except PermissionError:
        raise IntakeError("unreadable: permission denied") from None
    except Exception as exc:  # truncated or corrupt header
        raise IntakeError(f"unreadable DICOM ({type(exc).__name__})") from None
    if path.name.upper() == "DICOMDIR" or "DirectoryRecordSequence" in ds:
        raise IntakeError("DICOMDIR index file, not an image")
    return ds


#: FedSynth's implementation identity in the file meta of every file it writes.
IMPLEMENTATION_CLASS_UID = "2.25.193117519187046233637960823946361004812"
IMPLEMENTATION_VERSION = "FEDSYNTH_0_1"


def _rewrite_file_meta(ds) -> None:
    """A new file meta header: transfer syntax, SOP class/instance, FedSynth's identity."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import (
        ExplicitVRBigEndian,
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
    )

    old = getattr(ds, "file_meta", None)
    ts = old.get("TransferSyntaxUID") if old is not None else None
    if ts is None:
        implicit, little = getattr(ds, "original_encoding", (False, True))
        ts = (
            ImplicitVRLittleEndian
            if implicit
            else ExplicitVRLittleEndian
            if little
            else ExplicitVRBigEndian
        )
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ts
    if "SOPClassUID" in ds:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
    if "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    ds.file_meta = meta


def decode_pixels(ds) -> np.ndarray:
    """The pixel array of ``ds``, or an :class:`IntakeError` (rejected) that says why not:
    no pixel data, pixel data cut short, or a transfer syntax that cannot be decoded."""
    if "PixelData" not in ds:
        raise IntakeError("no pixel data")
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if ts is not None and not ts.is_compressed:
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        if str(ds.get("PhotometricInterpretation", "")) == "YBR_FULL_422":
            samples = 2  # Cb and Cr are stored for every second pixel only
        expected = (
            int(ds.Rows)
            * int(ds.Columns)
            * samples
            * int(ds.get("NumberOfFrames", 1) or 1)
            * int(ds.BitsAllocated)
        ) // 8
        if len(ds.PixelData) < expected:
            raise IntakeError(
                f"pixel data truncated: {len(ds.PixelData)} of {expected} bytes "
                "(file cut short in transfer?)"
            )
    try:
        with _pydicom_warnings_to_log():
            arr = ds.pixel_array
    except Exception as exc:
        ts = ds.file_meta.get("TransferSyntaxUID", "unknown") if hasattr(ds, "file_meta") else "?"
        raise IntakeError(
            f"pixel data cannot be decoded (transfer syntax {ts}: {type(exc).__name__})"
        ) from None
    return arr


def _clean_burned_in(ds, clean: bool) -> bool:
    """Check pixels for burned-in text as the pixel policy says; True if they were changed.

    Strict images are decoded and cleaned (or quarantined); fast-checked ones are decoded
    and looked at, and cleaned only when the fast check finds glyph-like lines.
    """
    from common.deid import burned_in

    check = burned_in.policy(ds).check
    if check == "none" or "PixelData" not in ds:
        return False
    if check == "strict" and not clean:
        raise IntakeError("possible burned-in text and Clean Pixel Data is off", quarantine=True)
    if check == "strict":
        try:
            if ds.file_meta.TransferSyntaxUID.is_compressed:
                ds.decompress(generate_instance_uid=False)  # the UID is pseudonymised later
            pixels = ds.pixel_array
        except Exception as exc:
            raise IntakeError(
                "possible burned-in text and pixel data that cannot be decoded "
                f"({type(exc).__name__})",
                quarantine=True,
            ) from None
    else:
        pixels = decode_pixels(ds)  # unusable pixels: rejected, with the reason
    # Multi-frame images are read frame by frame: text in a cine loop is usually the same
    # in every frame, but a frame-varying overlay (a clock, a counter) must be found too.
    multi_frame = int(ds.get("NumberOfFrames", 1) or 1) > 1
    if check == "fast":
        if not burned_in.fast_check(pixels, multi_frame):
            return False
        if not clean:
            raise IntakeError(
                "glyph-like lines in the pixels (fast check) and Clean Pixel Data is off",
                quarantine=True,
            )
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            ds.decompress(generate_instance_uid=False)
            pixels = ds.pixel_array
    cleaned = burned_in.clean_pixels(ds, pixels, multi_frame=multi_frame)
    if cleaned is pixels:
        return False
    ds.PixelData = np.ascontiguousarray(cleaned).astype(pixels.dtype).tobytes()
    if str(ds.get("PhotometricInterpretation", "")).startswith("YBR"):
        # pydicom decoded YBR to RGB; the cleaned pixels are written back as RGB, full
        # resolution, colour-by-pixel
        ds.PhotometricInterpretation = "RGB"
    if int(ds.get("SamplesPerPixel", 1) or 1) > 1:
        ds.PlanarConfiguration = 0
    return True


def deidentify_file(
    path: Path, secret: SiteSecret, options: DeidOptions = DeidOptions(), clean_pixels: bool = True
) -> Deidentified:
    """Read, de-identify, clean and verify one file.

    Args:
        path: the input file (only read).
        secret: the site secret.
        options: the profile options.
        clean_pixels: Clean Pixel Data: blank burned-in text (else suspect images are
            quarantined).

    Returns:
        :class:`Deidentified` (dataset, verified bytes, pseudonym mapping).

    Raises:
        IntakeError: with a reason; ``quarantine`` is set when the file holds PHI that
            could not be removed with confidence.
    """
    with _quiet_pydicom():
        return _deidentify_file(path, secret, options, clean_pixels)


def _deidentify_file(
    path: Path, secret: SiteSecret, options: DeidOptions, clean_pixels: bool
) -> Deidentified:
    from pydicom import dcmwrite

    from common.deid.verify import found_in, identifying_values, kept_values

    ds = read_dicom(path)
    if "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:
        raise IntakeError("no SOPClassUID or SOPInstanceUID: not a complete DICOM instance")

    def kept(tag) -> bool:
        return is_kept(tag, options)

    originals = identifying_values(ds, kept)
    allowed = kept_values(ds, kept)  # what the input holds in attributes the profile keeps
    with _pydicom_warnings_to_log():  # decoding pixels warns too (padding, lengths)
        cleaned = _clean_burned_in(ds, clean_pixels)
    mapping: dict[str, tuple[str, str]] = {}
    deidentify(ds, secret, mapping, options, pixels_cleaned=cleaned)
    _rewrite_file_meta(ds)
    buf = io.BytesIO()
    try:
        dcmwrite(buf, ds, enforce_file_format=True)
    except Exception as exc:
        raise IntakeError(f"cannot be written back as DICOM ({type(exc).__name__})") from None
    data = buf.getvalue()
    hits = found_in(data, originals, allowed)
    if hits:
        raise IntakeError(
            f"self-verification found original values of {', '.join(hits)} in the output",
            quarantine=True,
        )
    return Deidentified(ds=ds, data=data, mapping=mapping)


def quarantine_copy(path: Path, rel: str, quarantine_dir: Path) -> Path:
    """Copy a quarantined input into the site's private quarantine folder.

    The copy is named by a hash of its relative path (paths can carry identifiers), so
    the same input always lands on the same name.
    """
    quarantine_dir.mkdir(parents=True, exist_ok=True)
    target = quarantine_dir / f"{hashlib.sha256(rel.encode()).hexdigest()[:16]}{path.suffix}"
    shutil.copyfile(path, target)
    return target


# ------------------------------------------------------------------------------ folder

_SECRET: SiteSecret | None = None


def _init_worker(secret_path: str, ocr: str | None = None) -> None:
    global _SECRET  # one secret per worker process, loaded once
    _SECRET = SiteSecret.load(secret_path)
    if ocr is not None:  # the caller's FEDSYNTH_OCR (the fork server may predate it)
        os.environ["FEDSYNTH_OCR"] = ocr


def _one(job: tuple) -> dict:
    in_dir, rel, out_dir, quarantine_dir, options, clean_pixels = job
    path = Path(in_dir) / rel
    assert _SECRET is not None
    try:
        result = deidentify_file(path, _SECRET, options, clean_pixels)
    except IntakeError as exc:
        if exc.quarantine:
            target = quarantine_copy(path, rel, Path(quarantine_dir))
            return {
                "input": rel,
                "fate": QUARANTINED,
                "reason": str(exc),
                "quarantined-as": target.name,
            }
        return {"input": rel, "fate": REJECTED, "reason": str(exc)}
    ds = result.ds
    patient = str(ds.get("PatientID", "") or "no-patient-id")
    output = f"{patient}/{ds.SOPInstanceUID}.dcm"
    part = Path(out_dir) / f"{output}.{hashlib.sha256(rel.encode()).hexdigest()[:12]}.part"
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(result.data)
    return {
        "input": rel,
        "fate": WRITTEN,
        "output": output,
        "part": str(part),
        "mapping": result.mapping,
    }


def _place(res: dict, out_dir: Path) -> dict:
    """Move a worker's output into place, in input order (so duplicates resolve the same
    way however many workers ran)."""
    part = Path(res.pop("part", "")) if "part" in res else None
    if part is None:
        return res
    target = out_dir / res["output"]
    if target.exists():
        same = target.read_bytes() == part.read_bytes()
        part.unlink()
        if same:
            return {**res, "note": "identical output already present"}
        res.pop("mapping", None)
        return {
            "input": res["input"],
            "fate": REJECTED,
            "reason": "same SOPInstanceUID as an earlier input, with different content",
        }
    part.replace(target)
    return res


@dataclass
class AnonymizationReport:
    """Every input's fate; ``counts`` add up to ``inputs``."""

    inputs: int
    counts: dict[str, int]
    files: list[dict]
    seconds: float
    workers: int

    def to_json(self) -> dict:
        """A JSON-ready dict (names input files: keep it at the site)."""
        return asdict(self)


def anonymize_folder(
    in_dir: Path,
    out_dir: Path,
    secret_path: Path,
    workers: int = 1,
    quarantine_dir: Path | None = None,
    progress=None,
    options: DeidOptions = DeidOptions(),
    clean_pixels: bool = True,
    new_secret: bool = False,
) -> AnonymizationReport:
    """De-identify every file under ``in_dir`` into ``out_dir``.

    Args:
        in_dir: the input folder (never modified).
        out_dir: where de-identified files go (``<patient pseudonym>/<instance UID>.dcm``).
        secret_path: the site secret file; it must exist unless ``new_secret``.
        workers: worker processes (1: in this process).
        quarantine_dir: where quarantined inputs are copied (default: ``quarantine/``
            beside the secret, i.e. in the site's private state).
        progress: optional callable ``progress(advance)`` called per file.
        options: the profile options.
        clean_pixels: Clean Pixel Data (else suspect images are quarantined).
        new_secret: make the secret at ``secret_path`` (a new site); refused if it exists.

    Returns:
        The report, also written (with input paths) beside the secret as
        ``anonymization_report.json``; ``out_dir/anonymization_summary.json`` gets the
        counts only, since input paths can carry identifiers.
    """
    in_dir, out_dir, secret_path = Path(in_dir), Path(out_dir), Path(secret_path)
    if not in_dir.is_dir():
        raise IntakeError(f"input folder {in_dir} does not exist or is not a folder")
    if out_dir.resolve().is_relative_to(in_dir.resolve()):
        raise IntakeError(
            f"output folder {out_dir} lies inside the input folder; "
            "choose one outside it (the input is never modified)"
        )
    private = secret_path.parent
    quarantine_dir = quarantine_dir or private / "quarantine"
    secret = SiteSecret.open(secret_path, new=new_secret)
    files = sorted(
        str(p.relative_to(in_dir)) for p in in_dir.rglob("*") if p.is_file() or p.is_symlink()
    )
    jobs = [
        (str(in_dir), rel, str(out_dir), str(quarantine_dir), options, clean_pixels)
        for rel in files
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results = []
    if workers <= 1:
        _init_worker(str(secret_path))
        for job in jobs:
            results.append(_place(_one(job), out_dir))
            if progress:
                progress(1)
    else:
        import multiprocessing as mp

        # Not "fork": a process that has run OpenMP code (torch) cannot be forked safely,
        # and its children hang. The fork server is a clean process that workers are
        # forked from; each worker reads text through an OCR process of its own.
        ctx = mp.get_context("forkserver")
        init = (str(secret_path), os.environ.get("FEDSYNTH_OCR", "1"))
        with ctx.Pool(workers, initializer=_init_worker, initargs=init) as pool:
            for res in pool.imap(_one, jobs, chunksize=8):  # results come in input order
                results.append(_place(res, out_dir))
                if progress:
                    progress(1)
    seconds = time.perf_counter() - start
    table = ReidentificationTable(private / TABLE_FILE, secret)
    for res in results:
        table.add(res.pop("mapping", {}))
    table.save()
    counts = Counter(r["fate"] for r in results)
    report = AnonymizationReport(
        inputs=len(files),
        counts={
            WRITTEN: counts[WRITTEN],
            QUARANTINED: counts[QUARANTINED],
            REJECTED: counts[REJECTED],
        },
        files=results,
        seconds=seconds,
        workers=workers,
    )
    (private / "anonymization_report.json").write_text(json.dumps(report.to_json(), indent=2))
    (out_dir / "anonymization_summary.json").write_text(
        json.dumps({"inputs": report.inputs, "counts": report.counts}, indent=2)
    )
    logger.info("anonymized %d inputs: %s", report.inputs, report.counts)
    return report
