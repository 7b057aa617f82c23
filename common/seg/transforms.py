"""MONAI dictionary transforms, declared once so every site augments identically.

Training samples are dicts ``{"image": (C, S, S) float32, "label": (1, S, S) uint8}``.
Intensity augmentation (contrast/gamma, scale, shift, noise, blur) makes a model less
sensitive to each vendor's detector response; light spatial augmentation (flip,
small rotation and zoom) adds shape variety.

``"strong"`` adds SyntheX-style domain randomisation (Gao et al., Nature Machine
Intelligence 2023): intensity inversion, non-linear contrast curves, stronger gamma,
noise and blur, pixel dropout and elastic deformation, so that a model trained on
synthetic images does not learn the generator's look.

Colour images (C = 3) get colour augmentation on top: per-channel brightness and
contrast, and hue and saturation jitter (:class:`RandHueSaturationd`), stronger under
``"strong"``, so that a model does not learn one centre's white balance or light source.
Greyscale pipelines are unchanged (same transforms, same random draws).
"""

from __future__ import annotations

import numpy as np
import torch
from monai.transforms import MapTransform, RandomizableTransform

#: RGB -> YIQ (NTSC): hue is an angle in the I-Q plane, saturation its radius.
_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_RGB = np.linalg.inv(_YIQ)


def _invert(image):
    return 1.0 - image


def train_transforms(
    seed: int = 0, strength: str = "standard", patch_size: int = 0, channels: int = 1
):
    """The training augmentation pipeline.

    Args:
        seed: seeds the pipeline's random state (same seed, same augmentations).
        strength: ``"standard"`` or ``"strong"`` (domain randomisation, see module doc).
        patch_size: first crop a random ``patch_size`` square (0: the whole image); an
            image smaller than that is kept whole. Thin structures (vessels) need the
            full resolution, which whole-image batches cannot afford on a CPU.
        channels: image channels; 3 adds colour augmentation (see module doc).

    Returns:
        A ``monai.transforms.Compose`` over dict samples.
    """
    from monai.transforms import (
        Compose,
        RandAdjustContrastd,
        RandAffined,
        RandFlipd,
        RandGaussianNoised,
        RandGaussianSmoothd,
        RandScaleIntensityd,
        RandShiftIntensityd,
    )

    if strength not in ("standard", "strong"):
        raise ValueError(f"augmentation must be 'standard' or 'strong', got {strength!r}")
    if strength == "strong":
        return _strong(seed, patch_size, channels)
    pipeline = Compose(
        [
            _crop(patch_size),
            RandFlipd(keys=("image", "label"), prob=0.5, spatial_axis=1),
            RandAffined(
                keys=("image", "label"),
                prob=0.5,
                rotate_range=0.15,
                scale_range=0.1,
                mode=("bilinear", "nearest"),
                padding_mode="zeros",
            ),
            RandAdjustContrastd(keys="image", prob=0.5, gamma=(0.5, 2.0)),
            RandScaleIntensityd(keys="image", prob=0.3, factors=0.2),
            RandShiftIntensityd(keys="image", prob=0.3, offsets=0.1),
            RandGaussianSmoothd(keys="image", prob=0.2, sigma_x=(0.25, 1.0), sigma_y=(0.25, 1.0)),
            RandGaussianNoised(keys="image", prob=0.3, std=0.03),
            *_colour(channels, strong=False),
        ]
    )
    pipeline.set_random_state(seed=seed)
    return pipeline


def _colour(channels: int, strong: bool) -> list:
    """Colour augmentation for RGB images (none for greyscale)."""
    from monai.transforms import RandScaleIntensityd, RandShiftIntensityd

    if channels != 3:
        return []
    k = 2.0 if strong else 1.0
    return [
        RandScaleIntensityd(keys="image", prob=0.3, factors=0.1 * k, channel_wise=True),
        RandShiftIntensityd(keys="image", prob=0.3, offsets=0.05 * k, channel_wise=True),
        RandHueSaturationd(
            keys="image", prob=0.7 if strong else 0.5, hue=0.04 * k, saturation=0.25 * k
        ),
    ]


class RandHueSaturationd(RandomizableTransform, MapTransform):
    """Rotate hue by up to ``hue`` of a turn and scale saturation by ``1 ± saturation``.

    Works in the YIQ plane (luma untouched) on ``(3, H, W)`` images in ``[0, 1]``, clipped
    to ``[0, 1]``; other images pass unchanged. Seeded by MONAI's ``set_random_state``.
    """

    def __init__(self, keys, prob: float = 0.5, hue: float = 0.04, saturation: float = 0.25):
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, prob)
        self.hue, self.saturation = hue, saturation
        self._angle, self._scale = 0.0, 1.0

    def randomize(self, data=None) -> None:
        super().randomize(None)
        self._angle = self.R.uniform(-self.hue, self.hue) * 2 * np.pi
        self._scale = self.R.uniform(1 - self.saturation, 1 + self.saturation)

    def __call__(self, data):
        d = dict(data)
        self.randomize()
        if not self._do_transform:
            return d
        c, s = np.cos(self._angle) * self._scale, np.sin(self._angle) * self._scale
        turn = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
        matrix = torch.as_tensor(_RGB @ turn @ _YIQ, dtype=torch.float32)
        for key in self.key_iterator(d):
            img = d[key]
            if img.shape[0] != 3:
                continue
            out = torch.einsum("ij,jhw->ihw", matrix, torch.as_tensor(img).float()).clamp(0, 1)
            d[key] = out if isinstance(img, torch.Tensor) else out.numpy()
        return d


def patch_crop(seed: int, patch_size: int):
    """The random ``patch_size`` square crop alone (patch training without augmentation).

    Returns:
        A seeded ``monai.transforms.Compose`` over dict samples.
    """
    from monai.transforms import Compose

    pipeline = Compose([_crop(patch_size)])
    pipeline.set_random_state(seed=seed)
    return pipeline


def _crop(patch_size: int):
    """A random square crop (the first transform), or the identity for whole images."""
    from monai.transforms import Identityd, RandSpatialCropd

    if patch_size <= 0:
        return Identityd(keys=("image", "label"))
    return RandSpatialCropd(
        keys=("image", "label"), roi_size=(patch_size, patch_size), random_size=False
    )


def _strong(seed: int, patch_size: int = 0, channels: int = 1):
    from monai.transforms import (
        Compose,
        Rand2DElasticd,
        RandAdjustContrastd,
        RandAffined,
        RandCoarseDropoutd,
        RandFlipd,
        RandGaussianNoised,
        RandGaussianSmoothd,
        RandHistogramShiftd,
        RandLambdad,
        RandScaleIntensityd,
        RandShiftIntensityd,
    )

    pipeline = Compose(
        [
            _crop(patch_size),
            RandFlipd(keys=("image", "label"), prob=0.5, spatial_axis=1),
            RandAffined(
                keys=("image", "label"),
                prob=0.7,
                rotate_range=0.3,
                scale_range=0.2,
                translate_range=(8, 8),
                mode=("bilinear", "nearest"),
                padding_mode="zeros",
            ),
            Rand2DElasticd(
                keys=("image", "label"),
                prob=0.3,
                spacing=(24, 24),
                magnitude_range=(1, 3),
                mode=("bilinear", "nearest"),
                padding_mode="zeros",
            ),
            RandLambdad(keys="image", func=_invert, prob=0.2),
            RandHistogramShiftd(keys="image", prob=0.5, num_control_points=(4, 8)),
            RandAdjustContrastd(keys="image", prob=0.7, gamma=(0.3, 3.0)),
            RandScaleIntensityd(keys="image", prob=0.5, factors=0.3),
            RandShiftIntensityd(keys="image", prob=0.5, offsets=0.2),
            RandGaussianSmoothd(keys="image", prob=0.3, sigma_x=(0.25, 1.5), sigma_y=(0.25, 1.5)),
            RandGaussianNoised(keys="image", prob=0.5, std=0.08),
            RandCoarseDropoutd(
                keys="image", prob=0.3, holes=8, spatial_size=(2, 2), max_spatial_size=(6, 6)
            ),
            *_colour(channels, strong=True),
        ]
    )
    pipeline.set_random_state(seed=seed)
    return pipeline
