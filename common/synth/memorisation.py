"""The memorisation gate: no synthetic image leaves a site if it is a near-copy of a patient's.

Diffusion models memorise small training sets (Carlini et al., 2023). Before a site
releases synthetic pairs, each synthetic image is compared with every training image
at the site, as it is and mirrored left-right, in two distances:

* **pixel**: root-mean-square difference after each image is lightly smoothed and
  standardised (zero mean, unit variance), so a copy with another brightness, contrast
  or noise is still a copy;
* **SSIM**: ``1 − SSIM`` (Gaussian window), which sees structure rather than intensity.

The distance to the closest record (DCR) is the smallest over the training set. What is
"too close" is learnt from the site's own held-out real images (patients the diffusion
model never saw): their DCR to the training set is what an *independent* image looks
like. A synthetic image whose pixel or SSIM DCR is below the ``quantile`` of the
held-out DCRs (default: the 5th percentile) is dropped as a near-copy. With fewer than
:data:`MIN_HOLDOUT` held-out images, fixed thresholds are used instead (and the result
says so).

The gate also reports the DCR test over the whole set: the share of synthetic images
closer to the training set than the held-out median (about 0.5 for a model that does
not memorise; near 1 when it copies).

Example:
    >>> rng = np.random.default_rng(0)
    >>> train = rng.random((6, 32, 32)).astype(np.float32)
    >>> holdout = rng.random((6, 32, 32)).astype(np.float32)
    >>> synthetic = np.stack([train[0], train[1][:, ::-1], rng.random((32, 32))])
    >>> gate(synthetic, train, holdout).keep.tolist()
    [False, False, True]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MIN_HOLDOUT = 5
FIXED_PIXEL = 0.15  # standardised RMS: fallback thresholds without enough held-out images
FIXED_SSIM = 0.05  # 1 - SSIM
SIZE = 64  # images are compared at this resolution (or their own, if smaller)
SMOOTH = 1.0  # Gaussian sigma (pixels) applied before comparing: acquisition noise, which
# a generator does not reproduce, would otherwise make every real image look far away


@dataclass
class GateResult:
    """The gate's verdict on a batch of synthetic images.

    Attributes:
        keep: ``True`` for images that may leave the site.
        pixel_dcr: each synthetic image's pixel distance to its closest training image.
        ssim_dcr: the same in ``1 − SSIM``.
        pixel_threshold: below this pixel DCR an image is a near-copy.
        ssim_threshold: below this SSIM DCR an image is a near-copy.
        holdout_pixel_dcr: held-out real images' pixel DCRs (what independence looks like).
        holdout_ssim_dcr: the same in ``1 − SSIM``.
        closer_than_holdout_median: share of synthetic images closer (pixel) to the
            training set than the held-out median.
        thresholds_from: ``"holdout"`` or ``"fixed"``.
    """

    keep: np.ndarray
    pixel_dcr: np.ndarray
    ssim_dcr: np.ndarray
    pixel_threshold: float
    ssim_threshold: float
    holdout_pixel_dcr: np.ndarray = field(default_factory=lambda: np.zeros(0))
    holdout_ssim_dcr: np.ndarray = field(default_factory=lambda: np.zeros(0))
    closer_than_holdout_median: float = float("nan")
    thresholds_from: str = "holdout"

    def summary(self) -> dict:
        """Counts and thresholds, JSON-ready (for the ledger and reports)."""
        return {
            "generated": int(len(self.keep)),
            "dropped": int((~self.keep).sum()),
            "released": int(self.keep.sum()),
            "pixel_threshold": round(float(self.pixel_threshold), 6),
            "ssim_threshold": round(float(self.ssim_threshold), 6),
            "thresholds_from": self.thresholds_from,
            "holdout_images": int(len(self.holdout_pixel_dcr)),
            "closer_than_holdout_median": None
            if np.isnan(self.closer_than_holdout_median)
            else round(float(self.closer_than_holdout_median), 4),
        }


def _as_nchw(images: np.ndarray):
    """A float tensor ``(N, C, s, s)`` (a channel axis added to ``(N, s, s)``)."""
    import torch

    x = torch.as_tensor(np.asarray(images, np.float32))
    return x[:, None] if x.ndim == 3 else x


def _filter(x, window):
    """``window`` (1, 1, k, k) applied to every channel of ``x`` (N, C, s, s) alone."""
    import torch.nn.functional as F

    n, c = x.shape[:2]
    out = F.conv2d(x.reshape(n * c, 1, *x.shape[2:]), window, padding=window.shape[-1] // 2)
    return out.reshape(n, c, *out.shape[2:])


def _prepare(images: np.ndarray):
    """Standardised ``(N, C, s, s)`` float tensors at the comparison size."""
    import torch.nn.functional as F

    x = _as_nchw(images)
    if x.shape[-1] > SIZE:
        x = F.interpolate(x, size=(SIZE, SIZE), mode="area")
    x = _filter(x, _gaussian_window(5, SMOOTH))  # see SMOOTH
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    std = x.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    return (x - mean) / std


def _gaussian_window(size: int = 7, sigma: float = 1.5):
    import torch

    g = torch.exp(-((torch.arange(size) - size // 2) ** 2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def _local_stats(x, window):
    """Local means and variances of ``x`` under ``window``: what SSIM needs of an image
    whatever it is compared with (computed once for a whole reference set)."""
    m = _filter(x, window)
    return m, _filter(x * x, window) - m**2


def _ssim_to_all(q, refs, window, ref_stats=None) -> np.ndarray:
    """SSIM of one standardised image ``q`` (1, C, s, s) against each of ``refs``
    (channels averaged); ``ref_stats``: :func:`_local_stats` of ``refs``, if known."""
    c1, c2 = 0.01**2 * 16, 0.03**2 * 16  # for standardised images (range about 4)
    mq, sq = _local_stats(q, window)
    mr, sr = ref_stats if ref_stats is not None else _local_stats(refs, window)
    sqr = _filter(q * refs, window) - mq * mr
    ssim = ((2 * mq * mr + c1) * (2 * sqr + c2)) / ((mq**2 + mr**2 + c1) * (sq + sr + c2))
    return ssim.mean(dim=(1, 2, 3)).numpy()


def closest_record(queries: np.ndarray, references: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each query's distance to its closest reference, as it is or mirrored.

    Args:
        queries: ``(N, C, S, S)`` (or ``(N, S, S)``) images.
        references: ``(M, C, S, S)`` images (the site's training set).

    Returns:
        ``(pixel_dcr, ssim_dcr)``, each ``(N,)``: standardised RMS difference and
        ``1 − SSIM`` to the closest reference (each minimised on its own).
    """
    import torch

    if len(references) == 0:
        raise ValueError("the memorisation gate needs the site's training images")
    q = _prepare(queries)
    r = _prepare(references)
    refs = torch.cat([r, r.flip(-1)])  # flip-aware: a mirrored copy is still a copy
    window = _gaussian_window()
    pixel = torch.cdist(q.flatten(1), refs.flatten(1)) / np.sqrt(q[0].numel())
    stats = _local_stats(refs, window)
    ssim = np.stack([_ssim_to_all(q[i : i + 1], refs, window, stats) for i in range(len(q))])
    return pixel.min(dim=1).values.numpy(), 1.0 - ssim.max(axis=1)


def closest_synthetic(real: np.ndarray, synthetic: np.ndarray) -> np.ndarray:
    """Each real image's pixel distance to its closest synthetic image, both compared at
    :data:`SIZE` (greyscale when their channels differ): how near a released set comes
    to a given patient (the membership test on synthetic data uses it)."""
    real, synthetic = np.asarray(real, np.float32), np.asarray(synthetic, np.float32)
    if real.ndim == 4 and synthetic.ndim == 4 and real.shape[1] != synthetic.shape[1]:
        real, synthetic = real.mean(axis=1), synthetic.mean(axis=1)
    size = min(SIZE, synthetic.shape[-1], real.shape[-1])
    return closest_record(_resize(real, size), _resize(synthetic, size))[0]


def gate(
    synthetic: np.ndarray,
    train: np.ndarray,
    holdout: np.ndarray,
    quantile: float = 0.05,
) -> GateResult:
    """Which synthetic images may leave the site.

    Args:
        synthetic: ``(N, C, S, S)`` generated images in ``[0, 1]``.
        train: ``(M, C, S', S')`` the images the generator was trained on (any size; all
            are compared at :data:`SIZE`).
        holdout: the site's real images the generator never saw.
        quantile: held-out DCR quantile below which a synthetic image is a near-copy.

    Returns:
        :class:`GateResult`.
    """
    if not 0 <= quantile < 1:
        raise ValueError(f"gate quantile must be in [0, 1), got {quantile}")
    size = min(SIZE, np.asarray(synthetic).shape[-1])
    synthetic, train, holdout = (_resize(a, size) for a in (synthetic, train, holdout))
    pix, ssim = closest_record(synthetic, train)
    if len(holdout) >= MIN_HOLDOUT:
        h_pix, h_ssim = closest_record(holdout, train)
        t_pix, t_ssim = np.quantile(h_pix, quantile), np.quantile(h_ssim, quantile)
        source = "holdout"
        closer = float(np.mean(pix < np.median(h_pix))) if len(pix) else float("nan")
    else:
        h_pix = h_ssim = np.zeros(0)
        t_pix, t_ssim, source, closer = FIXED_PIXEL, FIXED_SSIM, "fixed", float("nan")
    keep = (pix >= t_pix) & (ssim >= t_ssim)
    return GateResult(keep, pix, ssim, float(t_pix), float(t_ssim), h_pix, h_ssim, closer, source)


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    a = np.asarray(images, np.float32)
    if len(a) == 0 or a.shape[-1] == size:
        return a
    x = torch.as_tensor(a)
    x = x[:, None] if x.ndim == 3 else x
    mode = "area" if a.shape[-1] > size else "bilinear"
    out = F.interpolate(x, size=(size, size), mode=mode)
    return (out[:, 0] if a.ndim == 3 else out).numpy()
