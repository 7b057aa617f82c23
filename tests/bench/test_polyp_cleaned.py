"""bench/polyp/cleaned.py: how much of a polyp the burned-in text check's filled boxes cover."""

from __future__ import annotations

import numpy as np

from bench.polyp.cleaned import overlap


def test_overlap_counts_the_polyp_under_the_boxes_and_the_boxes_on_the_polyp():
    mask = np.zeros((10, 10), np.uint8)
    mask[2:6, 2:6] = 1  # a 16-pixel polyp
    assert overlap(mask, []) == (0.0, 0.0)
    assert overlap(mask, [(8, 8, 2, 2)]) == (0.0, 0.0)  # a box in a corner: a false alarm
    covered, on_mask = overlap(mask, [(0, 0, 4, 4)])  # (top, left, height, width)
    assert covered == 4 / 16 and on_mask == 4 / 16
    covered, on_mask = overlap(mask, [(2, 2, 2, 4), (2, 2, 4, 2)])  # overlapping boxes
    assert covered == 12 / 16 and on_mask == 1.0
    assert overlap(np.zeros((4, 4)), [(0, 0, 2, 2)]) == (0.0, 0.0)  # no polyp in the frame
