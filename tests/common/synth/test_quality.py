"""Offline quality measures for synthetic pairs."""

from __future__ import annotations

import io

import numpy as np
import pytest

from common.synth import quality as q


def _discs(n, seed, radius=(4, 9), size=64, count=(1, 3)):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images, masks = [], []
    for _ in range(n):
        m = np.zeros((size, size), bool)
        for _ in range(rng.integers(*count, endpoint=True)):
            cy, cx = rng.integers(12, size - 12, 2)
            m |= (yy - cy) ** 2 + (xx - cx) ** 2 <= rng.integers(*radius) ** 2
        images.append(np.clip(0.3 + 0.5 * m + rng.normal(0, 0.05, m.shape), 0, 1))
        masks.append(m.astype(np.uint8))
    return np.asarray(images, np.float32), np.asarray(masks)


def test_frechet_distance_ranks_a_closer_set_lower():
    real, _ = _discs(40, seed=0)
    similar, _ = _discs(40, seed=1)
    noise = np.random.default_rng(2).random((40, 64, 64)).astype(np.float32)
    assert q.frechet_distance(real, similar) < q.frechet_distance(real, noise)
    assert q.frechet_distance(real, real) == pytest.approx(0, abs=1e-6)


def test_random_features_are_fixed_by_seed():
    images, _ = _discs(4, seed=0)
    assert np.array_equal(q.random_features(images, 0), q.random_features(images, 0))
    assert not np.array_equal(q.random_features(images, 0), q.random_features(images, 1))


def test_ms_ssim_is_one_for_identical_and_lower_for_different_images():
    a, _ = _discs(6, seed=0)
    b, _ = _discs(6, seed=1)
    assert np.allclose(q.ms_ssim(a, a), 1.0, atol=1e-5)
    assert (q.ms_ssim(a, b) < 0.99).all()
    assert q.ms_ssim_diversity(np.repeat(a[:1], 5, axis=0)) == pytest.approx(1.0, abs=1e-5)
    assert q.ms_ssim_diversity(a) < 0.99


def test_mask_statistics_count_structures_and_sizes():
    masks = np.zeros((3, 10, 10), np.uint8)
    masks[0, 1:3, 1:3] = 1  # one structure of 4 px
    masks[1, 1:3, 1:3] = 1
    masks[1, 6:9, 6:9] = 1  # and one of 9 px
    stats = q.mask_statistics(masks)
    assert stats["n"] == 3 and stats["empty_share"] == pytest.approx(1 / 3)
    assert stats["structures_hist"][:3] == [1, 1, 1] and stats["structures_mean"] == 1.0
    assert stats["size_median"] == pytest.approx(0.04)


def test_quality_summary_and_grid():
    real_i, real_m = _discs(12, seed=0)
    syn_i, syn_m = _discs(10, seed=5)
    summary = q.quality_summary(real_i, real_m, syn_i, syn_m)
    assert summary["n_real"] == 12 and summary["n_synthetic"] == 10
    assert "Inception" in summary["feature_space"]
    png = q.pair_grid_png(real_i, real_m, syn_i, syn_m)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_grid_without_real_pairs_shows_the_synthetic_rows_only():
    """The sheet a benchmark commits: no real pixel, half the height."""
    from PIL import Image

    real_i, real_m = _discs(12, seed=0)
    syn_i, syn_m = _discs(10, seed=5)
    both = Image.open(io.BytesIO(q.pair_grid_png(real_i, real_m, syn_i, syn_m)))
    alone = Image.open(io.BytesIO(q.pair_grid_png(real_i[:0], real_m[:0], syn_i, syn_m)))
    assert alone.width == both.width and alone.height == both.height // 2


def test_mask_statistics_tell_round_blobs_from_thin_vessels():
    discs = np.zeros((1, 64, 64), np.uint8)
    yy, xx = np.mgrid[:64, :64]
    discs[0] = (yy - 32) ** 2 + (xx - 32) ** 2 <= 10**2
    vessel = np.zeros((1, 64, 64), np.uint8)
    vessel[0, 30:32, 4:60] = 1  # a 2-pixel-wide line of about the disc's boundary
    round_, thin = q.mask_statistics(discs), q.mask_statistics(vessel)
    assert round_["roundness_median"] > 5 * thin["roundness_median"]
    # a 2 x 56 line: every pixel is on the boundary
    assert thin["boundary_median"] == pytest.approx(112 / 64)


def test_network_features_fd_uses_the_segmentation_model():
    import torch

    from common.seg.networks import create_network

    real, _ = _discs(12, seed=0, size=32)
    noise = np.random.default_rng(3).random((12, 32, 32)).astype(np.float32)
    torch.manual_seed(0)
    model = create_network("unet", 1)
    feats = q.network_features(model, real, 32)
    assert feats.shape[0] == 12 and feats.shape[1] % 2 == 0
    fd = lambda x: q.network_features(model, x, 32)  # noqa: E731
    assert q.frechet_distance(real, real, features=fd) == pytest.approx(0, abs=1e-6)
    assert q.frechet_distance(real[:6], real[6:], features=fd) < q.frechet_distance(
        real, noise, features=fd
    )
    summary = q.quality_summary(real, real[:, 0] > 0.5, noise, noise > 0.5, model, 32, False)
    assert summary["frechet_distance_segmentation"] > 0 and "two_sample" not in summary


def test_two_sample_test_tells_different_sets_apart_and_not_identical_ones():
    from common.synth.two_sample import classifier_two_sample, wilson_interval

    real_i, real_m = _discs(64, seed=0, size=32)
    same_i, same_m = _discs(64, seed=1, size=32)
    # the same images with square masks: only the mask gives them away
    square = np.zeros_like(real_m)
    square[:, 8:24, 8:24] = 1
    alike = classifier_two_sample(real_i, real_m, same_i, same_m, steps=150)
    apart = classifier_two_sample(real_i, real_m, real_i, square, steps=150)
    assert apart["accuracy"] >= 0.9
    assert alike["accuracy"] < 0.75
    low, high = alike["ci95"]
    assert low <= alike["accuracy"] <= high and alike["n_test"] == 64
    assert wilson_interval(50, 100)[0] < 0.5 < wilson_interval(50, 100)[1]
    with pytest.raises(ValueError, match="at least 8"):
        classifier_two_sample(real_i[:4], real_m[:4], same_i, same_m)
