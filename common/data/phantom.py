"""Chest-radiograph-like phantoms with lung nodules, and simulated vendor appearance.

A phantom is an attenuation map in ``[0, 1]`` (air 0, lung ~0.2, soft tissue ~0.45,
bone ~0.75) with one to three irregular nodules inside the lungs; the nodules are the
segmentation target. :class:`VendorProfile` turns an attenuation map into the stored
pixel values a given (fictitious) X-ray detector would write: its own resolution,
response curve, blur, noise, bit depth and photometric interpretation. Everything is
deterministic for a given random generator.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> att, mask = make_phantom(rng, size=64)
    >>> att.shape, mask.dtype, bool(mask.any())
    ((64, 64), dtype('uint8'), True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class VendorProfile:
    """How one simulated detector renders an attenuation map.

    Args:
        manufacturer: DICOM Manufacturer (0008,0070).
        model: DICOM ManufacturerModelName (0008,1090).
        size: image rows = columns, in pixels.
        bits_stored: BitsStored; stored values lie in ``[0, 2**bits_stored - 1]``.
        gamma: exponent of the detector's response curve (1 = linear).
        noise: standard deviation of the additive noise, as a fraction of full scale.
        blur: Gaussian blur sigma in pixels at ``size``.
        monochrome1: store inverted values (PhotometricInterpretation MONOCHROME1).
        rescale_slope: RescaleSlope written to the header.
        rescale_intercept: RescaleIntercept written to the header.
        burned_in_fraction: share of images with burned-in patient text.
    """

    manufacturer: str
    model: str
    size: int
    bits_stored: int
    gamma: float
    noise: float
    blur: float
    monochrome1: bool = False
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    burned_in_fraction: float = 0.0

    def render(self, attenuation: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Render an attenuation map (already at ``self.size``) to stored pixel values.

        Args:
            attenuation: float array in ``[0, 1]``, shape ``(size, size)``.
            rng: random generator for the noise.

        Returns:
            ``uint16`` stored pixel values (inverted when ``monochrome1``).
        """
        if attenuation.shape != (self.size, self.size):
            raise ValueError(
                f"attenuation must have shape {(self.size, self.size)}, got {attenuation.shape}"
            )
        signal = np.clip(attenuation, 0.0, 1.0) ** self.gamma
        if self.blur > 0:
            signal = ndimage.gaussian_filter(signal, self.blur)
        # Quantum noise grows with signal; electronic noise is flat.
        signal = signal + rng.normal(0.0, self.noise, signal.shape) * (0.5 + signal)
        full_scale = 2**self.bits_stored - 1
        stored = np.clip(signal, 0.0, 1.0) * full_scale
        if self.monochrome1:
            stored = full_scale - stored
        return np.round(stored).astype(np.uint16)


#: The simulated vendors. Sites scan on the first ones; the held-out set adds one no site has.
VENDORS: tuple[VendorProfile, ...] = (
    VendorProfile(
        "Northwind Imaging", "NW-DR 300", size=256, bits_stored=12, gamma=1.0, noise=0.015, blur=0.6
    ),
    VendorProfile(
        "Helios Medical",
        "Helix DX-9",
        size=320,
        bits_stored=14,
        gamma=0.6,
        noise=0.03,
        blur=1.4,
        monochrome1=True,
        rescale_slope=0.5,
        rescale_intercept=-1024.0,
        burned_in_fraction=0.3,
    ),
    VendorProfile(
        "Kestrel Diagnostics",
        "KX-12 Flat Panel",
        size=192,
        bits_stored=10,
        gamma=1.5,
        noise=0.04,
        blur=0.3,
    ),
    # The held-out vendor combines what each site sees only part of: Kestrel's noise,
    # Helios' blur and inverted storage, a response curve between the sites' curves.
    VendorProfile(
        "Orion Radiology Systems",
        "Orion Pro 7",
        size=288,
        bits_stored=16,
        gamma=1.2,
        noise=0.045,
        blur=1.6,
        monochrome1=True,
        rescale_slope=2.0,
    ),
)


def _ellipse(xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, rx: float, ry: float):
    return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0


def _blob(xx, yy, cx, cy, radius, rng: np.random.Generator) -> np.ndarray:
    """An irregular, star-convex nodule outline."""
    theta = np.arctan2(yy - cy, xx - cx)
    dist = np.hypot(xx - cx, yy - cy)
    wobble = np.ones_like(theta)
    for k in (2, 3, 5):
        wobble += rng.uniform(0.03, 0.12) * np.sin(k * theta + rng.uniform(0, 2 * np.pi))
    return dist <= radius * wobble


def make_phantom(rng: np.random.Generator, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Draw one chest-radiograph-like attenuation map with a nodule mask.

    Args:
        rng: random generator; the same state gives the same phantom.
        size: rows = columns of the output.

    Returns:
        ``(attenuation, mask)``: float32 in ``[0, 1]`` and uint8 in ``{0, 1}``.
    """
    lin = np.linspace(-1.0, 1.0, size, dtype=np.float64)
    xx, yy = np.meshgrid(lin, lin)
    # Patient habitus: scale and shift.
    sx, sy = rng.uniform(0.85, 1.0), rng.uniform(0.85, 1.0)
    ox, oy = rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05)
    x, y = (xx - ox) / sx, (yy - oy) / sy

    att = np.zeros((size, size))
    body = _ellipse(x, y, 0.0, 0.05, 0.9, 0.95)
    att[body] = 0.45
    lungs = np.zeros_like(body)
    for side in (-1, 1):
        lung = _ellipse(
            x,
            y,
            side * rng.uniform(0.33, 0.4),
            rng.uniform(-0.12, -0.02),
            rng.uniform(0.22, 0.28),
            rng.uniform(0.5, 0.6),
        )
        lungs |= lung
    att[lungs] = 0.18
    heart = _ellipse(
        x,
        y,
        rng.uniform(0.04, 0.12),
        rng.uniform(0.2, 0.3),
        rng.uniform(0.2, 0.26),
        rng.uniform(0.2, 0.27),
    )
    att[heart & body] = 0.55
    att[(np.abs(x) < 0.07) & body] = 0.72  # spine
    for k in range(9):  # ribs
        y0 = -0.62 + 0.15 * k + rng.uniform(-0.02, 0.02)
        rib = np.abs(y - (y0 + 0.25 * x**2)) < 0.022
        att[rib & body & (np.abs(x) > 0.07)] += 0.14
    # Smooth, low-frequency tissue variation.
    field = ndimage.gaussian_filter(rng.normal(size=(size, size)), size / 10)
    att += 0.5 * field / (np.abs(field).max() + 1e-8) * 0.08 * body

    # Nodules: one to three, inside the lungs, away from each other.
    mask = np.zeros((size, size), dtype=bool)
    ys, xs = np.nonzero(lungs)
    for _ in range(int(rng.integers(1, 4))):
        radius = rng.uniform(0.06, 0.14)
        for _attempt in range(20):
            i = int(rng.integers(len(xs)))
            cx, cy = lin[xs[i]], lin[ys[i]]
            nodule = _blob(xx, yy, cx, cy, radius, rng)
            if (nodule & ~lungs).sum() < 0.1 * nodule.sum() and not (nodule & mask).any():
                break
        mask |= nodule
    # A nodule has a plateau with a thin soft rim; the label is the plateau outline.
    soft = ndimage.gaussian_filter(mask.astype(float), 0.8 * size / 256)
    att += rng.uniform(0.22, 0.32) * soft
    return np.clip(att, 0.0, 1.0).astype(np.float32), mask.astype(np.uint8)
