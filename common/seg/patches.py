"""Random patches of whole images, for models that must see thin structures at full size.

Example:
    >>> import numpy as np
    >>> from common.data.arrays import SiteArrays
    >>> n = 2
    >>> data = SiteArrays(np.zeros((n, 3, 64, 64)), np.zeros((n, 64, 64), np.uint8),
    ...     np.array(["v"] * n), np.array(["a", "b"]), np.zeros((n, 64, 64), np.uint8),
    ...     np.zeros(n, bool), np.ones((n, 64, 64), np.uint8))
    >>> random_patches(data, 16, 3, seed=0).images.shape
    (6, 3, 16, 16)
"""

from __future__ import annotations

import numpy as np

from common.data.arrays import SiteArrays


def random_patches(data: SiteArrays, size: int, per_image: int, seed: int) -> SiteArrays:
    """``per_image`` random ``size`` squares of every image, each at least half in the FOV.

    Args:
        data: whole images (with their masks and fields of view).
        size: the patch side; ``data`` is returned as it is if its images are not larger.
        per_image: patches to draw from each image (fewer if the FOV is too small).
        seed: the draw's seed (same seed, same patches).

    Returns:
        :class:`common.data.arrays.SiteArrays` of the patches (one annotator, full FOV).
    """
    full = data.images.shape[-1] if len(data) else 0
    if size >= full:
        return data
    rng = np.random.default_rng(seed)
    picked = []
    for k in range(len(data)):
        got = 0
        for _ in range(per_image * 20):
            y, x = (int(v) for v in rng.integers(0, full - size + 1, 2))
            if data.fov[k, y : y + size, x : x + size].mean() >= 0.5:
                picked.append((k, y, x))
                got += 1
                if got == per_image:
                    break
    n = len(picked)

    def crops(arr):
        lead = arr.shape[1:-2]  # the channel axis of images, none for masks
        return (
            np.stack([arr[k, ..., y : y + size, x : x + size] for k, y, x in picked])
            if n
            else (np.zeros((0, *lead, size, size), arr.dtype))
        )

    return SiteArrays(
        images=crops(data.images),
        masks=crops(data.masks),
        vendors=np.array([data.vendors[k] for k, _, _ in picked], dtype=str),
        cases=np.array([f"{data.cases[k]}#{y},{x}" for k, y, x in picked], dtype=str),
        masks2=np.zeros((n, size, size), np.uint8),
        has_mask2=np.zeros(n, bool),
        fov=np.ones((n, size, size), np.uint8),
    )
