"""Local differential privacy for a site's training: settings, the round's plan, Opacus.

A round of DP-SGD at a site is planned before it runs (:func:`plan_round`): Poisson
sampling rate ``q = 1 / ceil(n / batch)``, ``epochs / q`` steps, and a noise multiplier,
either given or calibrated so that the run's ``num-server-rounds`` rounds together
spend the consortium's target ε. The plan is what the site's budget check and its
privacy ledger record; :func:`make_private` turns a model, optimiser and loader into
their Opacus counterparts with exactly that plan.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from common.errors import ConfigError
from common.privacy.accountant import ACCOUNTANTS, MechanismStep, noise_for_epsilon

MODES = ("off", "local", "central")


@dataclass(frozen=True)
class DPSettings:
    """DP-SGD settings for one site (consortium defaults, site overrides applied).

    Args:
        mode: ``"off"``, ``"local"`` (DP-SGD at every site) or ``"central"`` (the
            server clips each site's update and adds noise: :mod:`server.central_dp`).
        epsilon: target ε for the whole run, used to calibrate the noise when
            ``noise_multiplier`` is 0.
        delta: δ.
        noise_multiplier: fixed noise multiplier (0: calibrate from ``epsilon``).
        max_grad_norm: per-sample clipping norm C.
        accountant: ``"prv"`` or ``"rdp"``.
        max_physical_batch: largest batch put through the network at once (Opacus's
            BatchMemoryManager splits larger logical batches).
        rounds: rounds the target ε is spread over (the run's num-server-rounds).
        budget: the site's maximum cumulative ε (0: no budget).
    """

    mode: str = "off"
    epsilon: float = 10.0
    delta: float = 1e-5
    noise_multiplier: float = 0.0
    max_grad_norm: float = 1.0
    accountant: str = "prv"
    max_physical_batch: int = 8
    rounds: int = 1
    budget: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"dp must be one of {MODES}, got {self.mode!r}")
        if self.accountant not in ACCOUNTANTS:
            raise ConfigError(
                f"dp-accountant must be one of {ACCOUNTANTS}, got {self.accountant!r}"
            )
        if not 0 < self.delta < 1:
            raise ConfigError(f"dp-delta must be in (0, 1), got {self.delta}")
        if self.noise_multiplier < 0 or not self.max_grad_norm > 0:
            raise ConfigError(
                "dp-noise-multiplier must be >= 0 and dp-max-grad-norm > 0, got "
                f"{self.noise_multiplier} and {self.max_grad_norm}"
            )
        if self.budget < 0:
            raise ConfigError(f"max-epsilon must be >= 0 (0: no budget), got {self.budget}")

    @property
    def enabled(self) -> bool:
        """Whether the site trains with DP-SGD (local DP)."""
        return self.mode == "local"


@dataclass(frozen=True)
class RoundPlan:
    """What one DP-SGD round at a site will do (recorded in the ledger)."""

    step: MechanismStep
    max_grad_norm: float
    batch_size: int
    accountant: str
    delta: float
    max_physical_batch: int = 8


def calibrated_noise(settings: DPSettings, q: float, steps: int, state_dir: Path | None) -> float:
    """Noise for ``settings.epsilon`` over the run (``steps`` a round, ``settings.rounds``
    rounds); cached in ``STATE/privacy/noise_cache.json``, as calibration takes seconds."""
    total = steps * settings.rounds
    key = f"{settings.epsilon}|{settings.delta}|{q:.10f}|{total}|{settings.accountant}"
    cache = state_dir / "privacy" / "noise_cache.json" if state_dir else None
    known = json.loads(cache.read_text()) if cache and cache.exists() else {}
    if key not in known:
        known[key] = noise_for_epsilon(
            settings.epsilon, settings.delta, q, total, settings.accountant
        )
        if cache:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(known, indent=1))
    return float(known[key])


def plan_round(
    settings: DPSettings, n_train: int, batch_size: int, epochs: int, state_dir=None
) -> RoundPlan:
    """The round's sampling rate, steps and noise.

    Args:
        settings: the site's DP settings (enabled).
        n_train: privacy units at the site: its training patients (a patient's images are
            sampled and clipped together, see :func:`common.seg.training.train`).
        batch_size: expected (logical) batch size.
        epochs: local epochs in the round.
        state_dir: where to cache the noise calibration (optional).
    """
    if n_train < 1:
        raise ConfigError("DP-SGD needs at least one training case")
    batches = math.ceil(n_train / batch_size)
    q = 1.0 / batches  # what Opacus's DPDataLoader uses for a loader of that length
    steps = epochs * batches
    noise = settings.noise_multiplier or calibrated_noise(
        settings, q, steps, Path(state_dir) if state_dir else None
    )
    return RoundPlan(
        step=MechanismStep(noise_multiplier=noise, sample_rate=q, steps=steps),
        max_grad_norm=settings.max_grad_norm,
        batch_size=batch_size,
        accountant=settings.accountant,
        delta=settings.delta,
        max_physical_batch=settings.max_physical_batch,
    )


def make_private(model, optimiser, loader, plan: RoundPlan):
    """Opacus's DP-SGD for ``plan``: per-sample clipping, Gaussian noise, Poisson batches.

    Args:
        model: a network without BatchNorm (checked with Opacus's ModuleValidator).
        optimiser: its optimiser.
        loader: a ``DataLoader`` whose ``len`` is the number of batches per epoch.
        plan: from :func:`plan_round`.

    Returns:
        ``(private_model, private_optimiser, poisson_loader)``; ``model`` itself is
        trained in place through ``private_model``. Call ``private_model.remove_hooks()``
        when done.
    """
    from opacus import PrivacyEngine
    from opacus.validators import ModuleValidator

    from common.privacy import grad_samplers

    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        raise ConfigError(f"network is not DP-compatible: {errors[0]}")
    grad_samplers.register()
    engine = PrivacyEngine(accountant=plan.accountant)  # its accountant is not used:
    # ε is kept by the site's SiteAccountant, which outlives this round.
    return engine.make_private(
        module=model,
        optimizer=optimiser,
        data_loader=loader,
        noise_multiplier=plan.step.noise_multiplier,
        max_grad_norm=plan.max_grad_norm,
        poisson_sampling=True,
    )


def physical_batches(loader, optimiser, plan: RoundPlan | None):
    """The loader, split into physical batches of at most ``plan.max_physical_batch``
    (Opacus's BatchMemoryManager; Poisson batches can be large); the loader itself
    without a plan."""
    if plan is None:
        yield from loader
        return
    from opacus.utils.batch_memory_manager import BatchMemoryManager

    with BatchMemoryManager(
        data_loader=loader, max_physical_batch_size=plan.max_physical_batch, optimizer=optimiser
    ) as physical:
        yield from physical


def charge(
    plan: RoundPlan, accountant, state_dir: Path, steps_taken: int, budget: float, **about
) -> dict:
    """Charge a round's DP-SGD to the site's accountant, and describe it for the ledger.

    The accountant is saved at once: the budget is spent from now on, whatever happens
    to the reply.

    Args:
        plan: the round's plan (:func:`plan_round`).
        accountant: the site's :class:`~common.privacy.accountant.SiteAccountant`.
        state_dir: where the site keeps it.
        steps_taken: the optimiser steps that really ran.
        budget: the site's ε budget (0: none).
        about: more fields for the record (e.g. ``model="diffusion"``), after ``mechanism``.

    Returns:
        The ledger's record: mechanism, noise, sampling, steps, accountant, δ, the round's
        ε and the total so far, the budget.
    """
    before = accountant.epsilon(plan.delta)
    accountant.record(plan.step)
    accountant.save(state_dir)
    total = accountant.epsilon(plan.delta)
    return {
        "mechanism": "dp-sgd",
        **about,
        "noise_multiplier": plan.step.noise_multiplier,
        "sample_rate": plan.step.sample_rate,
        "steps": plan.step.steps,
        "steps_taken": steps_taken,
        "max_grad_norm": plan.max_grad_norm,
        "accountant": plan.accountant,
        "delta": plan.delta,
        "epsilon_round": total - before,
        "epsilon_total": total,
        "budget": budget or None,
    }
