"""A release draws until synth-n pairs pass the mask check and the memorisation gate, or
until its draw budget is spent, and accounts for every pair it drew."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from client.synthesis import draw_release, synthesize_round
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
    assert sum(check["quotas"]) == 6 and sum(check["filled"]) == g["released"]
    counts, foreground = structures_and_foreground(result.masks)
    lo, hi = check["structures"]
    assert np.all((counts >= lo) & (counts <= hi))
    for (a, b), quota, filled in zip(check["bins"], check["quotas"], check["filled"]):
        assert int(((counts >= a) & (counts <= b)).sum()) == filled <= quota
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


def _disc(cy: int, cx: int, r: int = 4, size: int = 32) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(np.uint8)


ONE, TWO = _disc(16, 16, 6), np.maximum(_disc(8, 8), _disc(24, 24))


def test_a_release_keeps_the_sites_mix_of_structure_counts():
    """A generator that draws two structures three times in four, at a site where one
    mask in five has two: the release keeps the site's four to one, drawing more for it."""
    rng = np.random.default_rng(0)
    train = SimpleNamespace(
        images=rng.random((50, 1, 32, 32), np.float32), masks=np.stack([ONE] * 40 + [TWO] * 10)
    )
    val = SimpleNamespace(images=rng.random((10, 1, 32, 32), np.float32))
    asked = []

    def draw(n: int, seed: int):
        asked.append(n)
        masks = np.stack([ONE if (seed + i) % 4 == 0 else TWO for i in range(n)])
        return np.random.default_rng(1000 + seed).random((n, 1, 32, 32), np.float32), masks

    run = RunSettings.from_config(
        {"synth-n": 20, "synth-draw-factor": 8, "synth-gate-quantile": 0.0}
    )
    images, masks, g = draw_release(draw, run, 0, train, val)
    assert g["mask_check"]["quotas"] == [16, 4]
    assert len(images) == len(masks) == g["released"] == 20
    counts = [int(((m == ONE).all(), (m == TWO).all()) == (False, True)) + 1 for m in masks]
    assert counts.count(1) == 16 and counts.count(2) == 4
    assert g["generated"] == sum(asked) > 20 and g["draws"] == len(asked) >= 2
    assert g["generated"] == g["implausible"] + g["dropped"] + g["released"] + g["surplus"]
    assert g["surplus"] >= 20 - 5  # the first draw alone held 15 two-structure masks


def test_with_size_bins_a_generator_of_large_masks_releases_the_real_mix_or_fewer():
    """A generator that draws a small polyp once in ten, at a site where half are small:
    the release keeps half small, and comes out smaller when the budget runs out first."""
    rng = np.random.default_rng(0)
    small, large = _disc(16, 16, 3), _disc(16, 16, 8)
    train = SimpleNamespace(
        images=rng.random((40, 1, 32, 32), np.float32),
        masks=np.stack([small] * 20 + [large] * 20),
    )
    val = SimpleNamespace(images=rng.random((10, 1, 32, 32), np.float32))

    def draw(n: int, seed: int):
        masks = np.stack([small if (seed * 7 + i) % 10 == 0 else large for i in range(n)])
        return np.random.default_rng(1000 + seed).random((n, 1, 32, 32), np.float32), masks

    def release(factor: int):
        run = RunSettings.from_config(
            {
                "synth-n": 10,
                "synth-draw-factor": factor,
                "synth-gate-quantile": 0.0,
                "synth-mask-size-bins": 2,
            }
        )
        return draw_release(draw, run, 0, train, val)

    _, masks, g = release(20)  # budget enough for 5 small masks
    assert g["mask_check"]["quotas"] == [5, 5] and g["mask_check"]["filled"] == [5, 5]
    assert [int(m.sum() == small.sum()) for m in masks].count(1) == 5
    _, masks, g = release(2)  # 20 draws: about 2 small ones
    assert g["generated"] == 20 and g["mask_check"]["filled"][1] == 5
    assert len(masks) == g["released"] == 5 + g["mask_check"]["filled"][0] < 10
    assert g["generated"] == g["implausible"] + g["dropped"] + g["released"] + g["surplus"]
