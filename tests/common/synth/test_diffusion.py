"""The site diffusion model: shapes, determinism by seed, training, save/load, DP."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from common.errors import ConfigError
from common.synth import diffusion
from common.synth.diffusion import DiffusionSettings

TINY = DiffusionSettings.named("tiny")


def _pairs(n=6, size=24, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.random((n, size, size)).astype(np.float32)
    masks = (rng.random((n, size, size)) > 0.8).astype(np.uint8)
    return images, masks


def test_model_denoises_image_and_mask_channels_together():
    import torch

    model = diffusion.create_model(TINY)
    x = torch.randn(3, 2, TINY.image_size, TINY.image_size)
    assert model(x, torch.tensor([0, 10, 999])).sample.shape == x.shape


def test_model_space_round_trip_keeps_masks_binary():
    images, masks = _pairs(size=32)
    x = diffusion.to_model_space(images, masks, 16)
    assert x.shape == (6, 2, 16, 16) and x.min() >= -1 and x.max() <= 1
    assert set(np.unique(x[:, 1])) <= {-1.0, 1.0}
    back_images, back_masks = diffusion.from_model_space(
        diffusion.to_model_space(images, masks, 32)
    )
    assert np.allclose(back_images[:, 0], images, atol=1e-6) and np.array_equal(back_masks, masks)


@pytest.mark.parametrize("solver", ["dpm++", "ddpm"])
def test_sampling_is_deterministic_by_seed(solver):
    model = diffusion.create_model(TINY)
    steps = 3 if solver == "dpm++" else 5
    a = diffusion.sample(model, TINY, n=3, seed=7, steps=steps, solver=solver)
    b = diffusion.sample(model, TINY, n=3, seed=7, steps=steps, solver=solver)
    c = diffusion.sample(model, TINY, n=3, seed=8, steps=steps, solver=solver)
    assert a[0].shape == (3, 1, 16, 16) and a[1].dtype == np.uint8
    assert 0 <= a[0].min() and a[0].max() <= 1
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_training_reduces_the_denoising_loss_and_saves(tmp_path):
    import torch

    images, masks = _pairs(n=8, size=16)
    settings = DiffusionSettings.named("tiny", train_steps=60, learning_rate=3e-3)
    model = diffusion.create_model(settings)
    before = [p.detach().clone() for p in model.parameters()]
    ema, stats = diffusion.train_diffusion(model, images, masks, settings)
    assert stats.steps == 60 and stats.images_seen == 60 * 4
    assert stats.final_loss < 0.9  # starts near 1 (predicting unit-variance noise)
    changed = [not torch.equal(a, b) for a, b in zip(before, model.parameters())]
    assert all(changed)
    ema_differs = any(not torch.equal(e, p) for e, p in zip(ema.parameters(), model.parameters()))
    assert ema_differs  # the EMA lags the trained weights
    path = diffusion.save(tmp_path / "m.pt", ema, settings, {"fingerprint": "x"})
    loaded, loaded_settings, meta = diffusion.load(path)
    assert loaded_settings == settings and meta == {"fingerprint": "x"}
    a = diffusion.sample(ema, settings, 2, seed=1, steps=2)
    b = diffusion.sample(loaded, settings, 2, seed=1, steps=2)
    assert np.array_equal(a[0], b[0])


def test_dp_training_goes_through_opacus(tmp_path):
    from opacus.validators import ModuleValidator

    from common.privacy.accountant import MechanismStep
    from common.privacy.dp import RoundPlan

    images, masks = _pairs(n=8, size=16)
    model = diffusion.create_model(TINY)
    assert ModuleValidator.validate(model, strict=False) == []  # no BatchNorm
    plan = RoundPlan(MechanismStep(1.0, 0.5, 3), 1.0, 4, "rdp", 1e-5, max_physical_batch=2)
    ema, stats = diffusion.train_diffusion(model, images, masks, TINY, dp=plan)
    assert stats.steps == 3  # the plan's logical steps, not settings.train_steps
    assert not any(m._forward_hooks for m in model.modules())  # Opacus's hooks are gone
    # a time budget stops DP-SGD short of its plan too, and says how far it got
    plan = RoundPlan(MechanismStep(1.0, 0.5, 10_000), 1.0, 4, "rdp", 1e-5, max_physical_batch=2)
    settings = replace(TINY, train_minutes=1e-4)
    _, stats = diffusion.train_diffusion(model, images, masks, settings, dp=plan)
    assert 1 <= stats.steps < stats.planned_steps == 10_000 and stats.out_of_time
    assert not any(m._forward_hooks for m in model.modules())


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"channels": (8, 12)}, "multiples of 8"),
        ({"image_size": 6}, "synth-image-size"),
        ({"schedule": "sigmoid"}, "schedule"),
        ({"ema_decay": 1.0}, "EMA"),
    ],
)
def test_bad_settings_name_the_value(overrides, match):
    from dataclasses import replace

    with pytest.raises(ConfigError, match=match):
        replace(TINY, **overrides)


def test_unknown_config_names_the_choices():
    with pytest.raises(ConfigError, match="cpu"):
        DiffusionSettings.named("huge")


def test_a_block_denoiser_keeps_the_image_size_and_trains():
    import torch

    settings = replace(TINY, image_size=32, patch=2, image_channels=3)
    model = diffusion.create_model(settings)
    x = torch.zeros((2, 4, 32, 32))
    assert model(x, torch.tensor([0, 999])).sample.shape == x.shape
    rng = np.random.default_rng(0)
    images = rng.random((6, 3, 32, 32)).astype(np.float32)
    masks = (rng.random((6, 32, 32)) > 0.5).astype(np.uint8)
    ema, stats = diffusion.train_diffusion(model, images, masks, settings)
    assert stats.steps == settings.train_steps
    out, out_masks = diffusion.sample(ema, settings, 2, seed=0, steps=2)
    assert out.shape == (2, 3, 32, 32) and out_masks.shape == (2, 32, 32)
    with pytest.raises(ConfigError, match="at least 32 for 2 UNet levels on 4-pixel blocks"):
        replace(TINY, image_size=24, patch=4)


def test_a_time_budget_stops_training_short_of_its_steps_and_says_so():
    images, masks = _pairs(n=8, size=16)
    settings = replace(TINY, train_steps=1_000_000, train_minutes=1e-4)  # 6 ms
    _, stats = diffusion.train_diffusion(diffusion.create_model(settings), images, masks, settings)
    assert 1 <= stats.steps < settings.train_steps == stats.planned_steps
    assert stats.out_of_time
    _, stats = diffusion.train_diffusion(diffusion.create_model(TINY), images, masks, TINY)
    assert stats.steps == stats.planned_steps == TINY.train_steps and not stats.out_of_time
    with pytest.raises(ConfigError, match="synth-train-minutes must be >= 0"):
        replace(TINY, train_minutes=-1)


def test_the_run_config_overrides_the_configurations_time_budget():
    from common.config import RunSettings

    assert RunSettings(synth_config="cpu-128").diffusion_settings().train_minutes == 14
    assert RunSettings(synth_config="cpu").diffusion_settings().train_minutes == 0
    run = RunSettings(synth_config="cpu-128", synth_train_minutes=2.5)
    assert run.diffusion_settings().train_minutes == 2.5
    run = RunSettings(synth_config="cpu-128", synth_train_minutes=0)
    assert run.diffusion_settings().train_minutes == 0  # no budget: every step
    with pytest.raises(ConfigError, match="synth-train-minutes must be -1"):
        RunSettings(synth_config="cpu-128", synth_train_minutes=-2)
