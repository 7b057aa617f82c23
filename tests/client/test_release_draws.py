"""A release draws until synth-n pairs pass the mask check and the memorisation gate, or
until its draw budget is spent, and accounts for every pair it drew."""

from __future__ import annotations

import numpy as np

from client.synthesis import synthesize_round
from common.config import RunSettings, SiteSettings
from common.synth.mask_check import structures_and_foreground

BASE = {"image-size": 32, "synth-config": "tiny", "synth-n": 6, "share": "synthetic"}


def test_every_drawn_pair_is_accounted_for_and_released_masks_are_in_range(
    tiny_consortium, prepare, tmp_path
):
    data, _ = tiny_consortium
    prepare(data / "site-1", tmp_path / "state", 32)
    site = SiteSettings(str(data / "site-1"), str(tmp_path / "state"), "site-1", val_fraction=0.5)
    run = RunSettings.from_config({**BASE, "synth-draw-factor": 3})
    result = synthesize_round(site, run, server_round=1)
    g = result.gate
    assert g["generated"] == g["implausible"] + g["dropped"] + g["released"] + g["surplus"]
    assert g["released"] == len(result.images) == len(result.masks) <= 6
    assert 6 <= g["generated"] <= 18
    if g["released"] < 6:  # it kept drawing until the budget was spent
        assert g["generated"] == 18
    check = g["mask_check"]
    assert check["quantile"] == 0.05 and sum(check["outside"].values()) == g["implausible"]
    counts, foreground = structures_and_foreground(result.masks)
    lo, hi = check["structures"]
    assert np.all((counts >= lo) & (counts <= hi))
    f_lo, f_hi = check["foreground"]
    assert np.all((foreground >= f_lo - 1e-5) & (foreground <= f_hi + 1e-5))


def test_without_the_mask_check_one_draw_goes_to_the_gate(tiny_consortium, prepare, tmp_path):
    data, _ = tiny_consortium
    prepare(data / "site-1", tmp_path / "state", 32)
    site = SiteSettings(str(data / "site-1"), str(tmp_path / "state"), "site-1", val_fraction=0.5)
    run = RunSettings.from_config({**BASE, "synth-mask-quantile": 0.0, "synth-draw-factor": 1})
    g = synthesize_round(site, run, server_round=1).gate
    assert g["generated"] == 6 and g["implausible"] == 0 and g["mask_check"] is None
    assert g["released"] + g["dropped"] == 6 and g["draws"] == 1
