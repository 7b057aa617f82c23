"""Burned-in text: blanked by known region and OCR, verified by a second OCR pass."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset

from common import pixel_phi
from common.errors import IntakeError
from common.sampledata import _burn_in

needs_ocr = pytest.mark.skipif(
    not pixel_phi.ocr_available(), reason="tesseract not installed (deploy/install.sh installs it)"
)


def _image(text: str | None, size: int = 256) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    img = (800 + 600 * np.exp(-((xx - 128) ** 2 + (yy - 150) ** 2) / 4000)).astype(np.uint16)
    img += rng.integers(0, 40, img.shape).astype(np.uint16)
    return _burn_in(img, text, 4095) if text else img


def _ds(manufacturer="Unknown Vendor", burned="YES", modality="DX") -> Dataset:
    ds = Dataset()
    ds.Manufacturer, ds.ManufacturerModelName = manufacturer, "X1"
    ds.BurnedInAnnotation, ds.Modality = burned, modality
    ds.PhotometricInterpretation = "MONOCHROME2"
    return ds


@needs_ocr
def test_ocr_blanks_text_of_an_unknown_device_and_checks_again():
    pixels = _image("DOE, JANE  MRN12345678  DOB 02/03/1975")
    assert pixel_phi.read_words(pixels), "OCR should read the burned-in text"
    cleaned = pixel_phi.clean_pixels(_ds(), pixels)
    assert cleaned is not pixels and not pixel_phi.read_words(cleaned)
    assert np.array_equal(cleaned[100:], pixels[100:])  # anatomy below the text untouched


@needs_ocr
def test_flagged_image_without_readable_text_is_quarantined():
    with pytest.raises(IntakeError, match="OCR found none") as err:
        pixel_phi.clean_pixels(_ds(), _image(None))
    assert err.value.quarantine


def test_without_ocr_unknown_devices_are_quarantined(monkeypatch):
    monkeypatch.setenv("FEDSYNTH_OCR", "0")
    with pytest.raises(IntakeError, match="OCR is off") as err:
        pixel_phi.clean_pixels(_ds(), _image("SMITH JOHN"))
    assert err.value.quarantine


def test_not_suspect_images_pass_untouched():
    pixels = _image(None)
    assert pixel_phi.clean_pixels(_ds(burned="NO"), pixels) is pixels
    assert pixel_phi.is_suspect(_ds(burned="NO", modality="US"))


@needs_ocr
def test_multi_frame_text_in_one_frame_is_found_and_blanked():
    plain, text = _image(None), _image("DOE, JANE  MRN12345678")
    frames = np.stack([plain, text, plain])
    cleaned = pixel_phi.clean_pixels(_ds(), frames, multi_frame=True)
    assert cleaned.shape == frames.shape
    assert np.array_equal(cleaned[0], plain) and np.array_equal(cleaned[2], plain)
    assert not np.array_equal(cleaned[1], text) and not pixel_phi.read_words(cleaned[1])


@needs_ocr
def test_multi_frame_flagged_without_any_text_is_quarantined():
    frames = np.stack([_image(None)] * 2)
    with pytest.raises(IntakeError, match="OCR found none") as err:
        pixel_phi.clean_pixels(_ds(), frames, multi_frame=True)
    assert err.value.quarantine
