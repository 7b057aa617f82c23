"""Fusing several annotators' masks into one training label: STAPLE and majority vote.

Where two or more people outlined the same image, training on one of them teaches the
model that person's habits; data-preparation practice for segmentation recommends a
fused label. STAPLE (Warfield, Zou and Wells, IEEE TMI 2004) estimates each annotator's
sensitivity and specificity by expectation-maximisation and weighs them accordingly;
majority vote counts heads (with two annotators a tie is broken towards foreground only
if ``ties="foreground"``).

Example:
    >>> import numpy as np
    >>> a = np.array([[1, 1, 0, 0]], np.uint8); b = np.array([[1, 0, 0, 0]], np.uint8)
    >>> majority([a, b]).tolist()
    [[1, 0, 0, 0]]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

METHODS = ("first", "majority", "staple")


def majority(masks: Sequence[np.ndarray], ties: str = "background") -> np.ndarray:
    """Pixel-wise majority vote of binary masks.

    Args:
        masks: binary arrays of one shape, one per annotator.
        ties: ``"background"`` or ``"foreground"``: the label where votes are even.

    Returns:
        uint8 binary mask.
    """
    if ties not in ("background", "foreground"):
        raise ValueError(f"ties must be 'background' or 'foreground', got {ties!r}")
    votes = np.sum([np.asarray(m, bool) for m in masks], axis=0)
    half = len(masks) / 2
    return (votes >= half if ties == "foreground" else votes > half).astype(np.uint8)


def staple(
    masks: Sequence[np.ndarray],
    region: np.ndarray | None = None,
    iterations: int = 50,
    tol: float = 1e-6,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Binary STAPLE: the probability that each pixel is foreground, by EM.

    Args:
        masks: binary arrays of one shape, one per annotator.
        region: pixels to estimate over (e.g. the field of view); others get 0.
        iterations: at most this many EM iterations.
        tol: stop when no sensitivity or specificity moves by more than this.

    Returns:
        ``(probability map, sensitivity per annotator, specificity per annotator)``;
        threshold the map at 0.5 for a label.
    """
    d = np.stack([np.asarray(m, bool) for m in masks]).reshape(len(masks), -1)
    inside = np.ones(d.shape[1], bool) if region is None else np.asarray(region, bool).ravel()
    x = d[:, inside].astype(np.float64)
    prior = float(np.clip(x.mean(), 1e-6, 1 - 1e-6))  # global foreground prior
    p = np.full(len(masks), 0.9)  # sensitivities
    q = np.full(len(masks), 0.9)  # specificities
    w = x.mean(axis=0)
    for _ in range(iterations):
        # E-step: posterior of foreground given every annotator's vote
        a = prior * np.prod(np.where(x > 0, p[:, None], 1 - p[:, None]), axis=0)
        b = (1 - prior) * np.prod(np.where(x > 0, 1 - q[:, None], q[:, None]), axis=0)
        w = a / np.maximum(a + b, 1e-300)
        # M-step: each annotator's sensitivity and specificity under that posterior
        p_new = (x * w).sum(axis=1) / max(w.sum(), 1e-12)
        q_new = ((1 - x) * (1 - w)).sum(axis=1) / max((1 - w).sum(), 1e-12)
        p_new, q_new = np.clip(p_new, 1e-6, 1 - 1e-6), np.clip(q_new, 1e-6, 1 - 1e-6)
        done = max(np.abs(p_new - p).max(), np.abs(q_new - q).max()) < tol
        p, q = p_new, q_new
        if done:
            break
    out = np.zeros(d.shape[1])
    out[inside] = w
    return out.reshape(np.shape(masks[0])), p, q


def fuse(first: np.ndarray, second: np.ndarray, method: str, fov: np.ndarray | None = None):
    """One training label from two annotators' masks.

    Args:
        first: the first annotator's binary mask.
        second: the second annotator's binary mask.
        method: ``"first"`` (the first annotator alone), ``"majority"`` (with two
            annotators: pixels both marked) or ``"staple"``.
        fov: where the image holds data (STAPLE estimates over it).

    Returns:
        uint8 binary mask.
    """
    if method not in METHODS:
        raise ValueError(f"label-fusion must be one of {METHODS}, got {method!r}")
    if method == "first":
        return np.asarray(first, np.uint8)
    if method == "majority":
        return majority([first, second])
    prob, _, _ = staple([first, second], region=fov)
    return (prob >= 0.5).astype(np.uint8)


def fuse_arrays(data, method: str):
    """``data`` (a :class:`common.data.arrays.SiteArrays`) with fused labels where a second
    annotator exists; cases with one annotator keep theirs.

    Args:
        data: a site's arrays (``masks``, ``masks2``, ``has_mask2``, ``fov``).
        method: see :func:`fuse`.

    Returns:
        A new ``SiteArrays`` whose ``masks`` are the training labels.
    """
    from dataclasses import replace

    if method not in METHODS:
        raise ValueError(f"label-fusion must be one of {METHODS}, got {method!r}")
    if method == "first" or not data.has_mask2.any():
        return data
    masks = data.masks.copy()
    for i in np.flatnonzero(data.has_mask2):
        masks[i] = fuse(data.masks[i], data.masks2[i], method, data.fov[i])
    return replace(data, masks=masks)
