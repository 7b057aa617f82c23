"""Typed settings, read once at the edge from Flower's run_config and node_config.

``RunSettings`` holds the consortium-wide experiment (``[tool.flwr.app.config]`` in
``pyproject.toml``, overridable with ``flwr run --run-config``); ``SiteSettings`` holds one
hospital's local facts (each SuperNode's ``--node-config``). Keys are kebab-case there
and snake_case here.

Example:
    >>> RunSettings.from_config({"num-server-rounds": 3}).num_server_rounds
    3
    >>> SiteSettings.from_config({"data-dir": "/d", "state-dir": "/s"}).site_name
    'site'
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from common.errors import ConfigError

T = TypeVar("T")

SHARE_MODES = ("weights", "synthetic", "both", "exchange")
AUGMENTATIONS = ("standard", "strong")


def _from_config(cls: type[T], config: Mapping[str, Any], what: str) -> T:
    kwargs = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        key = f.name.replace("_", "-")
        if key not in config:
            continue
        value = config[key]
        kind = {"int": int, "float": float, "str": str, "bool": bool}[str(f.type)]
        try:
            if kind is bool and isinstance(value, str):
                value = {"true": True, "false": False}[value.lower()]
            kwargs[f.name] = kind(value)
        except (KeyError, TypeError, ValueError):
            raise ConfigError(
                f"{what} key {key!r} must be {kind.__name__}, got {value!r}"
            ) from None
    return cls(**kwargs)


@dataclass(frozen=True)
class RunSettings:
    """Consortium-wide settings of one federated run (see pyproject.toml for meanings)."""

    num_server_rounds: int = 12
    strategy: str = "fedavg"
    proximal_mu: float = 0.01
    server_learning_rate: float = 0.05
    trim_beta: float = 0.2
    krum_byzantine: int = 0
    update_norm_factor: float = 10.0
    min_sites: int = 2
    round_timeout: float = 600.0
    fraction_evaluate: float = 0.0
    reply_poll_interval: float = 0.1
    local_epochs: int = 3
    batch_size: int = 4
    learning_rate: float = 0.003
    image_size: int = 128
    channels: str = "auto"
    patch_size: int = 0
    patches_per_image: int = 1
    label_fusion: str = "first"
    network: str = "unet"
    seed: int = 0
    eval_dir: str = ""
    eval_every: int = 1
    out_dir: str = "runs/latest"
    sim_data_root: str = ""
    sim_state_root: str = ""
    sim_node_config: str = ""  # JSON {"site-i": {node_config...}}: per-site settings there
    dp: str = "off"
    dp_epsilon: float = 10.0
    dp_delta: float = 1e-5
    dp_noise_multiplier: float = 0.0
    dp_max_grad_norm: float = 1.0
    dp_accountant: str = "prv"
    dp_max_physical_batch: int = 8
    dp_central_clip: float = 5.0
    registry: str = ""
    share: str = "weights"
    synth_config: str = "cpu"
    synth_train_steps: int = 0
    synth_train_minutes: float = -1.0  # -1: the synth-config's budget; 0: none
    synth_n: int = 32
    synth_every: int = 0
    synth_gate_quantile: float = 0.05
    synth_mask_quantile: float = 0.05
    synth_draw_factor: int = 4
    synth_mask_size_bins: int = 1
    server_epochs: int = 2
    augmentation: str = "standard"
    synth_patch: bool = False
    dp_trainable: str = "all"
    warm_start: str = ""
    warm_start_cases: int = 128
    warm_start_epochs: int = 12

    def __post_init__(self) -> None:
        self.dp_settings()  # fail early on bad DP settings, with their own messages
        if self.dp == "central" and not self.dp_central_clip > 0:
            raise ConfigError(f"dp-central-clip must be > 0, got {self.dp_central_clip}")
        if self.share not in SHARE_MODES:
            raise ConfigError(f"share must be one of {SHARE_MODES}, got {self.share!r}")
        if self.augmentation not in AUGMENTATIONS:
            raise ConfigError(
                f"augmentation must be one of {AUGMENTATIONS}, got {self.augmentation!r}"
            )
        if self.synth_n < 1 or self.synth_every < 0 or self.server_epochs < 0:
            raise ConfigError(
                "synth-n must be >= 1, synth-every and server-epochs >= 0; got "
                f"{self.synth_n}, {self.synth_every}, {self.server_epochs}"
            )
        if not 0 <= self.synth_mask_quantile < 0.5 or self.synth_draw_factor < 1:
            raise ConfigError(
                "synth-mask-quantile must be in [0, 0.5) (0: no mask check) and "
                f"synth-draw-factor >= 1; got {self.synth_mask_quantile}, {self.synth_draw_factor}"
            )
        if self.synth_train_minutes < 0 and self.synth_train_minutes != -1:
            raise ConfigError(
                "synth-train-minutes must be -1 (the synth-config's budget), 0 (no budget) "
                f"or a number of minutes > 0, got {self.synth_train_minutes}"
            )
        if self.synth_mask_size_bins < 1:
            raise ConfigError(
                "synth-mask-size-bins must be >= 1 (1: releases keep the real mix of structure "
                f"counts only; 3: of counts and small/middle/large masks), got "
                f"{self.synth_mask_size_bins}"
            )
        if self.share == "synthetic" and self.dp == "central":
            raise ConfigError(
                "dp=central adds noise to averaged weights, and share=synthetic sends no "
                'weights: use dp="local" (DP-SGD for each site\'s generator) or share="both"'
            )
        if self.share != "weights":
            self.diffusion_settings()  # fail early on a bad synth-config
        if self.num_server_rounds < 1:
            raise ConfigError(f"num-server-rounds must be >= 1, got {self.num_server_rounds}")
        if not 0 <= self.trim_beta < 0.5 or self.krum_byzantine < 0 or self.update_norm_factor < 0:
            raise ConfigError(
                "trim-beta must be in [0, 0.5), krum-byzantine and update-norm-factor >= 0; got "
                f"{self.trim_beta}, {self.krum_byzantine}, {self.update_norm_factor}"
            )
        if self.eval_every < 1:
            raise ConfigError(
                f"eval-every must be >= 1 (1: evaluate every round), got {self.eval_every}"
            )
        if self.min_sites < 1:
            raise ConfigError(f"min-sites must be >= 1, got {self.min_sites}")
        if self.round_timeout <= 0:
            raise ConfigError(f"round-timeout must be > 0 seconds, got {self.round_timeout}")
        if self.reply_poll_interval <= 0:
            raise ConfigError(
                f"reply-poll-interval must be > 0 seconds, got {self.reply_poll_interval}"
            )
        if not 0.0 <= self.fraction_evaluate <= 1.0:
            raise ConfigError(f"fraction-evaluate must be in [0, 1], got {self.fraction_evaluate}")
        if self.image_size < 32 or self.image_size % 16:
            raise ConfigError(
                f"image-size must be a multiple of 16 and >= 32, got {self.image_size}"
            )
        if self.patch_size and not (
            32 <= self.patch_size <= self.image_size and self.patch_size % 16 == 0
        ):
            raise ConfigError(
                "patch-size must be 0 (whole images) or a multiple of 16 between 32 and "
                f"image-size={self.image_size}, got {self.patch_size}"
            )
        from common.data.channels import check as check_channels

        check_channels(self.channels)
        if self.patches_per_image < 1:
            raise ConfigError(f"patches-per-image must be >= 1, got {self.patches_per_image}")
        if self.dp == "local" and self.patches_per_image > 1:
            raise ConfigError(
                "dp=local counts one sample per image and epoch: set patches-per-image=1 "
                f"(got {self.patches_per_image})"
            )
        if self.dp_trainable not in ("all", "bias"):
            raise ConfigError(f"dp-trainable must be all or bias, got {self.dp_trainable!r}")
        if self.warm_start_cases < 1 or self.warm_start_epochs < 1:
            raise ConfigError(
                "warm-start-cases and warm-start-epochs must be >= 1, got "
                f"{self.warm_start_cases} and {self.warm_start_epochs}"
            )
        self.sim_node_configs()  # fail early on a malformed sim-node-config
        from common.seg.label_fusion import METHODS

        if self.label_fusion not in METHODS:
            raise ConfigError(f"label-fusion must be one of {METHODS}, got {self.label_fusion!r}")

    @classmethod
    def from_config(cls, run_config: Mapping[str, Any]) -> RunSettings:
        """Read a Flower ``run_config`` (missing keys take the defaults)."""
        return _from_config(cls, run_config, "run_config")

    def sim_node_configs(self) -> dict[str, dict]:
        """``sim-node-config`` read: each virtual site's own node_config settings (the
        Simulation Engine gives a virtual SuperNode only its partition id)."""
        if not self.sim_node_config:
            return {}
        try:
            value = json.loads(self.sim_node_config)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"sim-node-config must be JSON: {exc}") from None
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            raise ConfigError(
                "sim-node-config must map virtual sites to settings, e.g. "
                '{"site-1": {"share-weights": false}}, got ' + repr(self.sim_node_config)
            )
        return value

    def dp_settings(self, site: SiteSettings | None = None):
        """The DP-SGD settings for ``site``: the consortium's, with the site's overrides.

        Returns:
            A :class:`common.privacy.dp.DPSettings`.
        """
        from common.privacy.dp import DPSettings

        return DPSettings(
            mode=self.dp,
            epsilon=self.dp_epsilon,
            delta=self.dp_delta,
            noise_multiplier=(site and site.dp_noise_multiplier) or self.dp_noise_multiplier,
            max_grad_norm=(site and site.dp_max_grad_norm) or self.dp_max_grad_norm,
            accountant=self.dp_accountant,
            max_physical_batch=self.dp_max_physical_batch,
            rounds=self.num_server_rounds,
            budget=site.max_epsilon if site else 0.0,
        )

    def eval_due(self, server_round: int) -> bool:
        """Whether the server evaluates the global model on its held-out set after
        ``server_round`` (0: the initial model): every ``eval-every`` rounds and always
        after the last."""
        return server_round % self.eval_every == 0 or server_round == self.num_server_rounds

    def synth_due(self, server_round: int) -> bool:
        """Whether sites release synthetic pairs in ``server_round`` (round 1, then every
        ``synth-every`` rounds; never with ``share=weights``)."""
        if self.share == "weights":
            return False
        if self.synth_every == 0:
            return server_round == 1
        return (server_round - 1) % self.synth_every == 0

    def diffusion_settings(self):
        """The sites' diffusion model settings (``synth-config`` with overrides).

        Returns:
            A :class:`common.synth.diffusion.DiffusionSettings`.
        """
        from common.synth.diffusion import DiffusionSettings

        settings = DiffusionSettings.named(
            self.synth_config, train_steps=self.synth_train_steps, seed=self.seed
        )
        if self.synth_train_minutes == -1:
            return settings
        return dataclasses.replace(settings, train_minutes=self.synth_train_minutes)

    def train_settings(self, server_round: int = 0, site_seed: int = 0, proximal_mu: float = 0.0):
        """Local training settings for one round (seeded by round and site).

        Args:
            server_round: the round number.
            site_seed: a per-site offset.
            proximal_mu: FedProx weight, as sent by the server in the round's config.

        Returns:
            A :class:`common.seg.training.TrainSettings`.
        """
        from common.seg.training import TrainSettings

        return TrainSettings(
            epochs=self.local_epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            proximal_mu=proximal_mu,
            seed=self.seed * 100_003 + server_round * 1009 + site_seed,
            augmentation=self.augmentation,
            patch_size=self.patch_size,
            patches_per_image=self.patches_per_image,
            trainable=self.dp_trainable if self.dp == "local" else "all",
        )


@dataclass(frozen=True)
class SiteSettings:
    """One hospital's local facts, from its SuperNode's ``--node-config``.

    Args:
        data_dir: the site's raw data folder (DICOM or image folders). Read only.
        state_dir: the site's private working folder (cache, secret, quarantine, reports).
        site_name: a display name for reports (never a patient identifier).
        val_fraction: share of local cases kept for local validation.
        max_epsilon: the site's privacy budget, the most cumulative ε it will ever spend
            (0: none). With a budget the site trains only under DP and declines any
            round that would take it over.
        dp_noise_multiplier: the site's own noise multiplier (0: the consortium's).
        dp_max_grad_norm: the site's own clipping norm (0: the consortium's).
        share_weights: ``False``: the site never releases model weights; it declines
            training rounds and takes part only through its gated synthetic pairs
            (``share=both`` or ``exchange``), which the others and the server train on.
        share_synthetic: ``False``: the site declines to train a generator or release
            synthetic pairs (it may still receive the others' under ``exchange``).
    """

    data_dir: str = ""
    state_dir: str = ""
    site_name: str = "site"
    val_fraction: float = 0.2
    max_epsilon: float = 0.0
    dp_noise_multiplier: float = 0.0
    dp_max_grad_norm: float = 0.0
    share_weights: bool = True
    share_synthetic: bool = True

    def __post_init__(self) -> None:
        if not self.data_dir:
            raise ConfigError(
                "node_config needs data-dir: start the SuperNode with "
                '--node-config \'data-dir="/path/to/images" state-dir="/path"\''
            )
        if not self.state_dir:
            raise ConfigError("node_config needs state-dir (a private, writable folder)")

    @classmethod
    def from_config(
        cls, node_config: Mapping[str, Any], run: RunSettings | None = None
    ) -> SiteSettings:
        """Read a Flower ``node_config``.

        On the Simulation Engine a virtual SuperNode's node_config holds only
        ``partition-id``; site ``i`` (counting from 1) then reads
        ``run.sim_data_root/site-i`` and keeps its state in ``run.sim_state_root/site-i``.
        """
        if (
            "data-dir" not in node_config
            and "partition-id" in node_config
            and run
            and run.sim_data_root
        ):
            name = f"site-{int(node_config['partition-id']) + 1}"
            own = run.sim_node_configs().get(name, {})
            base = {
                "data-dir": str(Path(run.sim_data_root) / name),
                "state-dir": str(Path(run.sim_state_root or run.sim_data_root) / name),
                "site-name": name,
            }
            return _from_config(cls, {**own, **base}, f"sim-node-config of {name}")
        return _from_config(cls, node_config, "node_config")

    @property
    def state_path(self) -> Path:
        """``state_dir`` as a Path."""
        return Path(self.state_dir)
