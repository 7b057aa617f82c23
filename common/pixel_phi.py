"""Burned-in text in pixel data: blank it, check that it is gone, or refuse the image.

An image is *suspect* when it says BurnedInAnnotation=YES or comes from a modality that
often burns text in (:data:`SUSPECT_MODALITIES`). For a suspect image:

1. a known text region for its device (:data:`KNOWN_REGIONS`, keyed by Manufacturer and
   model, in the spirit of per-model pixel anonymiser scripts) is blanked;
2. OCR (Tesseract in a process of its own, :mod:`common.ocr`: it never shares a process
   with torch) looks for words; each word read with confidence >= :data:`MIN_CONFIDENCE`
   is blanked;
3. OCR runs again on the cleaned image; any word still read means the image cannot be
   cleaned with confidence.

Anything short of a clean second pass raises :class:`~common.errors.IntakeError` with
``quarantine=True`` (held for a person, never used): text still found, a suspect image
with no known region in which OCR finds nothing (the text may simply have been missed),
or no Tesseract installed where it is needed.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from common.errors import IntakeError
from common.ocr import OcrProcess, OcrUnavailable

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


@functools.cache
def _engine(pid: int) -> OcrProcess | None:
    """One OCR process per calling process (keyed by pid, so a forked worker starts its own).

    Started on first use; it ends with the calling process.
    """
    return OcrProcess.start()


def ocr_available() -> bool:
    """Whether OCR can run: libtesseract is installed and ``FEDSYNTH_OCR`` is not ``0``.

    With OCR off, suspect images without a known text region are quarantined.
    """
    return os.environ.get("FEDSYNTH_OCR", "1") != "0" and _engine(os.getpid()) is not None


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

    engine = _engine(os.getpid())
    if engine is None:
        raise IntakeError(
            "OCR is needed for this image but libtesseract is not installed", quarantine=True
        )
    img = Image.fromarray(_to_uint8(pixels))
    scale = 2 if max(img.width, img.height) < _SMALL else 1
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale))
    boxes = []
    try:
        words = list(engine.words(np.asarray(img)))
    except OcrUnavailable as exc:
        raise IntakeError(f"{exc}; held for review", quarantine=True) from None
    for left, top, width, height, confidence, text in words:
        if len(text.strip()) < 2 or confidence < MIN_CONFIDENCE:
            continue
        left, top, width, height = (v // scale for v in (left, top, width, height))
        boxes.append((top, left, height, width))
    return boxes


def clean_pixels(ds, pixels: np.ndarray, multi_frame: bool = False) -> np.ndarray:
    """Return ``pixels`` with burned-in text removed (a copy), or unchanged if not suspect.

    Args:
        ds: the dataset the pixels belong to (device identity, modality, photometry).
        pixels: its stored pixel array (2D, or 3D colour; one more leading axis of frames
            when ``multi_frame``).
        multi_frame: ``pixels`` holds frames; each is cleaned and checked on its own.

    Raises:
        IntakeError: (quarantine) when the image cannot be cleaned with confidence.
    """
    if not is_suspect(ds):
        return pixels
    out = pixels.copy()
    frames = out if multi_frame else out[None]
    inverted = str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1"
    background = out.max() if inverted else out.min()
    key = (str(ds.get("Manufacturer", "")), str(ds.get("ManufacturerModelName", "")))
    band = KNOWN_REGIONS.get(key)
    if band is not None:
        frames[:, : int(np.ceil(frames.shape[1] * band))] = background
    if not ocr_available():
        if band is not None:
            return out
        raise IntakeError(
            "possible burned-in text, no known text region for this device, "
            "and OCR is off or tesseract is not installed",
            quarantine=True,
        )
    found = 0
    for index, frame in enumerate(frames):  # views: blanking writes into ``out``
        boxes = read_words(frame)
        found += len(boxes)
        for top, left, height, width in boxes:
            pad = max(2, height // 4)
            y0, x0 = max(0, top - pad), max(0, left - pad)
            frame[y0 : top + height + pad, x0 : left + width + pad] = background
        if boxes and read_words(frame):
            where = f" (frame {index + 1})" if multi_frame else ""
            raise IntakeError(
                f"burned-in text still detected after cleaning{where}", quarantine=True
            )
    if not found and band is None and str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        raise IntakeError(
            "marked as having burned-in text, but OCR found none to remove", quarantine=True
        )
    return out
