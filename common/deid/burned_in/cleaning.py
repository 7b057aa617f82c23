"""Burned-in text in pixel data: find it without reading it, clean it, check, or refuse.

**Policy**: :mod:`common.deid.burned_in.policy` says which check an image gets (strict,
fast or none) and why. The *fast check* (:func:`fast_check`,
:mod:`common.deid.burned_in.strokes`: lines of glyph-like strokes at the extremes of the
range, milliseconds a frame) sends what it finds to the strict check.

**Strict check** (:func:`clean_image`), frame by frame:

1. a known text region for the device (the recipe's ``known_regions``, keyed by
   Manufacturer and model, in the spirit of per-model pixel anonymiser scripts) is
   blanked;
2. a text *detector* (:mod:`common.deid.burned_in.detector`: where text is, not what it says) finds
   text-like regions (with its sensitive thresholds: a false alarm costs a few pixels),
   and OCR (Tesseract) reads words; every region and every word read
   with confidence >= :data:`MIN_CONFIDENCE` is filled with the median of the pixels
   around it. A region counts as PHI whether or not OCR could read it: small, thin or
   low-contrast text is exactly what OCR misses. The one exception is a colour frame's
   specular highlight (:func:`_highlight`): a compact whitish region on lit, coloured
   tissue, inside the image (not at its margins, where overlays are written), not part
   of a block of lines, and where OCR reads nothing surely;
3. lines found stacked at one margin make a block, filled whole (a faint line between
   two found ones is covered too: :func:`text_blocks`), and the column that holds the
   block is searched again at twice the size for faint or short lines above and below;
4. the frame is checked again by both, with the detector's standard thresholds; what
   this check finds is cleaned too, and a second check (words only when read surely)
   must find nothing: a text-like region or a
   word still found means the image cannot be cleaned with confidence. A frame of a
   loop identical to the one before it is cleaned as that one was.

Both run in an OCR process of its own (:mod:`common.deid.burned_in.ocr`), never beside
torch. Anything
short of a clean check raises :class:`~common.errors.IntakeError` with
``quarantine=True`` (held for a person, never used): text still found, cleaning that would
cover more than :data:`MAX_CLEANED_FRACTION` of the image (it would hide the anatomy), an
image marked BurnedInAnnotation=YES in which nothing text-like is found (the text may
have been missed), or no detector installed where one is needed (``FEDSYNTH_OCR=0`` turns
the OCR process off: strict images are then quarantined unless a known region covers
their text).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from common.deid.burned_in.policy import policy, recipe
from common.deid.burned_in.strokes import enclosing, text_lines
from common.errors import IntakeError

if TYPE_CHECKING:
    from common.deid.burned_in.ocr import OcrProcess

MIN_CONFIDENCE = 60.0
#: A word that fails the final check: read this surely, with this many letters or digits.
VERIFY_CONFIDENCE, VERIFY_CHARACTERS = 80.0, 3
#: Checks after the first cleaning: what the first check finds is cleaned too (OCR also
#: "reads" words in textured tissue; filled, they are not read again), the second must
#: find nothing.
PASSES = 2
#: Text blocks: at least this many lines at one left margin, at most this many line
#: heights apart (see :func:`text_blocks`).
BLOCK_LINES, BLOCK_GAP = 3, 3.0
#: The column searched again around a text block (:func:`_column_search`): this many
#: pixels either side, and this many block heights above and below it.
COLUMN_MARGIN, COLUMN_REACH = 12, 1
#: Cleaning more than this share of an image would hide the anatomy: quarantine instead.
MAX_CLEANED_FRACTION = 0.25
_SMALL = 512  # images smaller than this are read at twice the size (small fonts)
#: Specular highlights (light reflected by wet mucosa: every endoscopy frame has them)
#: look like text to the detector. In a colour image, a region is taken for one and left
#: alone only when all of these hold (:func:`_highlight`): it lies inside the image, not
#: in the outer ``TEXT_MARGIN`` where overlays are written, nor in a block of stacked
#: lines (:func:`text_blocks`: a detector cuts a date into pieces); it is narrower than
#: ``HIGHLIGHT_ASPECT`` times its height (a date, a name or an ID is longer); its brightest
#: pixel has every channel >= ``HIGHLIGHT_CORE``; the ring around it is lit, coloured
#: tissue (median brightness >= ``TISSUE_LEVEL``, red minus blue >= ``TISSUE_CHROMA``);
#: and OCR reads no word in it surely (Tesseract "reads" glints, rarely surely).
HIGHLIGHT_ASPECT, HIGHLIGHT_CORE, TEXT_MARGIN = 2.2, 170, 0.2
TISSUE_LEVEL, TISSUE_CHROMA = 50, 30


def fast_check(pixels: np.ndarray, multi_frame: bool = False) -> list[tuple[int, int, int, int]]:
    """Lines of glyph-like strokes (:mod:`common.deid.burned_in.strokes`) in the first, middle and
    last frames; empty when none is found. Runs here, without the OCR process."""
    if not multi_frame:
        return text_lines(pixels)
    count = len(pixels)
    return [box for i in sorted({0, count // 2, count - 1}) for box in text_lines(pixels[i])]


@functools.cache
def _engine(pid: int) -> OcrProcess | None:
    """One OCR process per calling process (keyed by pid, so a forked worker starts its own).

    Started on first use; it ends with the calling process.
    """
    from common.deid.burned_in.ocr import OcrProcess  # here: `python -m ...ocr` imports us

    return OcrProcess.start()


def _ocr() -> OcrProcess | None:
    if os.environ.get("FEDSYNTH_OCR", "1") == "0":
        return None
    return _engine(os.getpid())


def ocr_available() -> bool:
    """Whether OCR can read words: Tesseract is installed and ``FEDSYNTH_OCR`` is not ``0``."""
    engine = _ocr()
    return engine is not None and engine.can_read


def detector_available() -> bool:
    """Whether text-like regions can be found (see :mod:`common.deid.burned_in.detector`)."""
    engine = _ocr()
    return engine is not None and engine.can_detect


def _to_uint8(pixels: np.ndarray, colour: bool = False) -> np.ndarray:
    arr = pixels.astype(np.float32)
    if arr.ndim == 3 and not colour:
        arr = arr.mean(axis=-1)
    lo, hi = np.percentile(arr, [0.5, 99.9])
    return (np.clip((arr - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)


def read_words(
    pixels: np.ndarray, confidence: float = MIN_CONFIDENCE, characters: int = 2
) -> list[tuple[int, int, int, int]]:
    """Boxes ``(top, left, height, width)`` of words OCR reads with enough confidence.

    Args:
        pixels: a 2D (or colour) image, any dtype.
        confidence: the lowest Tesseract confidence (0-100) of a word that counts.
        characters: the fewest letters or digits a word that counts has.

    Returns:
        Boxes in pixel coordinates of ``pixels``; the words themselves are never kept.
    """
    from PIL import Image

    from common.deid.burned_in.ocr import OcrUnavailable

    engine = _ocr()
    if engine is None or not engine.can_read:
        raise IntakeError(
            "OCR is needed for this image but libtesseract is not installed", quarantine=True
        )
    img = Image.fromarray(_to_uint8(pixels))
    scale = 2 if max(img.width, img.height) < _SMALL else 1
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale))
    try:
        words = list(engine.words(np.asarray(img)))
    except OcrUnavailable as exc:
        raise IntakeError(f"{exc}; held for review", quarantine=True) from None
    boxes = []
    for left, top, width, height, conf, text in words:
        if sum(c.isalnum() for c in text) < characters or conf < confidence:
            continue
        left, top, width, height = (v // scale for v in (left, top, width, height))
        boxes.append((top, left, height, width))
    return boxes


def text_regions(pixels: np.ndarray, sensitive: bool = False) -> list[tuple[int, int, int, int]]:
    """Boxes ``(top, left, height, width)`` of text-like regions, read or not.

    Args:
        pixels: a 2D image of any dtype, or an RGB image.
        sensitive: the detector's lower thresholds (for cleaning: fewer misses).
    """
    from common.deid.burned_in.ocr import OcrUnavailable

    engine = _ocr()
    if engine is None or not engine.can_detect:
        raise IntakeError(
            "a text detector is needed for this image but none is installed "
            "(deploy/install.sh installs onnxruntime and rapidocr-onnxruntime)",
            quarantine=True,
        )
    colour = pixels.ndim == 3
    try:
        found = engine.regions(_to_uint8(pixels, colour=colour), sensitive=sensitive)
    except OcrUnavailable as exc:
        raise IntakeError(f"{exc}; held for review", quarantine=True) from None
    return [(t, le, h, w) for t, le, h, w, _ in found if h > 0 and w > 0]


@dataclass
class Cleaning:
    """What a strict check did to one image: the boxes it filled, and how they were found."""

    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    regions: int = 0  # text-like regions the detector found
    words: int = 0  # words OCR read with confidence

    @property
    def cleaned(self) -> bool:
        return bool(self.boxes)


def _around(frame: np.ndarray, box, ring: int) -> tuple[np.ndarray, np.ndarray]:
    """The box grown by ``ring`` pixels (clipped to the frame), and the pixels of that
    ring alone (``(n,)`` or ``(n, channels)``)."""
    top, left, height, width = box
    rows, cols = frame.shape[:2]
    y0, x0 = max(0, top - ring), max(0, left - ring)
    outer = frame[y0 : min(rows, top + height + ring), x0 : min(cols, left + width + ring)]
    inside = np.zeros(outer.shape[:2], bool)
    inside[top - y0 : top - y0 + height, left - x0 : left - x0 + width] = True
    return outer, outer[~inside]


def _fill(frame: np.ndarray, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """Fill a padded box with the median of a ring of pixels around it; the padded box."""
    top, left, height, width = box
    pad = max(2, height // 4)
    rows, cols = frame.shape[:2]
    y0, x0 = max(0, top - pad), max(0, left - pad)
    y1, x1 = min(rows, top + height + pad), min(cols, left + width + pad)
    outer, around = _around(frame, (y0, x0, y1 - y0, x1 - x0), max(2, pad))
    value = (
        np.median(around, axis=0)
        if len(around)
        else np.median(outer.reshape(-1, *frame.shape[2:]), axis=0)
    )
    frame[y0:y1, x0:x1] = np.asarray(value).astype(frame.dtype)
    return y0, x0, y1 - y0, x1 - x0


def text_blocks(boxes, min_lines: int = BLOCK_LINES) -> list[tuple[int, int, int, int]]:
    """Blocks of stacked text lines: the box spanning each block.

    Burned-in annotation comes in blocks (patient fields, date, time and counters stacked
    in one column). A detector finds each line on its own and can miss a faint or short
    one between two it found; filling the whole block they span covers it. A line joins
    the block above it when their horizontal extents overlap by at least half of the
    narrower one and the gap between them is at most :data:`BLOCK_GAP` line heights.

    Args:
        boxes: ``(top, left, height, width)`` of the lines found.
        min_lines: the fewest lines that make a block.
    """
    runs: list[list[tuple[int, int, int, int]]] = []
    for box in sorted((b for b in boxes if b[2] > 0 and b[3] > 0), key=lambda b: b[0]):
        top, left, height, width = box
        for run in runs:
            last = run[-1]
            overlap = min(left + width, last[1] + last[3]) - max(left, last[1])
            gap = top - (last[0] + last[2])
            if overlap >= 0.5 * min(width, last[3]) and gap <= BLOCK_GAP * max(height, last[2]):
                run.append(box)
                break
        else:
            runs.append([box])
    return [enclosing(run) for run in runs if len(run) >= min_lines]


def _column_search(frame: np.ndarray, blocks) -> list[tuple[int, int, int, int]]:
    """Faint or short lines in the columns that hold text blocks, looked for again at
    twice the size (counters, position bars and elapsed times sit just above or below the
    block of patient fields, often fainter), up to a block's height away."""
    from PIL import Image

    found = []
    rows, cols = frame.shape[:2]
    for top, left, height, width in blocks:
        x0, x1 = max(0, left - COLUMN_MARGIN), min(cols, left + width + 2 * COLUMN_MARGIN)
        y0, y1 = max(0, top - COLUMN_REACH * height), min(rows, top + (1 + COLUMN_REACH) * height)
        crop = _to_uint8(frame[y0:y1, x0:x1], colour=frame.ndim == 3)
        big = Image.fromarray(crop).resize((crop.shape[1] * 2, crop.shape[0] * 2), Image.BICUBIC)
        for t, le, h, w in text_regions(np.asarray(big), sensitive=True):
            found.append((y0 + t // 2, x0 + le // 2, (h + 1) // 2, (w + 1) // 2))
    return found


def _clusters(boxes, shape, margin: int) -> list[tuple[int, int, int, int]]:
    """Boxes grown by ``margin`` and merged where they touch: the areas OCR re-reads."""
    rows, cols = shape[:2]
    rects = [
        [
            max(0, t - margin),
            max(0, le - margin),
            min(rows, t + h + margin),
            min(cols, le + w + margin),
        ]
        for t, le, h, w in boxes
    ]
    merged = True
    while merged:
        merged = False
        for i in range(len(rects)):
            for j in range(i + 1, len(rects)):
                a, b = rects[i], rects[j]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    rects[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                    del rects[j]
                    merged = True
                    break
            if merged:
                break
    return [(y0, x0, y1 - y0, x1 - x0) for y0, x0, y1, x1 in rects]


def _find(
    frame: np.ndarray,
    read: bool,
    sensitive: bool,
    sure_words: bool = False,
    near=(),
    words: bool = True,
) -> tuple[list, int, int]:
    """Text-like regions in the frame, and words read around the cleaned boxes ``near``
    (OCR confirms the cleaning where it was done; the detector looks everywhere).
    ``sure_words``: only words read surely (the last check: Tesseract also "reads"
    textured tissue, rarely this surely). With ``read``, a colour frame's specular
    highlights are not counted as regions (:func:`_highlight`); ``words=False`` reads
    nothing else."""
    regions = text_regions(frame, sensitive)
    if read and frame.ndim == 3 and regions:  # colour: specular highlights are not text
        u8 = _to_uint8(frame, colour=True)
        blocks = text_blocks(regions)
        regions = [r for r in regions if _inside(r, blocks) or not _highlight(u8, r)]
    found = []
    if read and words:
        confidence, characters = (
            (VERIFY_CONFIDENCE, VERIFY_CHARACTERS) if sure_words else (MIN_CONFIDENCE, 2)
        )
        margin = max([h for _, _, h, _ in near] + [8]) * 2
        for top, left, height, width in _clusters(near, frame.shape, margin):
            crop = frame[top : top + height, left : left + width]
            found += [
                (t + top, le + left, h, w)
                for t, le, h, w in read_words(crop, confidence, characters)
            ]
    return regions + found, len(regions), len(found)


def _inside(box, blocks) -> bool:
    """Whether ``box`` lies within one of ``blocks`` (all ``(top, left, height, width)``)."""
    t, le, h, w = box
    return any(
        bt <= t and bl <= le and t + h <= bt + bh and le + w <= bl + bw for bt, bl, bh, bw in blocks
    )


def _highlight(rgb: np.ndarray, box: tuple[int, int, int, int]) -> bool:
    """Whether a detected region of an 8-bit RGB frame is a specular highlight on tissue
    rather than text (see :data:`HIGHLIGHT_ASPECT`); OCR has the last word."""
    top, left, height, width = box
    rows, cols = rgb.shape[:2]
    if width >= HIGHLIGHT_ASPECT * height or height == 0:
        return False
    my, mx = TEXT_MARGIN * rows, TEXT_MARGIN * cols
    if top < my or left < mx or top + height > rows - my or left + width > cols - mx:
        return False  # where overlays are written: text until proven otherwise
    crop = rgb[top : top + height, left : left + width]
    if crop.size == 0 or int(crop.min(axis=-1).max()) < HIGHLIGHT_CORE:
        return False
    outer, ring = _around(rgb, box, max(4, height // 2))
    ring = ring.astype(np.float32)
    if len(ring) == 0:
        return False
    if np.median(ring.mean(axis=-1)) < TISSUE_LEVEL:
        return False
    if np.median(ring[:, 0] - ring[:, 2]) < TISSUE_CHROMA:
        return False
    return not read_words(outer, VERIFY_CONFIDENCE, VERIFY_CHARACTERS)


def _check_coverage(frame: np.ndarray, filled, where: str) -> None:
    """Quarantine when the filled boxes cover more than :data:`MAX_CLEANED_FRACTION`."""
    covered = np.zeros(frame.shape[:2], bool)
    for top, left, height, width in filled:
        covered[top : top + height, left : left + width] = True
    if covered.mean() > MAX_CLEANED_FRACTION:
        raise IntakeError(
            f"text-like regions cover {100 * covered.mean():.0f}% of the image{where}: "
            "cleaning would hide the anatomy",
            quarantine=True,
        )


def clean_image(
    pixels: np.ndarray,
    band: float | None = None,
    background=None,
    flagged: bool = False,
    multi_frame: bool = False,
) -> tuple[np.ndarray, Cleaning]:
    """The strict check: blank known regions, fill text-like regions and words, check again.

    Args:
        pixels: the stored pixels: ``(H, W)`` grey or ``(H, W, 3)`` RGB, any dtype; one more
            leading axis of frames when ``multi_frame`` (each is checked on its own).
        band: share of rows from the top known to hold text for this device (blanked).
        background: value for the known band (default: the image's minimum).
        flagged: the header says there is burned-in text (BurnedInAnnotation=YES): finding
            nothing text-like is then a reason to quarantine.
        multi_frame: ``pixels`` holds frames.

    Returns:
        ``(cleaned copy, what was done)``; the copy is ``pixels`` itself when nothing was
        changed.

    Raises:
        IntakeError: (quarantine) when the image cannot be cleaned with confidence.
    """
    out = pixels.copy()
    frames = out if multi_frame else out[None]
    if band is not None:
        frames[:, : int(np.ceil(frames.shape[1] * band))] = (
            out.min() if background is None else background
        )
    engine = _ocr()
    if engine is None or not engine.can_detect:
        if band is not None:
            return out, Cleaning()
        raise IntakeError(
            "possible burned-in text, no known text region for this device, and no text "
            "detector (OCR is off, or deploy/install.sh was not run)",
            quarantine=True,
        )
    read = engine.can_read
    report = Cleaning()
    originals = pixels if multi_frame else pixels[None]
    for index, frame in enumerate(frames):  # views: filling writes into ``out``
        where = f" (frame {index + 1})" if multi_frame else ""
        if index and np.array_equal(originals[index], originals[index - 1]):
            frame[...] = frames[index - 1]  # a still frame of a loop: cleaned as the last
            continue
        # Located by the detector alone; OCR reads in the check, to confirm the cleaning
        # (what it reads there is cleaned too). Where the sensitive detector finds
        # nothing, nothing is cleaned and there is nothing to confirm.
        boxes, regions, _ = _find(frame, read=read, sensitive=True, words=False)
        report.regions += regions
        if not boxes:
            continue
        blocks = text_blocks(boxes)  # lines missed between and around the found ones
        filled = [_fill(frame, box) for box in [*boxes, *blocks]]
        filled += [_fill(frame, box) for box in _column_search(frame, blocks)]
        _check_coverage(frame, filled, where)  # no need to check what cannot be kept
        for attempt in range(PASSES):  # the check; a second cleaning for what it finds
            last = attempt == PASSES - 1  # the first check cleans every word read
            residual, _, words = _find(frame, read, False, sure_words=last, near=filled)
            if not attempt:
                report.words += words
            if not residual:
                break
            if last:
                raise IntakeError(
                    f"burned-in text still detected after cleaning{where}", quarantine=True
                )
            filled += [_fill(frame, box) for box in residual]
        _check_coverage(frame, filled, where)
        report.boxes += filled
    if flagged and not report.regions and not report.words and band is None:
        raise IntakeError(
            "marked as having burned-in text, but nothing text-like was found to remove",
            quarantine=True,
        )
    return (out if report.cleaned or band is not None else pixels), report


def clean_pixels(ds, pixels: np.ndarray, multi_frame: bool = False) -> np.ndarray:
    """Return ``pixels`` with burned-in text removed (a copy), or unchanged.

    The :func:`policy` decides: strict images get :func:`clean_image`; fast ones get
    :func:`fast_check` and, when it finds glyph-like lines, :func:`clean_image` too.

    Args:
        ds: the dataset the pixels belong to (device identity, modality, photometry).
        pixels: its stored pixel array (2D, or 3D colour; one more leading axis of frames
            when ``multi_frame``).
        multi_frame: ``pixels`` holds frames; each is cleaned and checked on its own.

    Raises:
        IntakeError: (quarantine) when the image cannot be cleaned with confidence.
    """
    check = policy(ds).check
    if check == "none" or (check == "fast" and not fast_check(pixels, multi_frame)):
        return pixels
    inverted = str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1"
    key = (str(ds.get("Manufacturer", "")), str(ds.get("ManufacturerModelName", "")))
    cleaned, _ = clean_image(
        pixels,
        band=recipe().known_regions.get(key),
        background=pixels.max() if inverted else pixels.min(),
        flagged=str(ds.get("BurnedInAnnotation", "")).upper() == "YES",
        multi_frame=multi_frame,
    )
    return cleaned
