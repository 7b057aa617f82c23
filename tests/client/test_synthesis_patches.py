from __future__ import annotations

import numpy as np

from client.synthesis import PATCHES_PER_IMAGE, generator_data
from common.config import RunSettings
from common.data.intake import prepare_site


def test_synth_patch_gives_the_generator_full_resolution_patches(tiny_consortium, tmp_path):
    data, _ = tiny_consortium
    arrays, _ = prepare_site(data / "site-1", tmp_path / "s", 64, new_secret=True)
    arrays.fov[:, :, :32] = 0  # the left half holds no data
    train, val = arrays.split(0.25, seed=0)
    run = RunSettings.from_config({"image-size": 64, "synth-config": "tiny", "synth-patch": True})
    size = run.diffusion_settings().image_size
    assert size < 64
    ptrain, pval = generator_data(train, val, run)
    assert ptrain.images.shape == (PATCHES_PER_IMAGE * len(train), 1, size, size)
    assert len(pval) == PATCHES_PER_IMAGE * len(val)
    # each patch is a crop of its image, at least half inside the field of view
    k, (y, x) = 0, map(int, str(ptrain.cases[0]).split("#")[1].split(","))
    assert np.array_equal(ptrain.images[0], train.images[k, :, y : y + size, x : x + size])
    assert train.fov[k, y : y + size, x : x + size].mean() >= 0.5
    again, _ = generator_data(train, val, run)
    assert np.array_equal(again.images, ptrain.images)  # seeded: the generator cache holds
    whole = RunSettings.from_config({"image-size": 64, "synth-config": "tiny"})
    assert generator_data(train, val, whole)[0] is train
