"""Aggregation strategies by name, each wrapped to record what every site did.

Flower's Message API strategies do the aggregation. :class:`SiteLedgerMixin` adds what
a coordinator needs around them: it waits for the minimum number of sites for at most
``round-timeout`` seconds (Flower's own wait has no limit), and it takes declined and
failed replies out before aggregation while keeping a per-round record of who trained,
who declined and why, and who did not answer in time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import (
    FedAdam,
    FedAvg,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    Krum,
    Strategy,
)

from common import keys
from common.config import RunSettings
from common.errors import ConfigError
from server.rounds import RoundRecord
from server.synthetic_pool import PoolingMixin, SyntheticPool
from server.update_checks import check_updates

logger = logging.getLogger(__name__)


class NotEnoughSites(RuntimeError):
    """Fewer than ``min-sites`` SuperNodes connected within the round timeout."""


class SiteLedgerMixin:
    """Bounded waiting for sites and a per-round record of every reply (see module doc)."""

    node_wait_timeout: float = 600.0
    norm_factor: float = 10.0  # server.update_checks: largest update norm / median of others
    rounds: dict[int, RoundRecord]
    verifier = None  # a server.releases.ReleaseVerifier, or None (no ledger checks)

    def _unverified(self, msg: Message, server_round: int, name: str) -> str | None:
        return self.verifier.check(msg, server_round, name) if self.verifier else None

    def _wait_for_sites(self, grid: Grid, needed: int) -> None:
        deadline = time.monotonic() + self.node_wait_timeout
        while (n := len(list(grid.get_node_ids()))) < needed:
            if time.monotonic() > deadline:
                raise NotEnoughSites(
                    f"only {n} site(s) connected after {self.node_wait_timeout:.0f} s, need "
                    f"min-sites={needed}; start more SuperNodes or lower min-sites"
                )
            time.sleep(0.2)

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._wait_for_sites(grid, self.min_available_nodes)  # type: ignore[attr-defined]
        self._sent = arrays  # the global model the updates are checked against
        messages = list(super().configure_train(server_round, arrays, config, grid))  # type: ignore[misc]
        self.rounds.setdefault(server_round, RoundRecord()).asked = len(messages)
        self._round_start = time.monotonic()
        return messages

    def configure_evaluate(self, server_round, arrays, config, grid):
        if getattr(self, "fraction_evaluate", 0.0) == 0.0:
            return []
        self._wait_for_sites(grid, self.min_available_nodes)  # type: ignore[attr-defined]
        return super().configure_evaluate(server_round, arrays, config, grid)  # type: ignore[misc]

    def _screen(self, msg: Message, server_round: int) -> tuple[str, dict | None]:
        """``(site name, None)`` for a usable reply, else ``(name, {"failed"/"declined": why})``."""
        if msg.has_error():
            return f"node {msg.metadata.src_node_id}", {"failed": msg.error.reason}
        site = msg.content.config_records.get(keys.SITE, ConfigRecord())
        name = str(site.get(keys.SITE_NAME, msg.metadata.src_node_id))
        problem = self._unverified(msg, server_round, name)
        if problem:
            logger.warning("round %d: reply of %s not used: %s", server_round, name, problem)
            return name, {"failed": problem}
        if keys.DECLINED in site:
            reason = str(site[keys.DECLINED])
            logger.warning("site %s declined round %d: %s", name, server_round, reason)
            return name, {"declined": reason}
        return name, None

    def aggregate_train(self, server_round: int, replies: Iterable[Message]):
        record = self.rounds.setdefault(server_round, RoundRecord())
        record.seconds = time.monotonic() - getattr(self, "_round_start", time.monotonic())
        usable = []
        for msg in replies:
            name, problem = self._screen(msg, server_round)
            if problem is None:
                metrics = msg.content.metric_records.get(keys.METRICS, MetricRecord())
                record.trained.append({"site": name, **{k: float(v) for k, v in metrics.items()}})
                usable.append(msg)
            elif "declined" in problem:
                record.declined.append({"site": name, "reason": problem["declined"]})
            elif msg.has_error():
                record.failed.append({"node": msg.metadata.src_node_id, "error": problem["failed"]})
            else:
                record.failed.append({"site": name, "error": problem["failed"]})
        usable = self._safe_updates(usable, record, server_round)
        result = super().aggregate_train(server_round, usable)  # type: ignore[misc]
        record.privacy = dict(getattr(self, "last_round", {}))
        return result

    def _safe_updates(self, usable: list[Message], record: RoundRecord, server_round: int):
        """``usable`` without the updates :mod:`server.update_checks` rejects."""
        sent = getattr(self, "_sent", None)
        if sent is None or not usable:
            return usable
        reference = {k: sent[k].numpy() for k in sent.keys()}
        named = {}
        for msg in usable:
            name = str(msg.content[keys.SITE][keys.SITE_NAME])
            arrays = msg.content.array_records.get(keys.ARRAYS)
            named[name] = {k: arrays[k].numpy() for k in arrays.keys()} if arrays else {}
        rejected = check_updates(named, reference, self.norm_factor)
        for name, why in rejected.items():
            record.rejected.append({"site": name, "reason": why})
            record.trained = [t for t in record.trained if t["site"] != name]
            logger.warning("round %d: update of %s rejected: %s", server_round, name, why)
        return [m for m in usable if str(m.content[keys.SITE][keys.SITE_NAME]) not in rejected]

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]):
        usable = []
        for m in replies:
            if m.has_error():
                continue
            site = m.content.config_records.get(keys.SITE, ConfigRecord())
            name = str(site.get(keys.SITE_NAME, m.metadata.src_node_id))
            if self._unverified(m, server_round, name) or keys.DECLINED in site:
                continue
            usable.append(m)
        return super().aggregate_evaluate(server_round, usable)  # type: ignore[misc]


def _common_kwargs(run: RunSettings) -> dict:
    return {
        "fraction_train": 1.0,
        "fraction_evaluate": run.fraction_evaluate,
        "min_train_nodes": run.min_sites,
        "min_evaluate_nodes": run.min_sites,
        "min_available_nodes": run.min_sites,
        "weighted_by_key": keys.NUM_EXAMPLES,
        "arrayrecord_key": keys.ARRAYS,
        "configrecord_key": keys.CONFIG,
    }


STRATEGIES: dict[str, type[Strategy]] = {
    "fedavg": FedAvg,
    "fedprox": FedProx,
    "fedadam": FedAdam,
    # robust to a minority of bad updates (Flower's implementations)
    "fedmedian": FedMedian,  # coordinate-wise median
    "fedtrimmedavg": FedTrimmedAvg,  # mean after cutting trim-beta of each tail
    "krum": Krum,  # the update closest to its n - f - 2 nearest others
}


def create_strategy(run: RunSettings, out_dir: str | Path = ".") -> Strategy:
    """The strategy named by ``run.strategy``, with site recording and bounded waits.

    With ``dp=central`` it runs inside :class:`server.central_dp.CentralDP` (Flower's
    server-side clipping and noise), averaging site updates without weights.

    Args:
        run: run settings (strategy name, min-sites, round-timeout, FedProx mu, FedAdam eta,
            central DP noise and clip).
        out_dir: the run's output folder (central DP saves its accountant there).

    Returns:
        A Flower strategy instance with a ``rounds`` dict of :class:`RoundRecord`.

    Raises:
        ConfigError: for an unknown strategy name.
    """
    try:
        base = STRATEGIES[run.strategy]
    except KeyError:
        raise ConfigError(
            f"unknown strategy {run.strategy!r}; choose one of {sorted(STRATEGIES)}"
        ) from None
    kwargs = _common_kwargs(run)
    if base is FedProx:
        kwargs["proximal_mu"] = run.proximal_mu
    elif base is FedAdam:
        kwargs.update(eta=run.server_learning_rate, eta_l=run.learning_rate)
    elif base is FedTrimmedAvg:
        kwargs["beta"] = run.trim_beta
    elif base is Krum:
        kwargs["num_malicious_nodes"] = run.krum_byzantine
    pooling = (PoolingMixin,) if run.share != "weights" else ()
    if run.dp == "central":
        strategy = _central_dp(run, base, kwargs, out_dir, pooling)
    else:
        name = f"Recording{'Pooling' if pooling else ''}{base.__name__}"
        strategy = type(name, (*pooling, SiteLedgerMixin, base), {})(**kwargs)
    if pooling:
        strategy.run = run
        strategy.pool = SyntheticPool(out_dir)
        strategy.timeout = run.round_timeout
    strategy.rounds = {}
    strategy.node_wait_timeout = run.round_timeout
    strategy.norm_factor = run.update_norm_factor
    return strategy


def _central_dp(
    run: RunSettings, base: type[Strategy], kwargs: dict, out_dir, pooling: tuple
) -> Strategy:
    """``base`` (unweighted) inside Flower's server-side clipping, with per-site ε."""
    from common.privacy.accountant import gaussian_noise_for_epsilon
    from server.central_dp import CentralDP, CentralDPAccountant

    inner = base(**{**kwargs, "weighted_by_key": keys.UNIFORM_WEIGHT})
    noise = run.dp_noise_multiplier or gaussian_noise_for_epsilon(
        run.dp_epsilon, run.dp_delta, run.num_server_rounds
    )
    cls = type(f"RecordingCentralDP{base.__name__}", (*pooling, SiteLedgerMixin, CentralDP), {})
    strategy = cls(
        inner,
        noise_multiplier=noise,
        clipping_norm=run.dp_central_clip,
        accountant=CentralDPAccountant(run.dp_delta),
        out_dir=out_dir,
    )
    # what the recording mixin reads from the strategy it wraps
    strategy.min_available_nodes = run.min_sites
    strategy.fraction_evaluate = run.fraction_evaluate
    return strategy
