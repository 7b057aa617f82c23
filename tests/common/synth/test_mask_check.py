"""The mask check keeps synthetic masks that look like the site's real ones, and says why
it stopped the others."""

from __future__ import annotations

import numpy as np
import pytest

from common.errors import ConfigError
from common.synth.mask_check import MaskRange, structures_and_foreground


def _disc(size: int, cy: int, cx: int, r: int) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(np.uint8)


def _real(n: int = 40, size: int = 32) -> np.ndarray:
    """One polyp-like disc a mask, radius 4 to 8, anywhere."""
    rng = np.random.default_rng(0)
    return np.stack(
        [_disc(size, *rng.integers(9, size - 9, 2), int(rng.integers(4, 9))) for _ in range(n)]
    )


def test_structures_are_counted_four_connected_with_their_foreground():
    m = np.zeros((2, 8, 8), np.uint8)
    m[0, 1, 1] = m[0, 2, 2] = 1  # touching only at a corner: two structures
    m[1, 2:4, 2:6] = 1
    counts, foreground = structures_and_foreground(m)
    assert counts.tolist() == [2, 1]
    assert foreground.tolist() == [2 / 64, 8 / 64]


def test_masks_unlike_the_real_ones_are_stopped_by_reason():
    real = _real()
    bounds = MaskRange.of(real, 0.05)
    assert bounds.structures == (1, 1) and bounds.real_masks == 40
    one = _disc(32, 16, 16, 6)
    two = np.maximum(_disc(32, 8, 8, 4), _disc(32, 24, 24, 4))
    huge = _disc(32, 16, 16, 15)  # one structure, far more foreground than any real mask
    empty = np.zeros((32, 32), np.uint8)
    keep, outside = bounds.check(np.stack([one, two, huge, empty]))
    assert keep.tolist() == [True, False, False, False]
    assert outside == {"structures": 2, "foreground": 1}  # two and empty; huge


def test_empty_masks_pass_where_real_empty_masks_are_common():
    real = _real()
    real[:10] = 0  # a quarter of the real frames show no structure
    keep, _ = MaskRange.of(real, 0.05).check(np.zeros((1, 32, 32), np.uint8))
    assert keep.tolist() == [True]


def test_the_range_is_recorded_json_ready():
    summary = MaskRange.of(_real(), 0.1).summary()
    assert summary["structures"] == [1, 1] and summary["quantile"] == 0.1
    lo, hi = summary["foreground"]
    assert 0 < lo < hi < 0.3


@pytest.mark.parametrize("quantile", [0.0, 0.5, -0.1])
def test_a_quantile_outside_the_open_half_interval_is_refused_by_name(quantile):
    with pytest.raises(ConfigError, match="synth-mask-quantile"):
        MaskRange.of(_real(), quantile)


def test_a_release_keeps_the_real_mix_of_structure_counts():
    real = _real()
    real[:4] = np.maximum(real[:4], _disc(32, 4, 4, 2))  # a tenth hold a second structure
    bounds = MaskRange.of(real, 0.05)
    assert bounds.structures == (1, 2) and bounds.bins == ((1, 1), (2, 2))
    assert bounds.shares == (0.9, 0.1)
    assert bounds.quotas(400) == [360, 40] and bounds.quotas(7) == [6, 1]
    two = np.maximum(_disc(32, 8, 8, 4), _disc(32, 24, 24, 4))
    assert bounds.bin_of(np.stack([_disc(32, 16, 16, 6), two])).tolist() == [0, 1]


def test_many_structure_counts_share_equal_mass_bins():
    """Vessel-like masks: many fragments, a wide spread of counts."""
    rng = np.random.default_rng(1)
    real = (rng.random((200, 32, 32)) < rng.uniform(0.02, 0.2, (200, 1, 1))).astype(np.uint8)
    bounds = MaskRange.of(real, 0.05)
    assert 2 <= len(bounds.bins) <= 5
    lo, hi = bounds.structures
    assert bounds.bins[0][0] == lo and bounds.bins[-1][1] == hi
    assert all(b[0] == a[1] + 1 for a, b in zip(bounds.bins, bounds.bins[1:]))  # contiguous
    assert abs(sum(bounds.shares) - 1) < 1e-9 and sum(bounds.quotas(101)) == 101


def test_size_bins_keep_the_real_mix_of_small_and_large_masks():
    real = _real(60)  # radius 4 to 8: foreground from 5% to 20% of the frame
    plain, sized = MaskRange.of(real, 0.05), MaskRange.of(real, 0.05, size_bins=3)
    assert plain.size_cuts == () and len(plain.shares) == len(plain.bins) == 1
    assert len(sized.size_cuts) == 2 and len(sized.shares) == 3
    assert abs(sum(sized.shares) - 1) < 1e-9
    assert all(0.15 < s < 0.5 for s in sized.shares)  # five radii only: ties at the cuts
    _, fg = structures_and_foreground(real)
    assert fg.min() < sized.size_cuts[0] < sized.size_cuts[1] < fg.max()
    small, middle, large = (_disc(32, 16, 16, r) for r in (4, 6, 8))
    assert sized.bin_of(np.stack([small, middle, large])).tolist() == [0, 1, 2]
    assert plain.bin_of(np.stack([small, large])).tolist() == [0, 0]
    assert sized.summary()["size_cuts"] == [round(c, 5) for c in sized.size_cuts]


def test_size_bins_split_each_structure_count_bin():
    real = _real(60)
    real[:6] = np.maximum(real[:6], _disc(32, 4, 4, 2))  # a tenth hold a second structure
    sized = MaskRange.of(real, 0.05, size_bins=2)
    assert sized.bins == ((1, 1), (2, 2)) and len(sized.shares) == 4
    # count-bin major: the one-structure cells hold 90% of the masks, the two-structure 10%
    assert abs(sized.shares[0] + sized.shares[1] - 0.9) < 1e-9
    assert abs(sized.shares[2] + sized.shares[3] - 0.1) < 1e-9
    two_large = np.maximum(_disc(32, 16, 16, 8), _disc(32, 4, 4, 2))
    assert sized.bin_of(two_large[None]).tolist() == [3]


def test_a_size_bin_count_below_one_is_refused_by_name():
    with pytest.raises(ConfigError, match="synth-mask-size-bins"):
        MaskRange.of(_real(), 0.05, size_bins=0)
