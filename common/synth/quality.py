"""How good and how varied synthetic image+mask pairs are, measured offline.

* **Fréchet distance** between real and synthetic images in the feature space of a
  fixed, seeded, randomly initialised convolutional network (:func:`random_features`).
  The usual FID needs Inception-v3 weights, which nothing here may download; random
  convolutional features are a known offline substitute (Naeem et al., ICML 2020, show
  random embeddings rank generators sensibly), but the numbers are *not* comparable with
  published FIDs, only with each other (same network, same seed, same image size).
* **MS-SSIM diversity**: mean MS-SSIM over random pairs within a set (lower: more
  varied). Settings for small images: 7-pixel Gaussian window and three scales
  (weights 0.2, 0.3, 0.5), so 64-pixel images keep 16 pixels at the coarsest scale.
* **Fréchet distance in the segmentation network's features** (:func:`network_features`):
  the same distance in the deepest features of the consortium's own trained model, which
  look at what segmentation looks at (offline, and meaningful for this task; comparable
  only between sets measured with the same model).
* **Mask statistics**: structures per mask, structure size (share of the image),
  boundary length and roundness, and the share of empty masks, for real and synthetic
  sets side by side (blobby synthetic vessels show here first).
* The **classifier two-sample test** lives in :mod:`common.synth.two_sample`.
* A **grid** of real and synthetic pairs (image with the mask's outline) as a PNG.
"""

from __future__ import annotations

import base64
import io

import numpy as np

from common.data import imaging

FEATURE_SIZE = 64
MS_SSIM_WEIGHTS = (0.2, 0.3, 0.5)


def _as_batch(images: np.ndarray, size: int = FEATURE_SIZE):
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(np.asarray(images, np.float32))
    if x.ndim == 3:  # (N, S, S): one channel
        x = x[:, None]
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
    return x


def random_features(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """``(N, 256)`` features of a seeded random 4-layer CNN (mean and std pooled).

    Args:
        images: ``(N, C, S, S)`` or ``(N, S, S)`` in ``[0, 1]`` (resized to 64x64).
        seed: the network's seed (keep it fixed to compare numbers; the first layer
            follows the channel count, so compare colour with colour only).
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    x = _as_batch(images)
    widths = (x.shape[1], 16, 32, 64, 128)
    feats = []
    with torch.no_grad():
        for cin, cout in zip(widths[:-1], widths[1:]):
            w = torch.randn((cout, cin, 3, 3), generator=gen) * np.sqrt(2.0 / (cin * 9))
            x = torch.nn.functional.conv2d(x, w, padding=1, stride=2)
            x = torch.nn.functional.leaky_relu(x, 0.2)
        feats = torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)
    return feats.numpy().astype(np.float64)


def network_features(model, images: np.ndarray, size: int, batch: int = 32) -> np.ndarray:
    """``(N, 2K)`` features of a trained segmentation network: mean and standard
    deviation over space of its deepest convolution's output (the one with the fewest
    pixels; the last of them), for images resized to the network's ``size``.

    Args:
        model: a ``torch.nn.Module`` with ``Conv2d`` layers (any of
            :mod:`common.seg.networks`).
        images: ``(N, C, S, S)`` in ``[0, 1]``, C the network's input channels.
        size: the side the network was trained at.
    """
    import torch

    outputs: dict[int, object] = {}
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    hooks = [
        conv.register_forward_hook(lambda _m, _i, out, k=k: outputs.__setitem__(k, out))
        for k, conv in enumerate(convs)
    ]
    feats = []
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch):
                outputs.clear()
                model(_as_batch(images[start : start + batch], size))
                pixels = {k: o.shape[-1] * o.shape[-2] for k, o in outputs.items()}
                deepest = max(k for k in pixels if pixels[k] == min(pixels.values()))
                o = outputs[deepest]
                feats.append(torch.cat([o.mean(dim=(2, 3)), o.std(dim=(2, 3))], dim=1))
    finally:
        for h in hooks:
            h.remove()
    return torch.cat(feats).numpy().astype(np.float64)


def frechet_distance(
    real: np.ndarray, synthetic: np.ndarray, seed: int = 0, features=None
) -> float:
    """Fréchet distance between Gaussians fitted to the two sets' features.

    Args:
        real: ``(N, C, S, S)`` images in ``[0, 1]``.
        synthetic: ``(M, C, S', S')`` images in ``[0, 1]``.
        seed: the random feature network's seed.
        features: ``features(images) -> (N, D)``; default :func:`random_features`.
    """
    from scipy import linalg

    if len(real) < 2 or len(synthetic) < 2:
        raise ValueError("the Fréchet distance needs at least 2 images in each set")
    features = features or (lambda x: random_features(x, seed))
    a, b = features(real), features(synthetic)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(cov_a @ cov_b, disp=False)
    covmean = np.real(covmean)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * covmean))


def _ssim_parts(x, y, window):
    import torch.nn.functional as F

    c1, c2 = 0.01**2, 0.03**2
    pad = window.shape[-1] // 2
    mx, my = F.conv2d(x, window, padding=pad), F.conv2d(y, window, padding=pad)
    sxx = F.conv2d(x * x, window, padding=pad) - mx**2
    syy = F.conv2d(y * y, window, padding=pad) - my**2
    sxy = F.conv2d(x * y, window, padding=pad) - mx * my
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    luminance = (2 * mx * my + c1) / (mx**2 + my**2 + c1)
    return (luminance * cs).mean(dim=(1, 2, 3)), cs.mean(dim=(1, 2, 3))


def ms_ssim(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """MS-SSIM of pairs ``x[i]``, ``y[i]`` (``(N, C, S, S)`` or ``(N, S, S)`` in
    ``[0, 1]``) at 64x64; for colour, the mean of the channels' MS-SSIM."""
    import torch
    import torch.nn.functional as F

    from common.synth.memorisation import _gaussian_window

    a, b = _as_batch(x), _as_batch(y)
    channels = a.shape[1]
    a, b = a.reshape(-1, 1, *a.shape[2:]), b.reshape(-1, 1, *b.shape[2:])
    window = _gaussian_window(7, 1.5)
    out = torch.ones(len(a), dtype=torch.float64)
    for level, weight in enumerate(MS_SSIM_WEIGHTS):
        ssim, cs = _ssim_parts(a, b, window)
        last = level == len(MS_SSIM_WEIGHTS) - 1
        value = ssim if last else cs
        out = out * value.clamp_min(1e-6).double() ** weight
        a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    return out.reshape(-1, channels).mean(dim=1).numpy()


def ms_ssim_diversity(images: np.ndarray, pairs: int = 200, seed: int = 0) -> float:
    """Mean MS-SSIM over random pairs of distinct images in ``images`` (lower: more varied)."""
    n = len(images)
    if n < 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, pairs)
    j = (i + rng.integers(1, n, pairs)) % n  # never the same image twice
    return float(np.mean(ms_ssim(np.asarray(images)[i], np.asarray(images)[j])))


def mask_statistics(masks: np.ndarray) -> dict:
    """Structures per mask, their size, boundary and roundness, and empty masks.

    A structure's boundary is its pixels with a background 4-neighbour (or on the image's
    edge), counted in image sides (a boundary as long as the image is wide is 1.0); its
    roundness is ``4π area / boundary²`` in pixels (highest for a disc, near 0 for a
    thin vessel; compare real with synthetic, not with 1).

    Returns:
        ``{"n", "empty_share", "structures_mean", "structures_hist", "size_median",
        "size_q10", "size_q90", "boundary_median", "roundness_median",
        "foreground_share"}`` (medians and quantiles over all structures).
    """
    from scipy import ndimage

    counts, sizes, boundaries, roundness = [], [], [], []
    for m in np.asarray(masks):
        fg = m > 0
        labels, k = ndimage.label(fg)
        counts.append(k)
        if k:
            areas = np.bincount(labels.ravel())[1:]
            sizes.extend(areas / m.size)
            inner = ndimage.binary_erosion(fg, border_value=0)
            edge = np.bincount(labels[fg & ~inner], minlength=k + 1)[1:]
            boundaries.extend(edge / m.shape[-1])
            roundness.extend(4 * np.pi * areas / np.maximum(edge, 1) ** 2)
    counts_arr = np.asarray(counts)
    hist = np.bincount(np.minimum(counts_arr, 5), minlength=6) if len(counts_arr) else []
    q = np.quantile(sizes, [0.1, 0.5, 0.9]) if sizes else [np.nan] * 3
    return {
        "n": int(len(counts_arr)),
        "empty_share": float(np.mean(counts_arr == 0)) if len(counts_arr) else float("nan"),
        "structures_mean": float(counts_arr.mean()) if len(counts_arr) else float("nan"),
        "structures_hist": [int(c) for c in hist],  # 0, 1, 2, 3, 4, 5+ structures
        "size_q10": float(q[0]),
        "size_median": float(q[1]),
        "size_q90": float(q[2]),
        "boundary_median": float(np.median(boundaries)) if boundaries else float("nan"),
        "roundness_median": float(np.median(roundness)) if roundness else float("nan"),
        "foreground_share": float(np.mean(np.asarray(masks) > 0)) if len(masks) else 0.0,
    }


def quality_summary(
    real_images: np.ndarray,
    real_masks: np.ndarray,
    synth_images: np.ndarray,
    synth_masks: np.ndarray,
    model=None,
    model_size: int = 0,
    two_sample: bool = True,
) -> dict:
    """Everything above, and the two-sample test, for one real and one synthetic set.

    Args:
        real_images, real_masks: the real reference pairs (``(N, C, S, S)``, ``(N, S, S)``).
        synth_images, synth_masks: the synthetic pairs.
        model: the consortium's trained segmentation network, for the Fréchet distance in
            its features (``None``: left out); ``model_size`` is its training side.
        two_sample: run the classifier two-sample test (a few seconds of training).

    Returns:
        A JSON-ready dict; ``*_real_halves`` is the same distance between two halves of
        the real set, the floor a synthetic set can be read against.
    """
    from common.synth.two_sample import classifier_two_sample

    out = {
        "feature_space": "seeded random 4-layer CNN at 64x64 (offline; Inception weights "
        "for FID cannot be downloaded here; not comparable with published FIDs)",
        "frechet_distance": frechet_distance(real_images, synth_images),
        "frechet_distance_real_halves": _real_halves(real_images),
        "ms_ssim_synthetic": ms_ssim_diversity(synth_images),
        "ms_ssim_real": ms_ssim_diversity(real_images),
        "masks_real": mask_statistics(real_masks),
        "masks_synthetic": mask_statistics(synth_masks),
        "n_real": int(len(real_images)),
        "n_synthetic": int(len(synth_images)),
    }
    if model is not None:
        features = lambda x: network_features(model, x, model_size)  # noqa: E731
        out["frechet_distance_segmentation"] = frechet_distance(
            real_images, synth_images, features=features
        )
        out["frechet_distance_segmentation_real_halves"] = _real_halves(real_images, features)
    if two_sample and min(len(real_images), len(synth_images)) >= 8:
        out["two_sample"] = classifier_two_sample(
            real_images, real_masks, synth_images, synth_masks
        )
    return out


def _real_halves(images: np.ndarray, features=None) -> float | None:
    """FD between two halves of the real set: the floor the synthetic FD can be read against."""
    n = len(images) // 2
    if n < 2:
        return None
    return frechet_distance(images[:n], images[n : 2 * n], features=features)


def pair_grid_png(
    real_images: np.ndarray,
    real_masks: np.ndarray,
    synth_images: np.ndarray,
    synth_masks: np.ndarray,
    columns: int = 8,
    rows_each: int = 2,
) -> bytes:
    """PNG bytes of a grid: real pairs on top, synthetic below, mask outlines in red (no
    real rows when ``real_images`` is empty: a sheet to publish, with no real pixel)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = [("real", real_images, real_masks), ("synthetic", synth_images, synth_masks)]
    sets = [s for s in sets if len(s[1])] or sets[1:]
    rows = rows_each * len(sets)
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.4, rows * 1.5), squeeze=False)
    for s, (label, images, masks) in enumerate(sets):
        for k in range(rows_each * columns):
            ax = axes[s * rows_each + k // columns, k % columns]
            ax.axis("off")
            if k < len(images):
                ax.imshow(imaging.display(images[k]), cmap="gray", vmin=0, vmax=1)
                if np.any(masks[k]) and not np.all(masks[k]):
                    ax.contour(masks[k], levels=[0.5], colors="r", linewidths=0.7)
            if k == 0:
                ax.set_title(label, fontsize=9, loc="left")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def png_base64(png: bytes) -> str:
    """For an ``<img src="data:image/png;base64,...">``."""
    return base64.b64encode(png).decode()
