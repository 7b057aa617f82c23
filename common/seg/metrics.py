"""Segmentation metrics per case (Dice, IoU, HD95) and their summary per vendor.

HD95 is in pixels at the evaluation resolution. When exactly one of prediction and
reference is empty, Dice and IoU are 0 and HD95 is the image diagonal (the worst
possible value) so that misses are penalised rather than dropped; when both are empty,
Dice and IoU are 1 and HD95 is 0.

Example:
    >>> import numpy as np
    >>> a = np.zeros((8, 8), np.uint8); a[2:6, 2:6] = 1
    >>> case_metrics(a, a)
    {'dice': 1.0, 'iou': 1.0, 'hd95': 0.0}
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from scipy import ndimage

METRICS = ("dice", "iou", "hd95")


def _surface_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distances from the boundary pixels of ``a`` to the boundary of ``b``."""
    a_border = a ^ ndimage.binary_erosion(a)
    b_border = b ^ ndimage.binary_erosion(b)
    dist_to_b = ndimage.distance_transform_edt(~b_border)
    return dist_to_b[a_border]


def case_metrics(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Dice, IoU and HD95 of one binary prediction against its reference.

    Args:
        pred: binary 2D array.
        ref: binary 2D array of the same shape.

    Returns:
        ``{"dice": ..., "iou": ..., "hd95": ...}``.
    """
    if pred.shape != ref.shape:
        raise ValueError(f"pred and ref must have the same shape, got {pred.shape} and {ref.shape}")
    p, r = pred.astype(bool), ref.astype(bool)
    inter, ps, rs = np.logical_and(p, r).sum(), p.sum(), r.sum()
    if ps == 0 and rs == 0:
        return {"dice": 1.0, "iou": 1.0, "hd95": 0.0}
    dice = 2.0 * inter / (ps + rs)
    iou = inter / (ps + rs - inter)
    if ps == 0 or rs == 0:
        hd95 = float(np.hypot(*p.shape))
    else:
        d = np.concatenate([_surface_distances(p, r), _surface_distances(r, p)])
        hd95 = float(np.percentile(d, 95))
    return {"dice": float(dice), "iou": float(iou), "hd95": hd95}


def summarise(per_case: list[dict[str, float]], vendors: list[str]) -> dict[str, dict[str, float]]:
    """Mean of each metric overall and per vendor.

    Args:
        per_case: one :func:`case_metrics` dict per case.
        vendors: the vendor of each case (same order).

    Returns:
        ``{"overall": {...}, "<vendor>": {...}, ...}``; each entry also has ``"n"``.
    """
    if len(per_case) != len(vendors):
        raise ValueError(f"got {len(per_case)} cases but {len(vendors)} vendors")
    groups: dict[str, list[dict[str, float]]] = defaultdict(list)
    for m, v in zip(per_case, vendors):
        groups["overall"].append(m)
        groups[str(v)].append(m)
    return {
        g: {**{k: float(np.mean([m[k] for m in ms])) for k in METRICS}, "n": float(len(ms))}
        for g, ms in groups.items()
    }
