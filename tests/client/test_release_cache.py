"""A site draws the same gated pairs for the same generator and seed: kept, not redrawn."""

from __future__ import annotations

import numpy as np

from client.synthesis import RELEASES_DIR, synthesize_round
from common.config import RunSettings, SiteSettings


def test_a_release_is_drawn_once_per_generator_and_seed(tiny_consortium, prepare, tmp_path):
    data, _ = tiny_consortium
    prepare(data / "site-1", tmp_path / "state", 32)
    site = SiteSettings(str(data / "site-1"), str(tmp_path / "state"), "site-1", val_fraction=0.5)
    run = RunSettings.from_config(
        {
            "image-size": 32,
            "synth-config": "tiny",
            "synth-n": 6,
            "share": "synthetic",
            "synth-mask-quantile": 0.0,  # tiny generators draw noise masks: keep them
        }
    )
    first = synthesize_round(site, run, server_round=1)
    kept = list((tmp_path / "state" / RELEASES_DIR).glob("*.npz"))
    assert len(kept) == 1
    again = synthesize_round(site, run, server_round=1)
    assert np.array_equal(first.images, again.images) and np.array_equal(first.masks, again.masks)
    assert again.gate == first.gate and again.quality == first.quality
    other = synthesize_round(site, run, server_round=2)  # another seed: new pairs
    assert len(list((tmp_path / "state" / RELEASES_DIR).glob("*.npz"))) == 2
    assert not np.array_equal(other.images, first.images)
