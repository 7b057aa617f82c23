"""Pixel preprocessing shared by every site and the server: one function, same result.

A DICOM image goes through its Modality LUT (RescaleSlope/Intercept), is inverted if
stored as MONOCHROME1, padded to a square, resized to the training resolution and
normalised to ``[0, 1]`` by robust percentiles. Colour images keep their three channels,
each resized and normalised on its own (:mod:`common.data.channels` says why). Masks are
padded and resized the same way with nearest-neighbour interpolation.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def pad_square(arr: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """Centre-pad a 2D array to a square with ``fill``."""
    h, w = arr.shape
    side = max(h, w)
    out = np.full((side, side), fill, dtype=arr.dtype)
    top, left = (side - h) // 2, (side - w) // 2
    out[top : top + h, left : left + w] = arr
    return out


def normalise(arr: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Map the ``[low, high]`` percentiles of ``arr`` to ``[0, 1]`` and clip.

    Args:
        arr: 2D float array.
        low: lower percentile.
        high: upper percentile.

    Returns:
        float32 array in ``[0, 1]`` (all zeros for a constant image).
    """
    lo, hi = np.percentile(arr, [low, high])
    if hi - lo < 1e-6:
        return np.zeros(arr.shape, dtype=np.float32)
    return np.clip((arr - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def resize_image(arr: np.ndarray, size: int) -> np.ndarray:
    """Square-pad and resize a float image to ``size x size`` (antialiased bilinear)."""
    img = Image.fromarray(pad_square(arr.astype(np.float32)), mode="F")
    return np.asarray(img.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Square-pad and resize a binary mask to ``size x size`` (nearest neighbour)."""
    img = Image.fromarray(pad_square((mask > 0).astype(np.uint8) * 255))
    return (np.asarray(img.resize((size, size), Image.Resampling.NEAREST)) > 127).astype(np.uint8)


def dicom_to_unit(ds, pixels: np.ndarray) -> np.ndarray:
    """Stored DICOM pixels -> display-oriented float image (bright = dense), unnormalised.

    Args:
        ds: the (de-identified) dataset the pixels came from.
        pixels: ``ds.pixel_array`` (2D), possibly after pixel cleaning.

    Returns:
        float32 2D array with the Modality LUT applied and MONOCHROME1 inverted.
    """
    from pydicom.pixels import apply_modality_lut

    arr = apply_modality_lut(pixels, ds).astype(np.float32)
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")) == "MONOCHROME1":
        arr = arr.max() - arr
    return arr


def channel_first(image: np.ndarray, size: int) -> np.ndarray:
    """A 2D or ``(H, W, 3)`` float image -> ``(C, size, size)`` float32 in ``[0, 1]``,
    each channel resized and normalised on its own."""
    planes = [image] if image.ndim == 2 else [image[..., c] for c in range(image.shape[-1])]
    return np.stack([normalise(resize_image(p, size)) for p in planes])


def is_colour(arr: np.ndarray, tolerance: float = 3.0) -> bool:
    """Whether an ``(H, W, 3+)`` array really holds colour.

    Greyscale saved as RGB (equal channels, or nearly so after JPEG's chroma rounding) is
    not colour: at most 0.1% of pixels may differ by more than ``tolerance`` between
    channels.
    """
    if arr.ndim != 3 or arr.shape[-1] < 3:
        return False
    rgb = arr[..., :3].astype(np.float32)
    step = max(1, int(np.sqrt(rgb.shape[0] * rgb.shape[1] / 65536)))  # ~256x256 samples
    rgb = rgb[::step, ::step]
    spread = np.maximum(np.abs(rgb[..., 0] - rgb[..., 1]), np.abs(rgb[..., 1] - rgb[..., 2]))
    return bool(np.mean(spread > tolerance) > 0.001)


def to_channels(arr: np.ndarray) -> np.ndarray:
    """An image array as float32: ``(H, W, 3)`` if it holds colour, else ``(H, W)``.

    Alpha is dropped; greyscale stored as RGB becomes one channel (its green channel, the
    same as :func:`to_grey`).
    """
    if arr.ndim == 3 and is_colour(arr):
        return arr[..., :3].astype(np.float32)
    return to_grey(arr)


def to_grey(arr: np.ndarray) -> np.ndarray:
    """RGB(A) or palette image array -> single-channel float (green channel for RGB).

    Fundus photographs carry most vessel contrast in green; for other RGB images the
    green channel is a close stand-in for luminance.
    """
    if arr.ndim == 3:
        return arr[..., 1].astype(np.float32) if arr.shape[-1] >= 3 else arr[..., 0]
    return arr.astype(np.float32)


def display(image: np.ndarray) -> np.ndarray:
    """An image for ``imshow``: ``(S, S)`` for one channel, ``(S, S, 3)`` for colour."""
    image = np.asarray(image, np.float32)
    if image.ndim == 3:
        image = image[0] if image.shape[0] == 1 else np.moveaxis(image, 0, -1)
    return np.clip(image, 0, 1)
