from __future__ import annotations

import numpy as np
import pytest

from common.seg.metrics import case_metrics, summarise


def _square(size=32, lo=8, hi=16):
    m = np.zeros((size, size), np.uint8)
    m[lo:hi, lo:hi] = 1
    return m


@pytest.mark.parametrize(
    ("pred", "ref", "dice", "iou"),
    [
        (_square(), _square(), 1.0, 1.0),
        (_square(lo=8, hi=16), _square(lo=12, hi=20), 2 * 16 / 128, 16 / 112),
        (np.zeros((32, 32), np.uint8), _square(), 0.0, 0.0),
        (np.zeros((32, 32), np.uint8), np.zeros((32, 32), np.uint8), 1.0, 1.0),
    ],
)
def test_dice_and_iou(pred, ref, dice, iou):
    m = case_metrics(pred, ref)
    assert m["dice"] == pytest.approx(dice)
    assert m["iou"] == pytest.approx(iou)


def test_hd95_of_shifted_square_and_misses():
    a = _square(lo=8, hi=16)
    b = np.roll(a, 3, axis=1)
    assert case_metrics(a, b)["hd95"] == pytest.approx(3.0)
    miss = case_metrics(np.zeros_like(a), a)
    assert miss["hd95"] == pytest.approx(np.hypot(32, 32))
    with pytest.raises(ValueError, match="same shape"):
        case_metrics(a, np.zeros((4, 4)))


def test_summary_per_vendor():
    per_case = [
        {"dice": 1.0, "iou": 1.0, "hd95": 0.0},
        {"dice": 0.0, "iou": 0.0, "hd95": 10.0},
        {"dice": 0.5, "iou": 0.4, "hd95": 2.0},
    ]
    s = summarise(per_case, ["A", "B", "A"])
    assert s["overall"]["dice"] == pytest.approx(0.5) and s["overall"]["n"] == 3
    assert s["A"]["dice"] == pytest.approx(0.75) and s["B"]["hd95"] == 10.0
    with pytest.raises(ValueError, match="vendors"):
        summarise(per_case, ["A"])
