"""The memorisation gate drops copies of training images and keeps new ones."""

from __future__ import annotations

import numpy as np
import pytest

from common.synth.memorisation import MIN_HOLDOUT, closest_record, gate


def _blobs(n, size=48, seed=0):
    """Smooth random images: more like anatomy than white noise."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    x = ndimage.gaussian_filter(rng.random((n, size, size)), sigma=(0, 3, 3))
    x = (x - x.min(axis=(1, 2), keepdims=True)) / np.ptp(x, axis=(1, 2), keepdims=True)
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def site():
    train, holdout, novel = _blobs(12, seed=1), _blobs(8, seed=2), _blobs(6, seed=3)
    return train, holdout, novel


@pytest.mark.parametrize(
    "copy",
    [
        lambda t: t[3],  # exact
        lambda t: t[4][:, ::-1],  # mirrored
        lambda t: np.clip(t[5] * 0.8 + 0.1, 0, 1),  # other brightness and contrast
        lambda t: np.clip(t[6] + np.random.default_rng(0).normal(0, 0.01, t[6].shape), 0, 1),
    ],
    ids=["exact", "flipped", "rescaled", "noisy"],
)
def test_copies_of_training_images_are_dropped(site, copy):
    train, holdout, novel = site
    synthetic = np.stack([copy(train), *novel]).astype(np.float32)
    result = gate(synthetic, train, holdout)
    assert not result.keep[0]
    assert result.keep[1:].all()  # independent images pass
    assert result.thresholds_from == "holdout"
    summary = result.summary()
    assert summary["generated"] == 7 and summary["dropped"] == 1 and summary["released"] == 6


def test_dcr_of_a_copy_is_zero_and_of_a_new_image_is_like_the_holdout(site):
    train, holdout, novel = site
    pix, ssim = closest_record(np.stack([train[0], novel[0]]), train)
    assert pix[0] == pytest.approx(0, abs=1e-5) and ssim[0] == pytest.approx(0, abs=1e-5)
    h_pix, _ = closest_record(holdout, train)
    assert h_pix.min() * 0.5 < pix[1]


def test_a_generator_that_copies_fails_the_dcr_test(site):
    train, holdout, novel = site
    copies = gate(train[:6].copy(), train, holdout)
    fresh = gate(novel, train, holdout)
    assert copies.closer_than_holdout_median == 1.0 and copies.keep.sum() == 0
    assert fresh.closer_than_holdout_median < 1.0


def test_without_enough_holdout_images_fixed_thresholds_apply(site):
    train, holdout, novel = site
    result = gate(np.stack([train[0], novel[0]]), train, holdout[: MIN_HOLDOUT - 1])
    assert result.thresholds_from == "fixed"
    assert result.keep.tolist() == [False, True]


def test_images_of_other_sizes_are_compared_at_one_size(site):
    import torch
    import torch.nn.functional as F

    train, holdout, _ = site
    big = F.interpolate(torch.as_tensor(train)[:, None], size=(96, 96), mode="bilinear")[:, 0]
    result = gate(train[:2], big.numpy(), holdout)
    assert not result.keep.any()
