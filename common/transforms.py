"""MONAI dictionary transforms, declared once so every site augments identically.

Training samples are dicts ``{"image": (1, S, S) float32, "label": (1, S, S) uint8}``.
Intensity augmentation (contrast/gamma, scale, shift, noise, blur) makes a model less
sensitive to each vendor's detector response; light spatial augmentation (flip,
small rotation and zoom) adds shape variety.
"""

from __future__ import annotations


def train_transforms(seed: int = 0):
    """The training augmentation pipeline.

    Args:
        seed: seeds the pipeline's random state (same seed, same augmentations).

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

    pipeline = Compose(
        [
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
        ]
    )
    pipeline.set_random_state(seed=seed)
    return pipeline
