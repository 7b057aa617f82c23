"""Burned-in text in pixel data: blank it, check that it is gone, or refuse the image.

An image is *suspect* when it says BurnedInAnnotation=YES or comes from a modality that
often burns text in (:data:`SUSPECT_MODALITIES`). For a suspect image:

1. a known text region for its device (:data:`KNOWN_REGIONS`, keyed by Manufacturer and
   model, in the spirit of per-model pixel anonymiser scripts) is blanked;
2. OCR (Tesseract, from Debian's ``tesseract-ocr``) looks for words; each word read with
   confidence >= :data:`MIN_CONFIDENCE` is blanked;
3. OCR runs again on the cleaned image; any word still read means the image cannot be
   cleaned with confidence.

Anything short of a clean second pass raises :class:`~common.errors.IntakeError` with
``quarantine=True`` (held for a person, never used): text still found, a suspect image
with no known region in which OCR finds nothing (the text may simply have been missed),
or no Tesseract installed where it is needed.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess

import numpy as np

from common.errors import IntakeError

#: (Manufacturer, ManufacturerModelName) -> share of rows from the top that hold text.
KNOWN_REGIONS: dict[tuple[str, str], float] = {
    ("Helios Medical", "Helix DX-9"): 0.08,
}
#: Modalities treated as suspect even without BurnedInAnnotation=YES.
SUSPECT_MODALITIES = frozenset({"US", "SC", "ES", "XC", "GM"})
MIN_CONFIDENCE = 60.0
_SMALL = 512  # images smaller than this are read at twice the size (small fonts)


def is_suspect(ds) -> bool:
    """Whether ``ds`` may carry burned-in text."""
    return (
        str(ds.get("BurnedInAnnotation", "NO")).upper() == "YES"
        or str(ds.get("Modality", "")) in SUSPECT_MODALITIES
    )


def ocr_available() -> bool:
    """Whether OCR can run: ``tesseract`` is installed and ``FEDSYNTH_OCR`` is not ``0``.

    With OCR off, suspect images without a known text region are quarantined.
    """
    return os.environ.get("FEDSYNTH_OCR", "1") != "0" and shutil.which("tesseract") is not None


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    arr = pixels.astype(np.float32)
    if arr.ndim == 3:
        arr = arr.mean(axis=-1)
    lo, hi = np.percentile(arr, [0.5, 99.9])
    return (np.clip((arr - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)


def read_words(pixels: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Boxes ``(top, left, height, width)`` of words OCR reads with enough confidence.

    Args:
        pixels: a 2D (or colour) image, any dtype.

    Returns:
        Boxes in pixel coordinates of ``pixels``; the words themselves are never kept.
    """
    from PIL import Image

    img = Image.fromarray(_to_uint8(pixels))
    scale = 2 if max(img.width, img.height) < _SMALL else 1
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    # One OpenMP thread: Tesseract's default thread pool costs far more than it saves on
    # images this size (6x slower here), and workers already use the cores.
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    res = subprocess.run(
        ["tesseract", "stdin", "stdout", "--psm", "11", "tsv"],
        input=buf.getvalue(),
        capture_output=True,
        timeout=120,
        env=env,
    )
    if res.returncode != 0:
        raise IntakeError("OCR failed on this image", quarantine=True)
    boxes = []
    for line in res.stdout.decode("utf-8", "replace").splitlines()[1:]:
        cols = line.split("\t")
        if len(cols) != 12 or len(cols[11].strip()) < 2:
            continue
        if float(cols[10]) < MIN_CONFIDENCE:
            continue
        left, top, width, height = (int(c) // scale for c in cols[6:10])
        boxes.append((top, left, height, width))
    return boxes


def clean_pixels(ds, pixels: np.ndarray) -> np.ndarray:
    """Return ``pixels`` with burned-in text removed (a copy), or unchanged if not suspect.

    Args:
        ds: the dataset the pixels belong to (device identity, modality, photometry).
        pixels: its stored pixel array (2D, or 3D colour).

    Raises:
        IntakeError: (quarantine) when the image cannot be cleaned with confidence.
    """
    if not is_suspect(ds):
        return pixels
    out = pixels.copy()
    inverted = str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1"
    background = out.max() if inverted else out.min()
    key = (str(ds.get("Manufacturer", "")), str(ds.get("ManufacturerModelName", "")))
    band = KNOWN_REGIONS.get(key)
    if band is not None:
        out[: int(np.ceil(out.shape[0] * band))] = background
    if not ocr_available():
        if band is not None:
            return out
        raise IntakeError(
            "possible burned-in text, no known text region for this device, "
            "and OCR is off or tesseract is not installed",
            quarantine=True,
        )
    found = read_words(out)
    if not found and band is None and str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        raise IntakeError(
            "marked as having burned-in text, but OCR found none to remove", quarantine=True
        )
    for top, left, height, width in found:
        pad = max(2, height // 4)
        out[max(0, top - pad) : top + height + pad, max(0, left - pad) : left + width + pad] = (
            background
        )
    if found and read_words(out):
        raise IntakeError("burned-in text still detected after cleaning", quarantine=True)
    return out
