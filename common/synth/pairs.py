"""Synthetic image+mask pairs as training cases, wherever they are trained on.

The coordinator trains on the pool of every site's released pairs (``share=synthetic``
or ``both``), and under ``share=exchange`` each site trains on the pairs the others
released. Both turn releases into :class:`common.data.arrays.SiteArrays` here, so the
pairs reach a network at the same size, channels and value range, however they travel.
"""

from __future__ import annotations

import numpy as np

from common.data.arrays import SiteArrays


def as_site_arrays(releases: dict, image_size: int, channels: str = "auto") -> SiteArrays:
    """Every site's released pairs as one set of training cases.

    Args:
        releases: site name -> ``(images (k, C, S, S) in [0, 1], masks (k, S, S))``.
        image_size: the side to train at (images resized bilinearly, masks by
            re-thresholding the resized mask at 0.5).
        channels: the run's resolved ``channels`` (``"grey"``, ``"rgb"``...); ``"auto"``
            keeps the releases' own.

    Returns:
        :class:`SiteArrays` with vendor ``"synthetic (<site>)"`` and case names
        ``synthetic-<site>-<i>`` (each pair its own privacy unit: a pair is nobody's
        patient at the training site).
    """
    import torch
    import torch.nn.functional as F

    from common.data.channels import in_channels, select

    images, masks, vendors, cases = [], [], [], []
    for site, (im, mk) in sorted(releases.items()):
        if not len(im):
            continue
        im = np.asarray(im, np.float32)
        im = im[:, None] if im.ndim == 3 else im
        x = torch.as_tensor(select(im, channels))
        m = torch.as_tensor((np.asarray(mk) > 0).astype(np.float32))[:, None]
        if x.shape[-1] != image_size:
            x = F.interpolate(x, size=(image_size, image_size), mode="bilinear")
            m = F.interpolate(m, size=(image_size, image_size), mode="bilinear")
        images.append(x.clamp(0, 1).numpy().astype(np.float16))
        masks.append((m[:, 0] > 0.5).numpy().astype(np.uint8))
        vendors += [f"synthetic ({site})"] * len(im)
        cases += [f"synthetic-{site}-{i}" for i in range(len(im))]
    n = len(vendors)
    side = (image_size, image_size)
    if not images:
        c = in_channels(channels) if channels != "auto" else 1
        images, masks = [np.zeros((0, c, *side), np.float16)], [np.zeros((0, *side), np.uint8)]
    return SiteArrays(
        images=np.concatenate(images),
        masks=np.concatenate(masks),
        vendors=np.asarray(vendors, dtype=str),
        cases=np.asarray(cases, dtype=str),
        masks2=np.zeros((n, *side), np.uint8),
        has_mask2=np.zeros(n, bool),
        fov=np.ones((n, *side), np.uint8),
    )
