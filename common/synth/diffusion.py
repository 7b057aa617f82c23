"""A site's diffusion model over image + mask: configuration, DDPM training, sampling.

One diffusers ``UNet2DModel`` denoises the image's channels (1 grey, 3 colour) and its
mask together (Saragih et al., IJCARS 2024), so every generated image comes with its label. Training
is DDPM's: add noise at a random timestep, predict the noise, mean squared error; the
weights used for sampling are an exponential moving average (EMA) of the trained ones.
Sampling starts from pure noise and runs DPM-Solver++ (about 20 steps) or plain DDPM
(1000 steps); the mask is the generated mask channel thresholded at 0.

Everything is in ``[-1, 1]`` inside the model: image ``2x - 1`` and mask ``±1``.
With a :class:`common.privacy.dp.RoundPlan` the training runs as DP-SGD (Opacus), exactly
like the segmentation network's.

Example:
    >>> s = DiffusionSettings.named("tiny")
    >>> model = create_model(s)
    >>> images, masks = sample(model, s, n=2, seed=0, steps=2)
    >>> images.shape, masks.shape, str(masks.dtype)
    ((2, 1, 16, 16), (2, 16, 16), 'uint8')
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from common.errors import ConfigError
from common.privacy.dp import physical_batches

SOLVERS = ("dpm++", "ddpm")
SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2"}
PREDICTIONS = ("epsilon", "sample", "v_prediction")


@dataclass(frozen=True)
class DiffusionSettings:
    """Architecture and training of a site's diffusion model.

    Args:
        image_size: side of the generated square images (pixels).
        channels: UNet block widths, one per resolution level.
        layers_per_block: ResNet layers per UNet block.
        attention: self-attention in the lowest-resolution block.
        train_steps: optimiser steps of DDPM training.
        train_minutes: a wall-clock budget for training (0: none): training stops after
            the step that passes it, even short of ``train_steps``, so a site's generator
            costs at most this on a slower or busier machine (the steps done are recorded;
            under DP the accountant still charges the planned steps, an upper bound, and
            the ledger records both).
        batch_size: images per step.
        learning_rate: AdamW learning rate.
        ema_decay: EMA decay of the sampling weights.
        timesteps: diffusion timesteps of the noise schedule (DDPM: 1000).
        schedule: ``"linear"`` (DDPM's betas) or ``"cosine"``.
        prediction: what the network predicts: ``"epsilon"`` (the noise), ``"sample"``
            (the clean pair) or ``"v_prediction"``.
        sample_steps: DPM-Solver++ steps when sampling.
        seed: seeds initial weights, batches and noise.
        image_channels: the image's channels (1 or 3); the model denoises these plus
            the mask's.
        patch: the UNet works on ``patch x patch`` pixel blocks folded into channels
            (:mod:`common.synth.patching`): 2 runs a 128-pixel model at the cost of a
            64-pixel one.
    """

    image_size: int = 64
    channels: tuple[int, ...] = (16, 32, 64, 64)
    layers_per_block: int = 1
    attention: bool = False
    train_steps: int = 1200
    train_minutes: float = 0.0
    batch_size: int = 16
    learning_rate: float = 1e-3
    ema_decay: float = 0.995
    timesteps: int = 1000
    schedule: str = "cosine"
    prediction: str = "sample"
    sample_steps: int = 20
    seed: int = 0
    image_channels: int = 1
    patch: int = 1

    def __post_init__(self) -> None:
        if self.image_channels not in (1, 3):
            raise ConfigError(f"diffusion image channels must be 1 or 3, got {self.image_channels}")
        levels = len(self.channels)
        if levels < 2 or any(c < 8 or c % 8 for c in self.channels):
            raise ConfigError(
                f"diffusion channels must be >= 2 multiples of 8, got {self.channels}"
            )
        if self.patch not in (1, 2, 4):
            raise ConfigError(f"diffusion patch must be 1, 2 or 4 pixels, got {self.patch}")
        unit = 2 ** (levels - 1) * self.patch
        if self.image_size % unit or self.image_size < unit * 4:
            raise ConfigError(
                f"synth-image-size must be a multiple of {unit} and at least {unit * 4} "
                f"for {levels} UNet levels on {self.patch}-pixel blocks, got {self.image_size}"
            )
        if self.train_steps < 1 or self.batch_size < 1 or self.sample_steps < 1:
            raise ConfigError(
                "synth train steps, batch size and sample steps must be >= 1, got "
                f"{self.train_steps}, {self.batch_size}, {self.sample_steps}"
            )
        if not self.train_minutes >= 0:
            raise ConfigError(
                f"synth-train-minutes must be >= 0 (0: no time budget), got {self.train_minutes}"
            )
        if self.schedule not in SCHEDULES or self.prediction not in PREDICTIONS:
            raise ConfigError(
                f"diffusion schedule must be one of {sorted(SCHEDULES)} and prediction one of "
                f"{PREDICTIONS}, got {self.schedule!r} and {self.prediction!r}"
            )
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"EMA decay must be in [0, 1), got {self.ema_decay}")

    @classmethod
    def named(cls, name: str, **overrides) -> DiffusionSettings:
        """A configuration from :data:`CONFIGS` with ``overrides`` (0 or None: keep)."""
        try:
            base = CONFIGS[name]
        except KeyError:
            raise ConfigError(
                f"unknown synth-config {name!r}; choose one of {sorted(CONFIGS)}"
            ) from None
        return replace(base, **{k: v for k, v in overrides.items() if v})

    def to_json(self) -> dict:
        """JSON-ready settings (channels as a list)."""
        return {**asdict(self), "channels": list(self.channels)}


CONFIGS: dict[str, DiffusionSettings] = {
    # CPU: 1.0 M parameters, 64x64, about 4 minutes of training on 2 cores.
    "cpu": DiffusionSettings(),
    # CPU, real images at 128x128 (colour or grey): the UNet on 4x4 pixel blocks, 6.0 M
    # parameters, about 0.37 s a step of 16 on 2 cores: 2000 steps in about 12 minutes,
    # and never more than 14 (a site's generator within 15 minutes on a busier machine).
    # Chosen by bench/generator.py on Kvasir-SEG: after 219 s (585 steps) two-sample
    # accuracy 0.92 and synthetic-only Dice 0.84x real, as good as the UNet on 2x2 blocks
    # after 538 s (0.93, 0.83x) and a five-level UNet on pixels after 411 s (0.97, 0.63x).
    "cpu-128": DiffusionSettings(
        image_size=128,
        channels=(64, 128, 128, 128),
        patch=4,
        train_steps=2000,
        train_minutes=14.0,
    ),
    # GPU: 128x128, wider, attention at the bottom, many more steps (trains on CUDA when
    # torch sees a GPU; not measured here: no GPU is lent to this project's machines).
    "gpu": DiffusionSettings(
        image_size=128,
        channels=(64, 128, 256, 256),
        layers_per_block=2,
        attention=True,
        train_steps=30_000,
        batch_size=32,
        learning_rate=2e-4,
        ema_decay=0.9999,
    ),
    # Tests: seconds.
    "tiny": DiffusionSettings(
        image_size=16, channels=(8, 16), train_steps=4, batch_size=4, sample_steps=2
    ),
}


def create_model(settings: DiffusionSettings):
    """The denoiser: a diffusers ``UNet2DModel`` over image channels + 1 mask channel.

    Group normalisation only (no BatchNorm), so DP-SGD can train it.
    """
    import torch
    from diffusers import UNet2DModel

    levels = len(settings.channels)
    down = ["DownBlock2D"] * levels
    up = ["UpBlock2D"] * levels
    if settings.attention:
        down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
    torch.manual_seed(settings.seed)
    pair = (settings.image_channels + 1) * settings.patch**2
    unet = UNet2DModel(
        sample_size=settings.image_size // settings.patch,
        in_channels=pair,
        out_channels=pair,
        block_out_channels=tuple(settings.channels),
        layers_per_block=settings.layers_per_block,
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        norm_num_groups=8,
    )
    if settings.patch == 1:
        return unet
    from common.synth.patching import BlockDenoiser

    return BlockDenoiser(unet, settings.patch)


def _schedule(settings: DiffusionSettings, solver: str = "ddpm"):
    from diffusers import DDPMScheduler, DPMSolverMultistepScheduler

    common = {
        "num_train_timesteps": settings.timesteps,
        "beta_schedule": SCHEDULES[settings.schedule],
        "prediction_type": settings.prediction,
    }
    if solver == "ddpm":
        return DDPMScheduler(**common)
    if solver == "dpm++":
        # "leading" spacing starts at t = 940, not 999: the cosine schedule's alpha is
        # nearly 0 at its last timesteps, and a first solver step from there divides the
        # model's error by it (measured: DPM-Solver++ from t = 999 returned noise).
        return DPMSolverMultistepScheduler(
            **common, algorithm_type="dpmsolver++", solver_order=2, timestep_spacing="leading"
        )
    raise ConfigError(f"unknown sampler {solver!r}; choose one of {SOLVERS}")


def to_model_space(images: np.ndarray, masks: np.ndarray, size: int) -> np.ndarray:
    """``(N, C + 1, size, size)`` float32 in ``[-1, 1]``: image channels, then the mask.

    Args:
        images: ``(N, C, S, S)`` (or ``(N, S, S)``) in ``[0, 1]``.
        masks: ``(N, S, S)`` binary.
        size: the model's image size (images are resized with antialiasing, masks by
            area and re-thresholded).
    """
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(np.asarray(images, np.float32))
    x = x[:, None] if x.ndim == 3 else x
    m = torch.as_tensor(np.asarray(masks, np.float32))[:, None]
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
        m = F.interpolate(m, size=(size, size), mode="area")
    x = x.clamp(0, 1) * 2 - 1
    m = (m > 0.5).float() * 2 - 1
    return torch.cat([x, m], dim=1).numpy()


def from_model_space(x) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, C, S, S)`` in ``[0, 1]`` (float32) and masks ``(N, S, S)`` (uint8, the
    last channel > 0) from model space."""
    x = np.asarray(x, np.float32)
    return ((np.clip(x[:, :-1], -1, 1) + 1) / 2), (x[:, -1] > 0).astype(np.uint8)


@dataclass
class DiffusionStats:
    """What a training call did."""

    steps: int
    images_seen: int
    seconds: float
    final_loss: float
    planned_steps: int = 0

    @property
    def out_of_time(self) -> bool:
        """Stopped by ``train_minutes`` short of the planned steps."""
        return self.steps < self.planned_steps


class _Pairs:
    """Image+mask pairs in model space, flipped left-right at random. With ``groups``
    (each patient's pair indexes) item ``p`` is one of patient ``p``'s pairs, drawn at
    random: DP-SGD then samples patients, and a patient adds one clipped gradient a step."""

    def __init__(self, x: np.ndarray, seed: int, groups: list[np.ndarray] | None = None) -> None:
        self.x, self.rng, self.groups = x, np.random.default_rng(seed), groups

    def __len__(self) -> int:
        return len(self.x) if self.groups is None else len(self.groups)

    def __getitem__(self, i: int):
        if self.groups is not None:
            i = int(self.rng.choice(self.groups[i]))
        x = self.x[i]
        return np.ascontiguousarray(x[:, :, ::-1]) if self.rng.random() < 0.5 else x


def train_diffusion(
    model,
    images: np.ndarray,
    masks: np.ndarray,
    settings: DiffusionSettings,
    dp=None,
    progress: Callable[[int, int], None] | None = None,
    patients: list[np.ndarray] | None = None,
):
    """DDPM training of ``model`` on image+mask pairs; returns ``(ema_model, stats)``.

    Args:
        model: from :func:`create_model` (trained in place).
        images: ``(N, C, S, S)`` in ``[0, 1]``, C = ``settings.image_channels``.
        masks: ``(N, S, S)`` binary.
        settings: steps, batch size, learning rate, EMA decay, seed.
        dp: a :class:`common.privacy.dp.RoundPlan` for DP-SGD, or ``None``. Its ``steps`` replace
            ``settings.train_steps`` (the plan is what the accountant charges).
        progress: called as ``progress(step, total)`` after every step.
        patients: under DP, each patient's image indexes
            (:meth:`common.data.arrays.SiteArrays.patient_images`): the privacy unit is
            then the patient (plan ``dp`` for their count); ``None``: each image.

    Returns:
        ``(ema_model, DiffusionStats)``: the EMA copy is the one to sample from.
    """
    import torch
    from torch.utils.data import DataLoader

    if len(images) == 0:
        raise ValueError("cannot train a diffusion model on 0 images")
    given = 1 if np.ndim(images) == 3 else np.shape(images)[1]
    if given != settings.image_channels:
        raise ValueError(
            f"images have {given} channel(s), the diffusion model {settings.image_channels}: "
            "set DiffusionSettings.image_channels from the data"
        )
    torch.manual_seed(settings.seed)
    groups = patients if dp is not None else None
    data = _Pairs(to_model_space(images, masks, settings.image_size), settings.seed, groups)
    loader = DataLoader(
        data,
        batch_size=min(settings.batch_size, len(data)),
        shuffle=True,
        generator=torch.Generator().manual_seed(settings.seed),
    )
    schedule = _schedule(settings)
    device = _device()
    model.to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    net, total = model, settings.train_steps
    if dp is not None:
        from common.privacy.dp import make_private

        net, optimiser, loader = make_private(model, optimiser, loader, dp)
        total = dp.step.steps
    model.train()
    step, seen, loss_value, start = 0, 0, math.nan, time.perf_counter()
    deadline = start + settings.train_minutes * 60 if settings.train_minutes else math.inf
    try:
        while step < total and time.perf_counter() < deadline:
            for x0 in physical_batches(loader, optimiser, dp):
                optimiser.zero_grad()
                if len(x0) == 0:  # Poisson sampling drew nobody: a noise-only DP step
                    for p in net.parameters():
                        p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype, device=device)
                else:
                    x0 = torch.as_tensor(x0).to(device)
                    noise = torch.randn_like(x0)
                    t = torch.randint(0, settings.timesteps, (len(x0),)).to(device)
                    noisy = schedule.add_noise(x0, noise, t)
                    target = {
                        "epsilon": noise,
                        "sample": x0,
                        "v_prediction": schedule.get_velocity(x0, noise, t)
                        if settings.prediction == "v_prediction"
                        else None,
                    }[settings.prediction]
                    loss = torch.nn.functional.mse_loss(net(noisy, t).sample, target)
                    loss.backward()
                    loss_value, seen = float(loss.detach()), seen + len(x0)
                optimiser.step()
                if getattr(optimiser, "_is_last_step_skipped", False):
                    continue  # Opacus: only the logical batch's last physical batch steps
                step += 1
                _ema_update(ema, model, min(settings.ema_decay, (1 + step) / (10 + step)))
                if progress:
                    progress(step, total)
                if step >= total or time.perf_counter() >= deadline:
                    break
    finally:
        if net is not model:
            net.remove_hooks()
        model.to("cpu")
    stats = DiffusionStats(step, seen, time.perf_counter() - start, loss_value, total)
    return ema.to("cpu"), stats


def _device() -> str:
    """``"cuda"`` where a GPU is visible (the ``gpu`` configuration's home), else ``"cpu"``.
    Models come back on the CPU after training and sampling either way."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _ema_update(ema, model, decay: float) -> None:
    import torch

    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.mul_(decay).add_(p.detach(), alpha=1 - decay)


def sample(
    model,
    settings: DiffusionSettings,
    n: int,
    seed: int,
    steps: int | None = None,
    solver: str = "dpm++",
    batch_size: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """Generate ``n`` image+mask pairs from pure noise.

    Args:
        model: the (EMA) denoiser.
        settings: its settings (image size, schedule).
        n: pairs to generate.
        seed: the noise seed (same seed, same pairs).
        steps: solver steps (default: ``settings.sample_steps`` for DPM-Solver++,
            ``settings.timesteps`` for DDPM).
        solver: ``"dpm++"`` (DPM-Solver++, 2nd order multistep) or ``"ddpm"``.
        batch_size: pairs denoised at once.

    Returns:
        ``(images, masks)``: ``(n, C, S, S)`` float32 in ``[0, 1]`` and ``(n, S, S)``
        uint8 in ``{0, 1}``.
    """
    import torch

    steps = steps or (settings.sample_steps if solver == "dpm++" else settings.timesteps)
    generator = torch.Generator().manual_seed(seed)
    shape = (settings.image_channels + 1, settings.image_size, settings.image_size)
    device = _device()
    model.eval().to(device)
    out = []
    try:
        with torch.inference_mode():
            for start in range(0, n, batch_size):
                scheduler = _schedule(settings, solver)
                scheduler.set_timesteps(steps)
                x = torch.randn((min(batch_size, n - start), *shape), generator=generator)
                x = x.to(device) * scheduler.init_noise_sigma
                for t in scheduler.timesteps:
                    eps = model(x, t).sample
                    x = scheduler.step(eps, t, x, generator=generator).prev_sample
                out.append(x.cpu().numpy())
    finally:
        model.to("cpu")
    x = np.concatenate(out) if out else np.zeros((0, *shape), np.float32)
    return from_model_space(x)


def save(path: str | Path, model, settings: DiffusionSettings, meta: dict | None = None) -> Path:
    """Save the (EMA) model with its settings and ``meta`` (what it was trained on)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(
        {"settings": settings.to_json(), "meta": meta or {}, "state_dict": model.state_dict()},
        tmp,
    )
    tmp.replace(path)
    return path


def load(path: str | Path):
    """``(model, settings, meta)`` saved by :func:`save`."""
    import torch

    raw = torch.load(Path(path), weights_only=True)
    s = raw["settings"]
    settings = DiffusionSettings(**{**s, "channels": tuple(s["channels"])})
    model = create_model(settings)
    model.load_state_dict(raw["state_dict"])
    return model.eval(), settings, raw["meta"]
