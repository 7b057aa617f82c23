"""Colour end to end: intake keeps RGB (image folders and colour DICOM), a run picks its
channels, and training, augmentation, generation and the gate work on three channels."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from common.data import channels, imaging
from common.data.intake import PROCESSED, prepare_site
from common.errors import ConfigError


def _smooth_colour(rng, h: int, w: int) -> np.ndarray:
    """A smooth colour image (reddish blobs on pink), uint8 RGB, no text-like strokes."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([0.8 + 0 * xx, 0.45 + 0.2 * yy, 0.45 + 0.1 * xx], axis=-1)
    cy, cx = rng.uniform(0.3, 0.7, 2)
    blob = np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / 0.02))[..., None]
    img = base * (1 - 0.5 * blob) + np.array([0.6, 0.15, 0.1]) * 0.5 * blob
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def _site(root, n: int = 4, colour: bool = True, grey_as_rgb: bool = False, seed: int = 0):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        h, w = 48, 64
        rgb = _smooth_colour(rng, h, w)
        if not colour:
            grey = rgb[..., 1]
            rgb = np.repeat(grey[..., None], 3, axis=-1) if grey_as_rgb else grey
        Image.fromarray(rgb).save(root / "images" / f"f{seed}-{i}.png")
        m = np.zeros((h, w), np.uint8)
        m[10:30, 20:40] = 255
        Image.fromarray(m).save(root / "masks" / f"f{seed}-{i}.png")


def test_colour_folder_keeps_three_channels_and_green_is_the_old_grey_image(tmp_path):
    _site(tmp_path / "d")
    arrays, report = prepare_site(tmp_path / "d", tmp_path / "s", 32, new_secret=True)
    assert arrays.images.shape == (4, 3, 32, 32) and arrays.channels == 3
    assert report.colour == 4 and report.counts()[PROCESSED] == 8
    # each channel is stretched on its own: the green one is what earlier versions kept
    raw = np.asarray(Image.open(sorted((tmp_path / "d" / "images").iterdir())[0]))
    old = imaging.normalise(imaging.resize_image(imaging.to_grey(raw), 32)).astype(np.float16)
    first = list(arrays.cases).index("IMG-f0-0")
    assert np.array_equal(arrays.with_channels("green").images[first, 0], old)
    # colour survives: red is brighter than green inside this pink image, before stretching
    assert not np.array_equal(arrays.images[:, 0], arrays.images[:, 1])


def test_grey_saved_as_rgb_is_grey_and_a_mixed_site_is_colour(tmp_path):
    _site(tmp_path / "g", colour=False, grey_as_rgb=True)
    grey, report = prepare_site(tmp_path / "g", tmp_path / "sg", 32, new_secret=True)
    assert grey.channels == 1 and report.colour == 0
    _site(tmp_path / "m", n=2, colour=False, seed=1)
    _site(tmp_path / "m2", n=2, seed=2)
    for sub in ("images", "masks"):
        for f in (tmp_path / "m2" / sub).iterdir():
            f.rename(tmp_path / "m" / sub / f.name)
    mixed, report = prepare_site(tmp_path / "m", tmp_path / "sm", 32, new_secret=True)
    assert mixed.channels == 3 and report.colour == 2
    greys = [i for i, c in enumerate(mixed.cases) if c.startswith("IMG-f1")]
    for i in greys:  # a greyscale image of a colour site: the same plane three times
        assert np.array_equal(mixed.images[i, 0], mixed.images[i, 2])


def test_channel_modes_select_what_they_say():
    rng = np.random.default_rng(0)
    colour = rng.random((2, 3, 8, 8)).astype(np.float16)
    grey = rng.random((2, 1, 8, 8)).astype(np.float16)
    assert np.array_equal(channels.select(colour, "green")[:, 0], colour[:, 1])
    assert np.array_equal(channels.select(grey, "rgb")[:, 2], grey[:, 0])
    assert channels.select(colour, "auto") is colour and channels.select(grey, "grey") is grey
    luma = channels.select(colour, "grey")
    assert luma.shape == (2, 1, 8, 8) and luma.dtype == np.float16
    assert float(luma.min()) == 0.0 and float(luma.max()) == 1.0  # re-stretched
    assert channels.resolve("auto", colour=True) == "rgb"
    assert channels.resolve("auto", colour=False) == "grey"
    assert channels.resolve("green", colour=True) == "green"
    assert channels.in_channels("rgb") == 3 and channels.in_channels("green") == 1
    with pytest.raises(ConfigError, match="channels must be one of"):
        channels.check("rbg")
    with pytest.raises(ConfigError, match="resolved"):
        channels.in_channels("auto")


def test_run_config_rejects_an_unknown_channel_mode():
    from common.config import RunSettings

    assert RunSettings.from_config({"channels": "rgb"}).channels == "rgb"
    with pytest.raises(ConfigError, match="'colour'"):
        RunSettings.from_config({"channels": "colour"})


def _colour_dicom(tmp_path, source: str, name: str):
    """A VL Endoscopic image from one of pydicom's colour test files, with its SEG."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    from common.data.sampledata import _seg_dataset

    ds = pydicom.dcmread(get_testdata_file(source))
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.1"  # VL Endoscopic Image Storage
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.Modality = "ES"
    ds.PatientName, ds.PatientID = "Doe^Jane", f"PID-{name}"
    ds.PatientBirthDate, ds.PatientSex = "19700101", "F"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240102", "101500", "1", "A1"
    ds.ReferringPhysicianName, ds.SeriesNumber, ds.InstanceNumber = "Ref^Doc", 1, 1
    ds.Manufacturer, ds.ManufacturerModelName = "Olympus", "CV-190"
    ds.BurnedInAnnotation = "NO"
    mask = np.zeros((int(ds.Rows), int(ds.Columns)), np.uint8)
    mask[30:70, 30:70] = 1
    out = tmp_path / "site" / name
    out.mkdir(parents=True)
    ds.save_as(out / "image.dcm", enforce_file_format=True)
    seg = _seg_dataset(ds, mask, np.random.default_rng(0))
    seg.save_as(out / "seg.dcm")
    return ds


@pytest.mark.parametrize(
    "source",
    [
        "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline, YBR_FULL
        "SC_ybr_full_422_uncompressed.dcm",  # native YBR_FULL_422 (Cb, Cr every 2nd pixel)
        "SC_rgb_rle.dcm",  # RLE, RGB
    ],
)
def test_colour_dicom_enters_as_rgb(tmp_path, source):
    ds = _colour_dicom(tmp_path, source, "case")
    expected = ds.pixel_array.astype(np.float32)  # pydicom decodes YBR to RGB
    arrays, report = prepare_site(tmp_path / "site", tmp_path / "state", 32, new_secret=True)
    assert report.counts()[PROCESSED] == 2, report.files
    assert arrays.channels == 3 and report.colour == 1
    assert "Olympus" in arrays.vendors[0] and "PID-case" not in arrays.cases[0]
    want = imaging.channel_first(expected, 32).astype(np.float16)
    assert np.abs(arrays.images[0].astype(np.float32) - want).max() < 0.02


def test_colour_training_augmentation_and_prediction():
    import torch

    from common.data.arrays import SiteArrays
    from common.seg.networks import create_network
    from common.seg.training import TrainSettings, predict, train
    from common.seg.transforms import RandHueSaturationd, train_transforms

    assert len(train_transforms(0, "standard", 0, 3).transforms) == (
        len(train_transforms(0, "standard", 0, 1).transforms) + 3
    )
    jitter = RandHueSaturationd(keys="image", prob=1.0, hue=0.25, saturation=0.0)
    jitter.set_random_state(3)
    rng = np.random.default_rng(0)
    img = rng.random((3, 16, 16)).astype(np.float32) * 0.5 + 0.25
    out = np.asarray(jitter({"image": img})["image"])
    luma = np.tensordot(np.asarray(channels.LUMA), img, axes=1)
    assert not np.allclose(out, img, atol=1e-3)  # the hue moved...
    assert np.allclose(np.tensordot(np.asarray(channels.LUMA), out, axes=1), luma, atol=0.02)
    grey = {"image": np.full((1, 8, 8), 0.5, np.float32)}
    assert np.array_equal(np.asarray(jitter(grey)["image"]), grey["image"])  # ...not grey's

    n = 4
    data = SiteArrays(
        images=rng.random((n, 3, 32, 32)).astype(np.float16),
        masks=(rng.random((n, 32, 32)) > 0.7).astype(np.uint8),
        vendors=np.array(["v"] * n),
        cases=np.array([f"c{i}" for i in range(n)]),
        masks2=np.zeros((n, 32, 32), np.uint8),
        has_mask2=np.zeros(n, bool),
        fov=np.ones((n, 32, 32), np.uint8),
    )
    torch.manual_seed(0)
    model = create_network("unet", in_channels=3)
    stats = train(model, data, TrainSettings(epochs=1, batch_size=2))
    assert stats.steps == 2 and np.isfinite(stats.loss)
    assert predict(model, data.images).shape == (n, 32, 32)
    with pytest.raises(RuntimeError):  # a grey network cannot read colour
        predict(create_network("unet"), data.images)


def test_generator_gate_and_quality_on_colour_pairs():
    from dataclasses import replace

    from common.synth import diffusion
    from common.synth.memorisation import gate
    from common.synth.quality import pair_grid_png, quality_summary

    rng = np.random.default_rng(0)
    images = rng.random((8, 3, 16, 16)).astype(np.float32)
    masks = (rng.random((8, 16, 16)) > 0.7).astype(np.uint8)
    settings = replace(diffusion.DiffusionSettings.named("tiny"), image_channels=3)
    model = diffusion.create_model(settings)
    ema, stats = diffusion.train_diffusion(model, images, masks, settings)
    assert stats.steps == settings.train_steps
    synth, synth_masks = diffusion.sample(ema, settings, n=4, seed=0, steps=2)
    assert synth.shape == (4, 3, 16, 16) and synth_masks.shape == (4, 16, 16)
    with pytest.raises(ValueError, match="channel"):
        diffusion.train_diffusion(diffusion.create_model(settings), images[:, :1], masks, settings)
    verdict = gate(synth, images[:4], images[4:])
    assert len(verdict.keep) == 4
    assert not gate(images[:2], images[:4], images[4:]).keep.any()  # copies stay home
    summary = quality_summary(images, masks, synth, synth_masks)
    assert np.isfinite(summary["frechet_distance"]) and 0 < summary["ms_ssim_real"] <= 1
    assert pair_grid_png(images, masks, synth, synth_masks)[:4] == b"\x89PNG"
