from __future__ import annotations

import numpy as np
import pytest

from common.seg.label_fusion import fuse, fuse_arrays, majority, staple


def test_majority_of_two_keeps_what_both_marked_unless_ties_go_to_foreground():
    a = np.array([[1, 1, 0, 0]])
    b = np.array([[1, 0, 1, 0]])
    assert majority([a, b]).tolist() == [[1, 0, 0, 0]]
    assert majority([a, b], ties="foreground").tolist() == [[1, 1, 1, 0]]
    assert majority([a, b, b]).tolist() == [[1, 0, 1, 0]]


def test_staple_trusts_the_annotators_who_agree_and_estimates_their_quality():
    rng = np.random.default_rng(0)
    truth = rng.random((64, 64)) < 0.2
    good = [truth ^ (rng.random(truth.shape) < 0.02) for _ in range(2)]
    sloppy = truth & (rng.random(truth.shape) < 0.5)  # misses half the foreground
    prob, sens, spec = staple([*good, sloppy])
    fused = prob >= 0.5
    assert (fused == truth).mean() > 0.99
    assert sens[2] < 0.6 < min(sens[:2]) and spec.min() > 0.95


def test_staple_of_two_lies_between_intersection_and_union():
    rng = np.random.default_rng(1)
    a = rng.random((32, 32)) < 0.3
    b = a.copy()
    b[:4] = ~b[:4]  # disagreement on four rows
    fused = fuse(a, b, "staple").astype(bool)
    assert ((a & b) <= fused).all() and (fused <= (a | b)).all()
    with pytest.raises(ValueError, match="label-fusion"):
        fuse(a, b, "mean")


def test_fuse_arrays_changes_only_cases_with_a_second_annotator(tiny_consortium, tmp_path):
    from common.data.intake import prepare_site

    data, _ = tiny_consortium
    arrays, _ = prepare_site(data / "site-1", tmp_path / "s", 32, new_secret=True)
    arrays.masks2[0] = 0
    arrays.has_mask2[0] = True  # the second annotator saw nothing in case 0
    fused = fuse_arrays(arrays, "majority")
    assert fused.masks[0].sum() == 0 and arrays.masks[0].sum() > 0  # the input is untouched
    assert (fused.masks[1:] == arrays.masks[1:]).all()
    assert fuse_arrays(arrays, "first") is arrays
