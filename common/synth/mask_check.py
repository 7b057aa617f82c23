"""The mask check: a synthetic pair leaves a site only if its mask looks like the site's own.

A joint image+mask generator trained for minutes on a CPU learns where structures sit and
how large they are before it learns how many there are: on real colonoscopy frames the
``cpu-128`` generator drew 2.45 polyps a mask where the annotators drew 1.08. A model
trained on such pairs learns that polyps come in clusters. The check compares each
synthetic mask with the site's real training masks in two numbers,

* **structures**: connected foreground regions (4-connected, as
  :func:`common.synth.quality.mask_statistics` counts them), and
* **foreground**: the share of the mask's pixels that are foreground,

and keeps a mask when both lie within the central ``1 − 2·quantile`` of the real masks'
values (the ``quantile`` and ``1 − quantile`` quantiles, inclusive). Empty masks pass
only where real empty masks are common enough to fall inside the range.

Within the range, a release also keeps the real masks' **mix of structure counts**: the
counts are grouped in at most :data:`MAX_BINS` bins (one per count where there are few,
as for polyps or lungs; equal-mass bins of the real counts where there are many, as for
vessel trees), and :meth:`MaskRange.quotas` gives each bin its share of the pairs a site
releases. On Kvasir-SEG 95% of the real masks hold one polyp and 5% two: 400 released
pairs are then 379 with one structure and 21 with two, however many two-polyp masks
the generator draws.

With ``size_bins > 1`` (``synth-mask-size-bins``) each structure-count bin is split
further by foreground share, at equal-mass cuts of the real masks' foreground, and the
quotas keep the joint mix. The ``cpu-128`` generator draws polyps too large: 87% of
Kvasir's checked synthetic masks lay in the largest third of the real foreground shares.
A release that cannot fill its small-polyp quota within ``synth-draw-factor`` draws is
smaller rather than skewed.

The range is a statistic of the site's real masks, computed at the site and recorded with
the release (how many structures and how much foreground are allowed). Like the
memorisation gate, the check's decision depends on the training data, so under
differential privacy it is not covered by the DP guarantee.

Example:
    >>> real = np.zeros((20, 16, 16), np.uint8); real[:, 4:10, 4:10] = 1
    >>> synthetic = np.zeros((2, 16, 16), np.uint8)
    >>> synthetic[0, 3:9, 5:11] = 1                          # one structure, like the real
    >>> synthetic[1, 1:4, 1:4] = 1; synthetic[1, 9:14, 9:14] = 1   # two
    >>> MaskRange.of(real, 0.05).check(synthetic)[0].tolist()
    [True, False]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.errors import ConfigError

MAX_BINS = 5  # structure-count bins a release's mix is kept in


def structures_and_foreground(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each mask's number of connected structures (4-connected) and foreground share."""
    from scipy import ndimage

    masks = np.asarray(masks)
    counts = np.array([ndimage.label(m > 0)[1] for m in masks], np.int64)
    foreground = (masks > 0).reshape(len(masks), -1).mean(axis=1) if len(masks) else np.zeros(0)
    return counts, foreground


@dataclass(frozen=True)
class MaskRange:
    """What the site's real masks look like: the allowed structure counts and foreground.

    Attributes:
        structures: ``(lowest, highest)`` number of structures a mask may have.
        foreground: ``(lowest, highest)`` share of foreground pixels.
        quantile: the tail cut from each end of the real values.
        real_masks: how many real masks the range was learnt from.
    """

    structures: tuple[int, int]
    foreground: tuple[float, float]
    quantile: float
    real_masks: int
    bins: tuple[tuple[int, int], ...] = ()  # structure counts, (lowest, highest) inclusive
    shares: tuple[float, ...] = ()  # the real masks' share in each cell (within the range)
    size_cuts: tuple[float, ...] = ()  # foreground cuts splitting each count bin (none: 1 bin)

    @classmethod
    def of(cls, real_masks: np.ndarray, quantile: float, size_bins: int = 1) -> MaskRange:
        """The central ``1 − 2·quantile`` of ``real_masks`` (``(N, S, S)``, N ≥ 1); the mix
        is kept over structure-count bins, each split in ``size_bins`` foreground bins.

        A release's cells are count-bin major: cell ``c × size_bins' + s`` holds count bin
        ``c`` and size bin ``s`` (``size_bins'``: ``len(size_cuts) + 1``).
        """
        if size_bins < 1:
            raise ConfigError(
                f"synth-mask-size-bins must be >= 1 (1: keep the mix of structure counts "
                f"only), got {size_bins}"
            )
        if not 0 < quantile < 0.5:
            raise ConfigError(
                f"synth-mask-quantile must be in (0, 0.5) to check masks (0 turns the check "
                f"off), got {quantile}"
            )
        if len(real_masks) == 0:
            raise ValueError("the mask check needs at least one real mask to learn its range")
        counts, foreground = structures_and_foreground(real_masks)
        lo, hi = (
            int(v) for v in np.quantile(counts, [quantile, 1 - quantile], method="inverted_cdf")
        )
        f_lo, f_hi = np.quantile(foreground, [quantile, 1 - quantile])
        in_range = (counts >= lo) & (counts <= hi)
        inside = counts[in_range]
        values = np.unique(inside)
        if len(values) <= MAX_BINS:
            bins = [(int(v), int(v)) for v in values]
        else:  # equal-mass bins of the real counts
            cuts = np.unique(
                np.quantile(inside, np.linspace(0, 1, MAX_BINS + 1)[1:-1], method="inverted_cdf")
            )
            edges = [lo - 1, *(int(c) for c in cuts if lo <= c < hi), hi]
            bins = [(a + 1, b) for a, b in zip(edges, edges[1:])]
        cuts: tuple[float, ...] = ()
        if size_bins > 1:  # equal-mass cuts of the foreground of the masks in the range
            inner = np.quantile(foreground[in_range], np.linspace(0, 1, size_bins + 1)[1:-1])
            cuts = tuple(float(c) for c in np.unique(inner) if f_lo < c < f_hi)
        sizes = _size_bin(foreground[in_range], cuts)
        shares = [
            float(np.mean((inside >= a) & (inside <= b) & (sizes == j)))
            for a, b in bins
            for j in range(len(cuts) + 1)
        ]
        return cls(
            (lo, hi),
            (float(f_lo), float(f_hi)),
            quantile,
            len(real_masks),
            tuple(bins),
            tuple(shares),
            cuts,
        )

    def check(self, masks: np.ndarray) -> tuple[np.ndarray, dict]:
        """``(keep, counts)``: which masks are within the range, and how many were not, by
        reason (``structures``: too few or too many; ``foreground``: too little or too much;
        a mask outside both counts under ``structures``)."""
        counts, foreground = structures_and_foreground(masks)
        ok_count = (counts >= self.structures[0]) & (counts <= self.structures[1])
        ok_fg = (foreground >= self.foreground[0]) & (foreground <= self.foreground[1])
        keep = ok_count & ok_fg
        return keep, {
            "structures": int((~ok_count).sum()),
            "foreground": int((ok_count & ~ok_fg).sum()),
        }

    def bin_of(self, masks: np.ndarray) -> np.ndarray:
        """Each mask's cell (an index into ``shares``: its structure-count bin, split by
        foreground where there are ``size_cuts``; -1: in no count bin)."""
        counts, foreground = structures_and_foreground(masks)
        sizes = _size_bin(foreground, self.size_cuts)
        out = np.full(len(counts), -1, np.int64)
        for i, (a, b) in enumerate(self.bins):
            at = (counts >= a) & (counts <= b)
            out[at] = i * (len(self.size_cuts) + 1) + sizes[at]
        return out

    def quotas(self, n: int) -> list[int]:
        """How many of ``n`` released pairs each bin gets: ``n × share``, rounded so that
        they add up to ``n`` (largest remainders first)."""
        exact = np.asarray(self.shares) * n
        quota = np.floor(exact).astype(int)
        for i in np.argsort(-(exact - quota), kind="stable")[: n - int(quota.sum())]:
            quota[i] += 1
        return [int(q) for q in quota]

    def summary(self) -> dict:
        """The range, JSON-ready (for the ledger and reports)."""
        return {
            "quantile": self.quantile,
            "structures": list(self.structures),
            "foreground": [round(self.foreground[0], 5), round(self.foreground[1], 5)],
            "real_masks": self.real_masks,
            "bins": [list(b) for b in self.bins],
            "size_cuts": [round(c, 5) for c in self.size_cuts],
            "shares": [round(v, 4) for v in self.shares],
        }


def _size_bin(foreground: np.ndarray, cuts: tuple[float, ...]) -> np.ndarray:
    """Each foreground share's size bin: how many cuts lie at or below it."""
    return np.searchsorted(np.asarray(cuts, float), foreground, side="right").astype(np.int64)
