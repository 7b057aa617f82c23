"""Lines of glyph-like strokes: a fast look for burned-in text, with numpy alone.

Used by the *fast* pixel check (:mod:`common.deid.burned_in`), for images whose header says
they carry no burned-in text (CT, MR, DX... with BurnedInAnnotation not YES). Burned-in
annotation on such images is drawn by the device or a workstation at (or near) the
extreme of the pixel range, in strokes a few pixels thick, as small separate glyphs
standing side by side on one line. Anatomy is rarely like that: bone and contrast are
large connected structures, calcifications are isolated dots. So:

1. the frame is scaled to 8 bits over its own range; for each polarity, pixels within
   :data:`EXTREME` of the brightest (or darkest) value are marked;
2. connected groups of marked pixels are kept when they have a glyph's size: between
   :data:`GLYPH_HEIGHT` pixels high (and at most :data:`MAX_HEIGHT_SHARE` of the rows),
   no wider than :data:`MAX_ASPECT` times their height, and not a solid block;
3. glyphs of similar height (within a factor :data:`HEIGHT_RATIO`) whose middles lie on
   one line and whose gaps are at most :data:`GAP` heights make a line; a line of at
   least :data:`MIN_GLYPHS` glyphs is reported.

A hit is not a verdict: it sends the image to the strict check (detector, cleaning, OCR
confirmation, or quarantine). A miss is cheap (a few milliseconds for a 512 x 512
frame); it is not proof of absence, which is why images that often carry text get the
strict check whatever this says.
"""

from __future__ import annotations

import numpy as np

#: Marked pixels: within this share of the range from the brightest (or darkest) value.
EXTREME = 0.12
#: Height in pixels of a glyph, smallest and largest.
GLYPH_HEIGHT = (5, 48)
#: A glyph is at most this share of the image's rows high.
MAX_HEIGHT_SHARE = 0.1
#: A glyph is at most this many times as wide as high (joined letters included).
MAX_ASPECT = 4.0
#: A glyph fills at most this share of its box (a solid block is not a glyph).
MAX_FILL = 0.9
#: Glyphs of one line: heights within this factor, gaps at most this many heights.
HEIGHT_RATIO, GAP = 1.6, 1.2
#: The fewest glyphs that make a line.
MIN_GLYPHS = 3

Box = tuple[int, int, int, int]  # top, left, height, width


def enclosing(boxes: list[Box]) -> Box:
    """The smallest box that holds all of ``boxes``."""
    top = min(b[0] for b in boxes)
    left = min(b[1] for b in boxes)
    bottom = max(b[0] + b[2] for b in boxes)
    right = max(b[1] + b[3] for b in boxes)
    return top, left, bottom - top, right - left


def _glyphs(mask: np.ndarray, rows: int) -> list[Box]:
    from scipy import ndimage

    labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if not count:
        return []
    areas = np.bincount(labels.ravel())
    tallest = min(GLYPH_HEIGHT[1], max(GLYPH_HEIGHT[0], int(MAX_HEIGHT_SHARE * rows)))
    out = []
    for index, where in enumerate(ndimage.find_objects(labels), start=1):
        if where is None:
            continue
        height = where[0].stop - where[0].start
        width = where[1].stop - where[1].start
        if not GLYPH_HEIGHT[0] <= height <= tallest or width > MAX_ASPECT * height:
            continue
        if areas[index] > MAX_FILL * height * width and width > 2:
            continue  # a solid block ("l", "1" and "|" are thin, not blocks)
        out.append((where[0].start, where[1].start, height, width))
    return out


def _lines(glyphs: list[Box]) -> list[Box]:
    """Glyphs standing side by side on one line, joined into line boxes."""
    glyphs = sorted(glyphs, key=lambda b: b[1])
    used = [False] * len(glyphs)
    lines = []
    for i, first in enumerate(glyphs):
        if used[i]:
            continue
        line = [first]
        used[i] = True
        for j in range(i + 1, len(glyphs)):
            if used[j]:
                continue
            top, left, height, width = glyphs[j]
            last = line[-1]
            if left - (last[1] + last[3]) > GAP * max(height, last[2]):
                if left > last[1] + last[3] + GAP * 2 * GLYPH_HEIGHT[1]:
                    break  # sorted by left: nothing further can join
                continue
            ratio = max(height, last[2]) / max(1, min(height, last[2]))
            middle, last_middle = top + height / 2, last[0] + last[2] / 2
            if ratio <= HEIGHT_RATIO and abs(middle - last_middle) <= 0.5 * max(height, last[2]):
                line.append(glyphs[j])
                used[j] = True
        if len(line) >= MIN_GLYPHS:
            lines.append(enclosing(line))
    return lines


def text_lines(frame: np.ndarray) -> list[Box]:
    """Lines of glyph-like strokes at the extremes of a frame's range.

    Args:
        frame: a 2D frame of any dtype, or ``(H, W, 3)`` colour (read as its mean).

    Returns:
        ``(top, left, height, width)`` of each line found; empty when none.
    """
    arr = np.asarray(frame)
    if arr.ndim == 3:
        arr = arr.mean(axis=-1)
    arr = arr.astype(np.float32, copy=False)
    lo, hi = float(arr.min()), float(arr.max())
    if hi - lo <= 0:
        return []
    reach = EXTREME * (hi - lo)
    found = []
    for mask in (arr >= hi - reach, arr <= lo + reach):
        found += _lines(_glyphs(mask, arr.shape[0]))
    return found
