"""The privacy officer's sheet: before/after crops of burned-in text cleaned at intake.

It shows the text itself: it stays in the site's state dir, written with mode 0600.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

#: The sheet's file name in the state dir, and the most crops it holds.
REVIEW_FILE = "pixel_review.png"
REVIEW_CROPS = 60


def crops(before: np.ndarray, after: np.ndarray, boxes) -> list[tuple[np.ndarray, np.ndarray]]:
    """(before, after) crops around each cleaned box, with some context."""
    out = []
    for top, left, height, width in boxes:
        pad = max(4, height)
        y0, x0 = max(0, top - pad), max(0, left - pad)
        y1, x1 = top + height + pad, left + width + pad
        out.append((before[y0:y1, x0:x1].copy(), after[y0:y1, x0:x1].copy()))
    return out


def write_review(path: Path, crops: list[tuple[np.ndarray, np.ndarray]]) -> None:
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
