"""A site's cumulative privacy accountant, saved in its state directory.

Every DP-SGD round a site trains adds one entry ``(noise multiplier, sample rate, steps)``
to the history; ε is computed from the *whole* history, across rounds and runs, with
Opacus's PRV accountant (default) or its RDP accountant. Flower's Opacus example builds a
new accountant every round, so the ε it prints is per round; this one is per site.

Typical use::

    acc = SiteAccountant.load(state_dir)           # empty history the first time
    if acc.epsilon_after(step, delta) > budget:    # what the round would bring it to
        ...decline...
    acc.record(step); acc.save(state_dir)

The state file (``privacy/accountant.json``) is plain JSON, so an auditor can read it.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from common.errors import ConfigError

ACCOUNTANTS = ("prv", "rdp")
STATE_FILE = Path("privacy") / "accountant.json"


@dataclass(frozen=True)
class MechanismStep:
    """One round of DP-SGD: ``steps`` noisy steps at one noise level and sample rate."""

    noise_multiplier: float
    sample_rate: float
    steps: int

    def __post_init__(self) -> None:
        if not self.noise_multiplier > 0:
            raise ConfigError(f"noise multiplier must be > 0, got {self.noise_multiplier}")
        if not 0 < self.sample_rate <= 1:
            raise ConfigError(f"sample rate must be in (0, 1], got {self.sample_rate}")
        if self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}")


def merge_steps(steps) -> list[tuple[float, float, int]]:
    """``(noise, sample rate, count)`` triples with equal noise and rate summed.

    Rounds with the same noise and sample rate compose as one longer run: merging them
    gives the same ε and keeps PRV fast however many rounds a site has trained.
    """
    merged: dict[tuple[float, float], int] = {}
    for noise, q, count in steps:
        merged[(noise, q)] = merged.get((noise, q), 0) + count
    return [(noise, q, count) for (noise, q), count in merged.items()]


def epsilon_of(history: list[MechanismStep], delta: float, accountant: str = "prv") -> float:
    """ε of the composition of ``history`` at ``delta`` with an Opacus accountant.

    Args:
        history: the steps, in order.
        delta: the target δ.
        accountant: ``"prv"`` (tight, numerical) or ``"rdp"`` (Rényi DP upper bound).

    Returns:
        ε (0 for an empty history).
    """
    if not history:
        return 0.0
    if accountant not in ACCOUNTANTS:
        raise ConfigError(f"dp-accountant must be one of {ACCOUNTANTS}, got {accountant!r}")
    from opacus.accountants import PRVAccountant, RDPAccountant

    acc = PRVAccountant() if accountant == "prv" else RDPAccountant()
    acc.history = merge_steps((h.noise_multiplier, h.sample_rate, h.steps) for h in history)
    return float(acc.get_epsilon(delta=delta))


@dataclass
class SiteAccountant:
    """The saved history of a site's DP-SGD rounds and the ε they add up to.

    Args:
        accountant: ``"prv"`` or ``"rdp"``; fixed at the first round (ε from two
            accountants does not compose).
        history: every recorded :class:`MechanismStep`, oldest first.
    """

    accountant: str = "prv"
    history: list[MechanismStep] = field(default_factory=list)

    def epsilon(self, delta: float) -> float:
        """ε spent so far at ``delta``."""
        return epsilon_of(self.history, delta, self.accountant)

    def epsilon_after(self, step: MechanismStep, delta: float) -> float:
        """ε the site would have spent after ``step``, without recording it."""
        return epsilon_of([*self.history, step], delta, self.accountant)

    def record(self, step: MechanismStep) -> None:
        """Add a round that ran (call before its result leaves the site)."""
        self.history.append(step)

    @classmethod
    def load(cls, state_dir: str | Path, accountant: str = "prv") -> SiteAccountant:
        """The site's accountant, or a new one with ``accountant`` if none was saved.

        Raises:
            ConfigError: when the saved accountant differs from ``accountant`` while
                history exists (ε from two accountants cannot be composed).
        """
        path = Path(state_dir) / STATE_FILE
        if not path.exists():
            return cls(accountant=accountant)
        raw = json.loads(path.read_text())
        saved = cls(raw["accountant"], [MechanismStep(**h) for h in raw["history"]])
        if saved.history and saved.accountant != accountant:
            raise ConfigError(
                f"this site's privacy history was accounted with {saved.accountant!r}, "
                f"the run asks for {accountant!r}: set dp-accountant={saved.accountant!r}"
            )
        saved.accountant = accountant
        return saved

    def save(self, state_dir: str | Path) -> Path:
        """Write the state atomically (a crash leaves the old or the new file, not half)."""
        path = Path(state_dir) / STATE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        os.replace(tmp, path)
        return path


MAX_NOISE = 1e6  # Opacus's get_noise_multiplier gives up above the same noise multiplier


def noise_for_epsilon(
    epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    accountant: str = "prv",
    tolerance: float = 0.01,
) -> float:
    """The smallest noise multiplier that keeps ``steps`` steps within ``epsilon``.

    The answer spends between ``epsilon - tolerance`` and ``epsilon`` (never more). It is
    found by bracketing, then by interpolating ε against the noise on log scales, where ε
    is close to a straight line: about 6 accountant calls against Opacus's
    ``get_noise_multiplier``'s 15 for the same tolerance (each PRV call is ~0.5 s).

    Args:
        epsilon: target ε for all the steps together.
        delta: target δ.
        sample_rate: Poisson sampling rate of one step.
        steps: how many steps the target covers.
        accountant: ``"prv"`` or ``"rdp"``.
        tolerance: how far below ``epsilon`` the answer may spend.

    Raises:
        ConfigError: for a target that is not a positive finite number, or one that no
            noise multiplier up to ``MAX_NOISE`` reaches.
    """
    if not epsilon > 0 or math.isinf(epsilon):
        raise ConfigError(f"dp-epsilon must be a positive finite number, got {epsilon}")

    def spent(noise: float) -> float:
        return epsilon_of([MechanismStep(noise, sample_rate, steps)], delta, accountant)

    # a bracket: ``low`` spends more than epsilon, ``high`` at most epsilon
    high, eps_high = 1.0, spent(1.0)
    low, eps_low = high, eps_high
    while eps_high > epsilon:
        low, eps_low = high, eps_high
        high *= 2
        if high > MAX_NOISE:
            raise ConfigError(
                f"no noise multiplier up to {MAX_NOISE:g} keeps {steps} steps at sample rate "
                f"{sample_rate:g} within ε={epsilon}; allow a larger ε or fewer steps"
            )
        eps_high = spent(high)
    while eps_low <= epsilon:  # 1.0 already spends too little: go down
        high, eps_high = low, eps_low
        if high < 1e-3:  # so large an ε that almost no noise reaches it
            return high
        low /= 2
        eps_low = spent(low)
    while epsilon - eps_high > tolerance:
        # where the log-log line through the bracket crosses epsilon, kept off its ends
        # so that a curved stretch cannot stall the search on one side
        t = math.log(eps_low / epsilon) / math.log(eps_low / max(eps_high, 1e-12))
        t = min(max(t, 0.1), 0.9)
        noise = low * (high / low) ** t
        eps = spent(noise)
        if eps <= epsilon:
            high, eps_high = noise, eps
        else:
            low, eps_low = noise, eps
    return high


def gaussian_delta(epsilon: float, mu: float) -> float:
    """δ(ε) of a Gaussian mechanism with ``mu = sensitivity / noise std`` (exact).

    Balle and Wang (ICML 2018), the analytic Gaussian mechanism:
    ``δ = Φ(−ε/μ + μ/2) − e^ε Φ(−ε/μ − μ/2)``.
    """
    from scipy.stats import norm

    if mu <= 0:
        return 0.0
    a = norm.cdf(-epsilon / mu + mu / 2)
    b = math.exp(min(700.0, epsilon + norm.logcdf(-epsilon / mu - mu / 2)))
    return float(max(0.0, a - b))


def gaussian_epsilon(noise_multipliers: list[float], delta: float) -> float:
    """Exact ε of composed Gaussian mechanisms without subsampling (sampling rate 1).

    ``k`` Gaussian releases with noise multipliers ``σ_i`` compose exactly into one
    Gaussian mechanism with ``μ = sqrt(Σ 1/σ_i²)`` (Dong, Roth and Su, Gaussian DP);
    ε is then solved from :func:`gaussian_delta` by bisection. Used for central DP,
    where every site is asked every round.

    Args:
        noise_multipliers: σ of each release (noise std / sensitivity).
        delta: the target δ.

    Returns:
        ε (0 for no releases).
    """
    if not noise_multipliers:
        return 0.0
    if any(not z > 0 for z in noise_multipliers):
        raise ConfigError(f"noise multipliers must be > 0, got {noise_multipliers}")
    mu = math.sqrt(sum(1.0 / z**2 for z in noise_multipliers))
    lo, hi = 0.0, 1.0
    while gaussian_delta(hi, mu) > delta:
        lo, hi = hi, hi * 2
        if hi > 1e6:
            return math.inf
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if gaussian_delta(mid, mu) > delta else (lo, mid)
    return hi


def gaussian_noise_for_epsilon(epsilon: float, delta: float, releases: int) -> float:
    """The noise multiplier that lets ``releases`` unsampled Gaussian releases spend ``epsilon``.

    Args:
        epsilon: target ε of all releases together.
        delta: target δ.
        releases: how many releases the target covers (the run's rounds).
    """
    if not epsilon > 0 or math.isinf(epsilon):
        raise ConfigError(f"dp-epsilon must be a positive finite number, got {epsilon}")
    lo, hi = 1e-3, 1e3  # mu of the whole composition
    for _ in range(100):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if gaussian_delta(epsilon, mid) < delta else (lo, mid)
    return math.sqrt(releases) / lo
