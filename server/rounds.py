"""The record of one round: which sites trained, declined, failed or were rejected, and
what the round did with central DP and synthetic data. Written to ``metrics.jsonl`` by
the strategies; filled in by the strategy mixins (:mod:`server.strategies`,
:mod:`server.synthetic_pool`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RoundRecord:
    """What happened to each site in one round."""

    trained: list[dict] = field(default_factory=list)  # site name + metrics
    rejected: list[dict] = field(default_factory=list)  # site name + why its update was unsafe
    declined: list[dict] = field(default_factory=list)  # site name + reason
    failed: list[dict] = field(default_factory=list)  # node id + error
    asked: int = 0
    seconds: float = 0.0
    privacy: dict = field(default_factory=dict)  # central DP: noise, clipping, ε per site
    synthetic: list[dict] = field(default_factory=list)  # synthetic releases collected
    server_training: dict = field(default_factory=dict)  # training on the synthetic pool
    exchanged: list[dict] = field(default_factory=list)  # share=exchange: pairs sent to sites

    def to_json(self) -> dict:
        """A JSON-ready dict."""
        return {
            "asked": self.asked,
            "trained": self.trained,
            "declined": self.declined,
            "failed": self.failed,
            "rejected": self.rejected,
            "missing": self.asked
            - len(self.trained)
            - len(self.declined)
            - len(self.failed)
            - len(self.rejected),
            "seconds": self.seconds,
            **({"central-dp": self.privacy} if self.privacy else {}),
            **({"synthetic": self.synthetic} if self.synthetic else {}),
            **({"server-training": self.server_training} if self.server_training else {}),
            **({"exchanged": self.exchanged} if self.exchanged else {}),
        }
