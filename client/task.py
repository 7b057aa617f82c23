"""What a hospital does in a round: load its cached data, train, validate.

Plain functions over plain types; :mod:`client.client_app` turns Flower messages into
calls to these and their results back into messages. Heavy libraries (torch, MONAI) are
imported here, inside the functions, so the ClientApp process only pays for them when a
message actually needs them (this module is imported inside the handlers).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from common.config import RunSettings, SiteSettings
from common.data.arrays import SiteArrays
from common.data.prepared import load_prepared
from common.errors import IntakeError
from common.privacy.dp import charge

logger = logging.getLogger(__name__)


Weights = dict[str, np.ndarray]


def _model(run: RunSettings, weights: Weights, in_channels: int):
    from common.seg.networks import create_network

    model = create_network(run.network, in_channels)
    model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in weights.items()})
    return model


@dataclass
class RoundResult:
    """A site's training outcome: weights, and the few numbers it may disclose."""

    weights: Weights
    num_examples: int
    train_loss: float
    val_dice: float
    val_examples: int
    train_seconds: float
    dp: dict | None = None  # mechanism, parameters and ε, for the ledger; None without DP


class Declined(Exception):
    """The site cannot take part in this round; the message says why (no PHI)."""


def load_site(site: SiteSettings, run: RunSettings) -> tuple[SiteArrays, SiteArrays]:
    """The site's (train, validation) arrays from the cache ``fedsynth site prepare`` made,
    with the run's ``channels`` and its ``label-fusion`` applied where a second annotator
    exists (``channels=auto``, when no server resolved it: the data's own channels).

    Training never de-identifies: without a prepared cache the site declines.

    Raises:
        Declined: when the site has not been prepared at the run's image size, or holds no
            usable case.
    """
    try:
        arrays, meta = load_prepared(site.data_dir, site.state_dir, run.image_size)
    except IntakeError as exc:
        raise Declined(f"site data unavailable: {exc}") from None
    if len(arrays) == 0:
        c = meta.get("counts", {})
        raise Declined(
            f"no usable cases ({c.get('rejected', 0)} files rejected, "
            f"{c.get('quarantined', 0)} quarantined; see intake_report.json in the site's "
            "state dir)"
        )
    arrays = arrays.with_channels(run.channels)
    if run.label_fusion != "first":
        from common.seg.label_fusion import fuse_arrays

        arrays = fuse_arrays(arrays, run.label_fusion)
    return arrays.split(site.val_fraction, seed=run.seed)


def site_seed(site: SiteSettings) -> int:
    """A stable per-site seed offset (so sites do not augment in lockstep)."""
    return int(hashlib.sha256(site.site_name.encode()).hexdigest()[:6], 16)


def train_round(
    site: SiteSettings,
    run: RunSettings,
    weights: Weights,
    server_round: int,
    proximal_mu: float = 0.0,
    received: dict | None = None,
) -> RoundResult:
    """Load the global weights, train locally, validate locally.

    Args:
        site: this hospital's settings.
        run: the consortium's run settings.
        weights: global model weights by parameter name (numpy arrays).
        server_round: the round number (seeds the augmentation).
        proximal_mu: FedProx proximal weight sent by the server (0: plain local SGD).
        received: under ``share=exchange``, the other sites' synthetic pairs
            (``{"images", "masks", "sites", "counts"}``): trained on with the site's own
            training split, each pair a unit of its own (none is this site's patient);
            validation stays on real cases only.

    Returns:
        :class:`RoundResult` with the new weights.
    """
    from common.seg.training import evaluate, train

    dp = run.dp_settings(site)
    if dp.budget and not dp.enabled:
        raise Declined(
            f"this site has a privacy budget (max-epsilon={dp.budget:g}) and trains only "
            f"with local differential privacy (dp=local), but the run has dp={dp.mode}"
            + (
                ": under central DP the coordinator sees the update before adding noise"
                if dp.mode == "central"
                else ""
            )
        )
    if not site.share_weights:
        raise Declined(
            "this site shares synthetic pairs only (node_config share-weights=false): "
            "it trains no weights and takes part through its gated releases"
        )
    train_data, val_data = load_site(site, run)
    real_patients = train_data.patients
    if received is not None and len(received["images"]):
        train_data = with_received(train_data, received, run)
    settings = run.train_settings(server_round, site_seed(site), proximal_mu)
    plan = accountant = None
    if dp.enabled:
        # the privacy unit is the patient: the accountant counts the site's patients
        plan, accountant = _check_budget(site, dp, train_data.patients, settings)
    model = _model(run, weights, train_data.channels)
    stats = train(model, train_data, settings, dp=plan)
    dp_record = None
    if plan is not None:
        dp_record = charge(
            plan,
            accountant,
            site.state_dir,
            stats.steps,
            dp.budget,
            unit="patient",
            patients=real_patients,  # received pairs are units too, but nobody's patient
            # the global model's start, as the run config names it: a warm start spends
            # no site's privacy, and the auditor sees where the fine-tuning began
            warm_start=Path(run.warm_start).name if run.warm_start else "none",
        )
    # Under DP only what the mechanism covers leaves: the weights. Loss and validation
    # Dice are computed from the data without noise, so they stay at the site.
    val_dice = float("nan")
    if plan is None and len(val_data):
        val_dice = evaluate(model, val_data)["overall"]["dice"]
    return RoundResult(
        weights={k: v.detach().numpy() for k, v in model.state_dict().items()},
        num_examples=stats.examples,
        train_loss=stats.loss if plan is None else float("nan"),
        val_dice=val_dice,
        val_examples=len(val_data),
        train_seconds=stats.seconds,
        dp=dp_record,
    )


def with_received(train_data: SiteArrays, received: dict, run: RunSettings) -> SiteArrays:
    """The site's training split plus received synthetic pairs, at its size and channels."""
    from common.synth.pairs import as_site_arrays

    images, masks = received["images"], received["masks"]
    sites, counts = received.get("sites") or ["received"], received.get("counts") or [len(images)]
    bounds = np.cumsum([0, *counts])
    releases = {s: (images[a:b], masks[a:b]) for s, a, b in zip(sites, bounds, bounds[1:])}
    mode = {1: "grey", 3: "rgb"}[train_data.channels]
    pairs = as_site_arrays(releases, train_data.images.shape[-1], mode)
    logger.info("training on %d real and %d received synthetic pairs", len(train_data), len(pairs))
    return SiteArrays.concat([train_data, pairs])


def _check_budget(site: SiteSettings, dp, n_train: int, settings):
    """Plan the DP round and decline it if it would take the site over its budget."""
    from common.errors import ConfigError
    from common.privacy.accountant import SiteAccountant
    from common.privacy.dp import plan_round

    if settings.proximal_mu > 0:
        raise Declined("DP-SGD cannot clip FedProx's proximal term: run with fedavg or fedadam")
    try:
        plan = plan_round(dp, n_train, settings.batch_size, settings.epochs, site.state_dir)
        accountant = SiteAccountant.load(site.state_dir, dp.accountant)
    except ConfigError as exc:
        raise Declined(str(exc)) from None
    spent = accountant.epsilon(dp.delta)
    after = accountant.epsilon_after(plan.step, dp.delta)
    if dp.budget and after > dp.budget:
        raise Declined(
            f"privacy budget: this round would bring the site's epsilon from {spent:.2f} to "
            f"{after:.2f}, over its max-epsilon={dp.budget:g} (delta={dp.delta:g}); "
            "the site takes no further part"
        )
    return plan, accountant


def evaluate_round(site: SiteSettings, run: RunSettings, weights: Weights) -> tuple[float, int]:
    """Dice of the global weights on the site's local validation split.

    Returns:
        ``(dice, number of validation cases)``.
    """
    from common.seg.training import evaluate

    _, val_data = load_site(site, run)
    if len(val_data) == 0:
        raise Declined("no local validation cases (fewer than 5 usable cases)")
    model = _model(run, weights, val_data.channels)
    return evaluate(model, val_data)["overall"]["dice"], len(val_data)
