"""Central (site-level) differential privacy at the server, with ε accounted per site.

Flower's ``DifferentialPrivacyServerSideFixedClipping`` clips every site's model update
(new weights − global weights) to an L2 norm ``C`` and adds Gaussian noise of standard
deviation ``σ·C/k`` to the average of ``k`` updates. Its optional accountant charges
one consortium-wide ε and refuses a round with a missing site. Here the wrapper adds
the noise and the same flat clipping is applied with a guard (flwr 1.41's clip divides
by the update's norm and fails on an unchanged model); around them this module adds
what a consortium needs:

* the noise is scaled to the sites whose update is really used in the round (``k`` is
  set per round, after declined, failed and unverified replies are taken out), so the
  noise multiplier relative to one site's clipped update is exactly ``σ`` whoever drops;
* the average is unweighted (a weighted average would let a large site's update count
  more than ``C`` allows);
* every site whose update went into a round is charged one Gaussian mechanism
  (noise ``σ``, sampling rate 1: every connected site is asked every round), and its
  cumulative ε is the exact ε of those Gaussian releases composed
  (:func:`common.privacy.accountant.gaussian_epsilon`); a site that declined or failed a round
  is not charged;
* the pre-clipping update norms are recorded, so a coordinator can see how many sites
  the clip cut and tune ``dp-central-clip``.

The guarantee is *site-level* (user-level with the site as the user): the released
global model changes little whether or not a whole site took part. It protects against
anyone who sees the global models (other sites, the public), not against the coordinator,
who sees each site's update before the noise; local DP (``dp=local``) is the mode for
that.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, Message, MetricRecord
from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping

from common import keys
from common.privacy.accountant import gaussian_epsilon

logger = logging.getLogger(__name__)

STATE_FILE = Path("privacy") / "central_dp.json"


def update_norm(reply: ArrayRecord, current: ArrayRecord) -> float:
    """L2 norm of ``reply − current`` over all floating-point tensors."""
    total = 0.0
    for name in current.keys():
        a, b = reply[name].numpy(), current[name].numpy()
        if np.issubdtype(a.dtype, np.floating):
            total += float(np.sum((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.sqrt(total)


class CentralDPAccountant:
    """Per-site history of central-DP rounds and the ε each site has spent.

    Without subsampling, Gaussian releases compose exactly, so no numerical accountant
    is needed: ε is the analytic Gaussian mechanism's.

    Args:
        delta: the δ at which ε is reported.
    """

    accountant = "analytic-gaussian"

    def __init__(self, delta: float) -> None:
        self.delta = delta
        self.rounds: dict[str, list[float]] = {}  # site -> noise multiplier of each round

    def charge(self, site: str, noise_multiplier: float) -> None:
        """Record one round in which ``site``'s update was released under noise."""
        self.rounds.setdefault(site, []).append(noise_multiplier)

    def epsilon(self, site: str) -> float:
        """Cumulative ε of ``site`` (0 if it never contributed)."""
        return gaussian_epsilon(self.rounds.get(site, []), self.delta)

    def state_dict(self) -> dict:
        """JSON-ready state."""
        return {"delta": self.delta, "accountant": self.accountant, "rounds": self.rounds}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` output."""
        self.delta = float(state["delta"])
        self.rounds = {k: [float(z) for z in v] for k, v in state["rounds"].items()}

    def save(self, out_dir: str | Path) -> Path:
        """Write the state atomically to ``OUT/privacy/central_dp.json``."""
        path = Path(out_dir) / STATE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state_dict(), indent=1))
        os.replace(tmp, path)
        return path


def _clipped(new: np.ndarray, old: np.ndarray, scale: float) -> np.ndarray:
    """``old + scale·(new − old)`` for floating-point tensors; others unchanged."""
    if not np.issubdtype(new.dtype, np.floating):
        return new
    return (old + scale * (new - old)).astype(new.dtype)


class CentralDP(DifferentialPrivacyServerSideFixedClipping):
    """Flower's server-side fixed clipping, with per-round ``k`` and per-site ε.

    Args:
        strategy: the aggregation strategy; it must weight replies by
            :data:`common.keys.UNIFORM_WEIGHT` (set here on every used reply).
        noise_multiplier: σ, relative to the clipping norm.
        clipping_norm: C, the largest L2 norm of a site's update.
        accountant: the per-site accountant (:class:`CentralDPAccountant`).
        out_dir: where the accountant's state is saved after every round.
    """

    def __init__(
        self,
        strategy,
        noise_multiplier: float,
        clipping_norm: float,
        accountant: CentralDPAccountant,
        out_dir: str | Path,
    ) -> None:
        super().__init__(strategy, noise_multiplier, clipping_norm, num_sampled_clients=1)
        self.site_accountant = accountant
        self.out_dir = Path(out_dir)
        self.last_round: dict = {}  # what the last aggregation did, for the round record

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Clip, average uniformly, add noise; charge every site whose update was used.

        ``replies`` must hold only verified, non-declined replies (the recording mixin
        takes the others out before calling this).
        """
        used = list(replies)
        self.last_round = {}
        if not used:
            return None, None
        names, norms = [], []
        for msg in used:
            names.append(str(msg.content[keys.SITE][keys.SITE_NAME]))
            norms.append(update_norm(msg.content[keys.ARRAYS], self.current_arrays))
            msg.content[keys.METRICS][keys.UNIFORM_WEIGHT] = 1.0
        current = self.current_arrays
        for msg, norm in zip(used, norms):
            # Flower 1.41's clip (compute_clip_model_update) divides by the norm and fails
            # on an unchanged model; the same FlatClip, guarded.
            scale = min(1.0, self.clipping_norm / norm) if norm > 0 else 1.0
            msg.content[keys.ARRAYS] = ArrayRecord(
                {
                    k: Array(
                        _clipped(msg.content[keys.ARRAYS][k].numpy(), current[k].numpy(), scale)
                    )
                    for k in current.keys()
                }
            )
        self.num_sampled_clients = len(used)  # noise std = σ·C/k for the k used updates
        arrays, metrics = self.strategy.aggregate_train(server_round, used)
        if arrays is None:
            return arrays, metrics
        arrays = self._add_noise_to_aggregated_arrays(arrays)  # Flower's Gaussian noise
        for name in names:
            self.site_accountant.charge(name, self.noise_multiplier)
        self.site_accountant.save(self.out_dir)
        self.last_round = {
            "mechanism": "central-dp (server-side fixed clipping, Gaussian noise)",
            "noise_multiplier": self.noise_multiplier,
            "clipping_norm": self.clipping_norm,
            "noise_std": self.noise_multiplier * self.clipping_norm / len(used),
            "sites": names,
            "update_norms": dict(zip(names, norms)),
            "clipped": sum(n > self.clipping_norm for n in norms),
            "delta": self.site_accountant.delta,
            "accountant": self.site_accountant.accountant,
            "epsilon": {n: self.site_accountant.epsilon(n) for n in names},
        }
        logger.info(
            "round %d: central DP over %d site update(s), %d clipped, noise std %.3g",
            server_round,
            len(used),
            self.last_round["clipped"],
            self.last_round["noise_std"],
        )
        return arrays, metrics
