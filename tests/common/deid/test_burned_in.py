"""Burned-in text: found by a detector and OCR, filled, checked again, or quarantined."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset

from common.data.sampledata import _burn_in
from common.deid import burned_in
from common.deid.burned_in import cleaning
from common.errors import IntakeError

needs_ocr = pytest.mark.skipif(
    not burned_in.ocr_available(), reason="tesseract not installed (deploy/install.sh installs it)"
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
    assert burned_in.read_words(pixels), "OCR should read the burned-in text"
    cleaned = burned_in.clean_pixels(_ds(), pixels)
    assert cleaned is not pixels and not burned_in.read_words(cleaned)
    assert np.array_equal(cleaned[100:], pixels[100:])  # anatomy below the text untouched


@needs_ocr
def test_flagged_image_without_readable_text_is_quarantined():
    with pytest.raises(IntakeError, match="nothing text-like") as err:
        burned_in.clean_pixels(_ds(), _image(None))
    assert err.value.quarantine


def test_without_ocr_unknown_devices_are_quarantined(monkeypatch):
    monkeypatch.setenv("FEDSYNTH_OCR", "0")
    with pytest.raises(IntakeError, match="no text detector") as err:
        burned_in.clean_pixels(_ds(), _image("SMITH JOHN"))
    assert err.value.quarantine


def test_not_suspect_images_pass_untouched():
    pixels = _image(None)
    assert burned_in.clean_pixels(_ds(burned="NO"), pixels) is pixels
    assert burned_in.is_suspect(_ds(burned="NO", modality="US"))


@needs_ocr
def test_multi_frame_text_in_one_frame_is_found_and_blanked():
    plain, text = _image(None), _image("DOE, JANE  MRN12345678")
    frames = np.stack([plain, text, plain])
    cleaned = burned_in.clean_pixels(_ds(), frames, multi_frame=True)
    assert cleaned.shape == frames.shape
    assert np.array_equal(cleaned[0], plain) and np.array_equal(cleaned[2], plain)
    assert not np.array_equal(cleaned[1], text) and not burned_in.read_words(cleaned[1])


@needs_ocr
def test_multi_frame_flagged_without_any_text_is_quarantined():
    frames = np.stack([_image(None)] * 2)
    with pytest.raises(IntakeError, match="nothing text-like") as err:
        burned_in.clean_pixels(_ds(), frames, multi_frame=True)
    assert err.value.quarantine


# ------------------------------------------------------------------ found without reading

needs_detector = pytest.mark.skipif(
    not burned_in.detector_available(),
    reason="text detector not installed (deploy/install.sh installs onnxruntime and its model)",
)


def _scene(size: int = 384, colour: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A textured 'organ' with a brighter 'lesion' (the anatomy mask) on a dark field."""
    from scipy import ndimage

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    body = np.exp(-((xx - 230) ** 2 + (yy - 220) ** 2) / (2 * 90.0**2))
    texture = ndimage.gaussian_filter(rng.normal(0, 1, (size, size)), 3) * 8
    grey = 20 + 150 * body + texture * body
    anatomy = ((xx - 250) ** 2 / 50**2 + (yy - 250) ** 2 / 35**2) < 1
    grey[anatomy] += 50
    img = np.stack([grey, grey * 0.55, grey * 0.45], -1) if colour else grey
    return np.clip(img, 0, 255).astype(np.uint8), anatomy


def _plant(img, text, xy, size, fill, stroke=0):
    """Draw ``text``; return the image and the mask of every pixel the text changed."""
    from PIL import Image, ImageDraw, ImageFont

    canvas = Image.new("L", (img.shape[1], img.shape[0]), 0)
    font = ImageFont.load_default(size=size)
    ImageDraw.Draw(canvas).text(xy, text, font=font, fill=255, stroke_width=stroke, stroke_fill=255)
    strokes = np.asarray(canvas) > 0
    out = img.copy()
    out[strokes] = fill
    return out, strokes


def _covered(shape, boxes) -> np.ndarray:
    mask = np.zeros(shape[:2], bool)
    for top, left, height, width in boxes:
        mask[top : top + height, left : left + width] = True
    return mask


CASES = {
    "9px on a black band": dict(text="DOE^JOHN 1961", xy=(4, 3), size=9, fill=255, band=True),
    "thin dark on light": dict(text="MRN 20394857", xy=(10, 340), size=12, fill=10, light=True),
    "bold on tissue": dict(text="15/03/2012 14:22", xy=(90, 150), size=16, fill=255, stroke=1),
    "10px light on tissue": dict(text="Sex: F Age: 54", xy=(40, 200), size=10, fill=230),
}


@needs_detector
@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_every_planted_token_is_cleaned_and_no_anatomy_is_touched(case):
    c = CASES[case]
    img, anatomy = _scene()
    if c.get("band"):
        img[:16] = 0
    if c.get("light"):
        img[330:360, :200] = 220
    img, strokes = _plant(img, c["text"], c["xy"], c["size"], c["fill"], c.get("stroke", 0))
    cleaned, done = burned_in.clean_image(img)
    covered = _covered(img.shape, done.boxes)
    assert covered[strokes].all(), "a text pixel was left as it was"
    assert not (covered & anatomy).any(), "cleaning touched the anatomy"
    assert np.array_equal(cleaned[~covered], img[~covered])


@needs_detector
def test_colour_text_on_a_colour_image():
    img, anatomy = _scene(colour=True)
    img, strokes = _plant(img, "12/05/2016 PATIENT X", (20, 40), 14, (255, 255, 0))
    cleaned, done = burned_in.clean_image(img)
    covered = _covered(img.shape, done.boxes)
    assert covered[strokes].all() and not (covered & anatomy).any()
    assert cleaned.shape == img.shape and cleaned.dtype == img.dtype


@needs_detector
def test_a_clock_in_one_frame_of_a_cine_loop():
    plain, _ = _scene()
    clock, strokes = _plant(plain, "10:42:17", (300, 360), 12, 255)
    frames = np.stack([plain, clock, plain])
    cleaned, done = burned_in.clean_image(frames, multi_frame=True)
    assert np.array_equal(cleaned[0], plain) and np.array_equal(cleaned[2], plain)
    assert (cleaned[1][strokes] != clock[strokes]).mean() > 0.9


@needs_detector
def test_secondary_capture_without_burned_in_annotation_is_checked():
    """The hidden-corpus case: small text in the top and bottom rows, no BIA attribute."""
    img, _ = _scene()
    img, top = _plant(img, "SMITH^ANNA", (150, 2), 10, 255)
    img, bottom = _plant(img, "DOB 1948-02-11", (130, 370), 10, 255)
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.Modality = "OT"
    ds.PhotometricInterpretation = "MONOCHROME2"
    assert burned_in.policy(ds).strict
    cleaned = burned_in.clean_pixels(ds, img)
    changed = cleaned != img
    assert changed[top].mean() > 0.9 and changed[bottom].mean() > 0.9


def test_policy_names_the_rule_that_applied():
    ct = Dataset()
    ct.Modality, ct.BurnedInAnnotation = "CT", "NO"
    assert not burned_in.policy(ct).strict
    ct.BurnedInAnnotation = "YES"
    assert burned_in.policy(ct).rule.startswith("BurnedInAnnotation=YES (recipe ")
    assert burned_in.policy(Dataset()).rule.startswith("no Modality")
    assert burned_in.policy(None).rule.startswith("image folder")
    endoscopy = Dataset()
    endoscopy.SOPClassUID, endoscopy.Modality = "1.2.840.10008.5.1.4.1.1.77.1.1", "ES"
    assert "visible light" in burned_in.policy(endoscopy).rule


KVASIR = Path(__file__).resolve().parents[4] / "shared" / "data" / "polyp" / "kvasir-seg"


def _dates_and_times(rgb: np.ndarray) -> list[str]:
    """Date- and time-like tokens Tesseract reads (the frame read at twice its size)."""
    import re

    from PIL import Image

    grey = Image.fromarray(cleaning._to_uint8(rgb)).resize((rgb.shape[1] * 2, rgb.shape[0] * 2))
    words = cleaning._ocr().words(np.asarray(grey))
    return [w[-1] for w in words if re.search(r"\d{1,2}[/:.]\d{2}", w[-1])]


@needs_detector
@needs_ocr
def test_real_colonoscopy_frames_keep_no_readable_date_or_time():
    """Kvasir-SEG frames carry the examination date and time burned in: after the check
    each frame is quarantined, or no date or time can be read from it any more."""
    from PIL import Image

    if not KVASIR.is_dir():
        pytest.skip(f"real polyp data not found at {KVASIR} (../shared/data/polyp)")
    readable_before, fates = 0, {"cleaned": 0, "quarantined": 0, "untouched": 0}
    for path in sorted((KVASIR / "images").glob("*.jpg"))[:12]:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        readable_before += bool(_dates_and_times(rgb))
        try:
            cleaned, done = burned_in.clean_image(rgb)
        except IntakeError as exc:
            assert exc.quarantine
            fates["quarantined"] += 1
            continue
        fates["cleaned" if done.cleaned else "untouched"] += 1
        assert not _dates_and_times(cleaned), f"{path.name}: a date or time is still readable"
    assert readable_before >= 2, "some frames should carry dates or times OCR can read"
    assert fates["cleaned"] >= 6, fates


@needs_detector
@needs_ocr
def test_specular_highlights_are_left_alone_and_a_date_cut_into_pieces_is_not():
    """Glints of light on wet mucosa look like text to the detector: in CVC-ClinicDB
    frames (no burned-in text at all) compact glints inside the image on tissue stay as
    they are; a Kvasir date and time the detector finds in short pieces at the frame's
    margin are still cleaned (short pieces on tissue, but at the margin and stacked)."""
    from PIL import Image

    cvc = KVASIR.parent / "cvc-clinicdb" / "images"
    if not cvc.is_dir():
        pytest.skip(f"real polyp data not found at {cvc} (../shared/data/polyp)")
    for number in (1, 9, 18):
        rgb = np.asarray(Image.open(cvc / f"{number}.jpg").convert("RGB"))
        assert cleaning.text_regions(rgb, sensitive=True), "the detector answers to glints"
        cleaned, done = burned_in.clean_image(rgb)
        assert not done.cleaned and cleaned is rgb, f"frame {number}: a glint was filled"
    rgb = np.asarray(Image.open(KVASIR / "images" / "cju0s690hkp960855tjuaqvv0.jpg"))
    cleaned, done = burned_in.clean_image(rgb)
    covered = _covered(rgb.shape[:2], done.boxes)
    assert covered[90:135, 2:30].mean() > 0.9  # "D.O.B.", "20/11/2014", "09:5x:3x"
    assert not _dates_and_times(cleaned)


def test_the_recipe_is_versioned_and_a_broken_one_is_named(tmp_path):
    from common.errors import ConfigError

    rules = burned_in.recipe()
    assert rules.version and ("Helios Medical", "Helix DX-9") in rules.known_regions
    broken = tmp_path / "recipe.toml"
    broken.write_text('version = "x"\n[strict]\nno_modality = true\n')
    with pytest.raises(ConfigError, match="recipe.toml is unusable.*burned_in_annotation_yes"):
        burned_in.Recipe.load(broken)
    lenient = (
        burned_in.RECIPE_FILE.read_text()
        .replace('"OT", ', "")
        .replace('version = "', 'version = "test-')
    )
    (tmp_path / "lenient.toml").write_text(lenient)
    custom = burned_in.Recipe.load(tmp_path / "lenient.toml")
    ot = Dataset()
    ot.Modality = "OT"
    assert burned_in.policy(ot).strict and not burned_in.policy(ot, custom).strict
    assert "recipe test-" in burned_in.policy(ot, custom).rule


def test_stacked_lines_make_a_block_that_covers_a_missed_line_between_them():
    found = [(10, 5, 10, 60), (22, 8, 10, 50), (58, 4, 10, 40)]  # a line at 34-46 was missed
    assert burned_in.text_blocks(found) == [(10, 4, 58, 61)]
    assert burned_in.text_blocks(found[:2]) == []  # two lines are not a block
    far = [(10, 5, 10, 60), (22, 5, 10, 60), (200, 5, 10, 60)]
    assert burned_in.text_blocks(far) == []  # too far apart to be one block
    apart = [(10, 5, 10, 40), (22, 300, 10, 40), (34, 5, 10, 40)]
    assert burned_in.text_blocks(apart) == []  # not one column


# ------------------------------------------------------------------ the fast check


def _ct(text: str | None = None, size: int = 12, value: int | None = None, xy=(6, 4)) -> np.ndarray:
    """A CT-like slice in stored values: air, a soft-tissue body, bone; text if asked."""
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:512, :512]
    img = np.full((512, 512), 24.0) + rng.normal(0, 8, (512, 512))  # air
    body = (xx - 256) ** 2 / 210**2 + (yy - 270) ** 2 / 170**2 < 1
    img[body] = 1064 + rng.normal(0, 20, body.sum())
    img[(xx - 256) ** 2 + (yy - 380) ** 2 < 30**2] = 2200  # a vertebra
    img[(xx - 200) ** 2 + (yy - 250) ** 2 < 3**2] = 2600  # a calcification
    img = np.clip(img, 0, 4095).astype(np.uint16)
    if text:
        canvas = Image.new("L", (512, 512), 0)
        ImageDraw.Draw(canvas).text(xy, text, font=ImageFont.load_default(size=size), fill=1)
        img[np.asarray(canvas) > 0] = 4095 if value is None else value
    return img


def test_fast_check_finds_lines_of_strokes_and_leaves_anatomy_alone():
    from common.deid.burned_in.strokes import text_lines

    assert text_lines(_ct()) == []
    for size in (9, 12, 16):
        found = text_lines(_ct("DOE^JOHN 12/03/1961", size))
        assert found and found[0][0] < 20, f"{size}px text at the top was not found"
    assert text_lines(_ct("L 40 W 400", 12, value=0, xy=(200, 200))), "dark strokes on tissue"


def test_fast_check_finds_nothing_in_pydicoms_ct_mr_and_dx_images():
    """No false alarm on real images without text: each would cost a strict check."""
    import pydicom

    files = sorted((Path(pydicom.__file__).parent / "data" / "test_files").rglob("*"))
    seen = 0
    for path in files:
        try:
            ds = pydicom.dcmread(path)
        except Exception:
            continue
        if "PixelData" not in ds or burned_in.policy(ds).check != "fast":
            continue
        try:
            pixels = ds.pixel_array
        except Exception:
            continue
        multi = int(ds.get("NumberOfFrames", 1) or 1) > 1
        assert burned_in.fast_check(pixels, multi) == [], path.name
        seen += 1
    assert seen >= 40


def test_policy_sends_ct_to_the_fast_check_and_segmentations_nowhere():
    ct = Dataset()
    ct.Modality, ct.BurnedInAnnotation = "CT", "NO"
    assert (
        burned_in.policy(ct).check == "fast"
        and "BurnedInAnnotation NO" in burned_in.policy(ct).rule
    )
    seg = Dataset()
    seg.Modality = "SEG"
    assert burned_in.policy(seg).check == "none"


def test_ct_marked_without_burned_in_text_is_untouched_unless_the_fast_check_sees_text():
    ds = _ds(burned="NO", modality="CT")
    plain = _ct()
    assert burned_in.clean_pixels(ds, plain) is plain
    if not burned_in.detector_available():
        pytest.skip("text detector not installed (deploy/install.sh installs it)")
    marked = _ct("DOE^JOHN 12/03/1961", 12)
    strokes = marked != plain
    cleaned = burned_in.clean_pixels(ds, marked)
    assert (cleaned[strokes] != marked[strokes]).mean() > 0.95, (
        "the header said NO; the text was there"
    )
    body = plain > 500
    assert np.array_equal(cleaned[body], marked[body]), "cleaning touched the body"
