"""A membership-inference test: evidence beside the formal ε.

The attacker sees a released model and one patient, and guesses whether that patient was
in the site's training data. The classic loss attack (Yeom et al., 2018) guesses
"member" when the model's loss on the patient is low. Its success over all threshold
choices is the ROC AUC of ``-loss`` separating the site's own training patients
(members) from its held-back validation patients (non-members, never trained on): 0.5
means the model tells nothing about who was in the data; the confidence interval is a
percentile bootstrap over patients.

:func:`membership_auc` takes any per-patient score (higher = more likely a member), so
the same test runs on a model's losses and on synthetic pairs' distance to the nearest
real image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class AttackResult:
    """The attack's AUC with its 95% bootstrap interval, and what it was run on."""

    auc: float
    low: float
    high: float
    members: int
    non_members: int
    statistic: str = "loss"

    def to_json(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return (
            f"membership inference ({self.statistic}): AUC {self.auc:.3f} "
            f"[95% CI {self.low:.3f}-{self.high:.3f}] on {self.members} training and "
            f"{self.non_members} held-back patients (0.5: the model tells nothing about "
            "who was in the data)"
        )


def _auc(members: np.ndarray, others: np.ndarray) -> float:
    """P(a member scores above a non-member), ties counting half (Mann-Whitney U)."""
    scores = np.concatenate([members, others])
    ranks = np.empty(len(scores))
    order = np.argsort(scores, kind="mergesort")
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):  # average ranks of ties
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    u = ranks[: len(members)].sum() - len(members) * (len(members) + 1) / 2
    return float(u / (len(members) * len(others)))


def membership_auc(
    member_scores, non_member_scores, statistic: str = "loss", bootstrap: int = 2000, seed: int = 0
) -> AttackResult:
    """AUC of ``score`` separating members from non-members, with a bootstrap interval.

    Args:
        member_scores: one score per training patient (higher: more member-like).
        non_member_scores: one score per held-back patient.
        statistic: what the score is, for the record.
        bootstrap: resamples for the 95% interval.
        seed: the resampling seed.

    Raises:
        ValueError: with fewer than 2 patients on either side.
    """
    members = np.asarray(member_scores, dtype=np.float64)
    others = np.asarray(non_member_scores, dtype=np.float64)
    if len(members) < 2 or len(others) < 2:
        raise ValueError(
            f"the attack needs at least 2 training and 2 held-back patients, got "
            f"{len(members)} and {len(others)}: a site this small cannot be tested"
        )
    rng = np.random.default_rng(seed)
    draws = [
        _auc(rng.choice(members, len(members)), rng.choice(others, len(others)))
        for _ in range(bootstrap)
    ]
    low, high = np.percentile(draws, [2.5, 97.5])
    return AttackResult(
        _auc(members, others), float(low), float(high), len(members), len(others), statistic
    )
