"""Burned-in text in pixel data: blank known regions, or refuse the image.

An image is suspect when it says BurnedInAnnotation=YES. Suspect images from a device
with a known text region (:data:`KNOWN_REGIONS`, keyed by Manufacturer and model, in the
spirit of per-model pixel anonymiser scripts) have that region blanked; any other
suspect image raises :class:`~common.errors.IntakeError` with ``quarantine=True``, so it
is held for a person and never used. OCR-based cleaning (Tesseract) will extend this.
"""

from __future__ import annotations

import numpy as np

from common.errors import IntakeError

#: (Manufacturer, ManufacturerModelName) -> share of rows from the top that hold text.
KNOWN_REGIONS: dict[tuple[str, str], float] = {
    ("Helios Medical", "Helix DX-9"): 0.08,
}


def is_suspect(ds) -> bool:
    """Whether ``ds`` declares burned-in annotation."""
    return str(ds.get("BurnedInAnnotation", "NO")).upper() == "YES"


def clean_pixels(ds, pixels: np.ndarray) -> np.ndarray:
    """Return ``pixels`` with burned-in text removed (a copy), or ``pixels`` unchanged.

    Args:
        ds: the dataset the pixels belong to (device identity and photometry).
        pixels: its stored pixel array (2D).

    Raises:
        IntakeError: (quarantine) for a suspect image with no known text region.
    """
    if not is_suspect(ds):
        return pixels
    key = (str(ds.get("Manufacturer", "")), str(ds.get("ManufacturerModelName", "")))
    band = KNOWN_REGIONS.get(key)
    if band is None:
        raise IntakeError(
            "burned-in annotation on a device with no known text region", quarantine=True
        )
    out = pixels.copy()
    rows = int(np.ceil(out.shape[0] * band))
    rest = out[rows:]
    inverted = str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1"
    out[:rows] = rest.max() if inverted else rest.min()
    return out
