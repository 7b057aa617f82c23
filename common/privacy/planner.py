"""Before a run: what a site's ε will buy, told in advance.

For a site's privacy units and the consortium's ε, δ, rounds, local epochs and batch,
:func:`plan` computes the noise multiplier local DP-SGD will use, calibrated exactly as
a round is (:func:`common.privacy.dp.plan_round`: Poisson rate ``1 / ceil(n / batch)``,
``epochs / rate`` steps a round, the run's rounds together spending ε), and how strong
that noise is against the clipped signal:

* **per step**, the update is (a sum of about ``B`` gradients, each clipped to norm C,
  plus Gaussian noise of standard deviation ``σC`` in every direction) / ``B``: the
  noise is ``σ / B`` of the largest clipped signal;
* **over the run**, ``T`` steps add the signal up ``T`` times and the noise ``√T`` times:
  the clipped signal ends ``√T · B / σ`` times the noise (the run's signal-to-noise).

The verdict reads the run's signal-to-noise against what was measured on this project's
consortia (local DP, δ = 1e-5). *No learning* below 80: the sample sites (32 training
images, one per patient) stayed at their floor at 20–73 (``bench/README.md``, *Held-out
Dice under DP*; ``bench/dp/sample.py``), and so did the retina sites (16 and 11 images)
at ε = 10. *Learns, at a cost* from 80: the chest X-ray consortium of ``bench/dp``
(94 / 362 / 158 training patients, 10 rounds × 2 epochs, batch 8) kept 0.86–0.91× of
the non-DP Dice per site at 90 (ε = 1), 0.89–0.94× at 213 (ε = 3) and 0.90–0.95× at 366
(ε = 8). *Close to non-DP* (within 0.95× on every site) from 500: no DP run measured
here has reached it yet, so that threshold sits above the largest measured run and is
the least certain. Central DP with three sites (signal-to-noise 1–5) learnt nothing, as
forecast. For a federated model the number to read is the consortium's
(:func:`consortium_signal_to_noise`): a small site's own forecast says what its
contribution is worth, not what its vendor will get from the global model. The
thresholds are a forecast to check against each new measurement, not a guarantee. Not
modelled: a warm start (on phantoms it rescued phantom sites, on real radiographs it did
nothing), and how much of the clipped gradient carries the structure to learn: 400
phantom patients a site (lesions on 1.8% of the pixels, 64 px) were forecast at 203 and
learnt nothing (``bench/dp/README.md``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

from common.errors import ConfigError
from common.privacy.dp import DPSettings, calibrated_noise

NO_LEARNING = 80.0  # run signal-to-noise below which no learning was measured
NEAR_NON_DP = 500.0  # above the largest run measured (366: 0.90-0.95x of non-DP)
VERDICTS = ("no learning", "learns, at a cost", "close to non-DP")


@dataclass(frozen=True)
class PrivacyPlan:
    """A site's DP-SGD over a whole run, planned before it starts.

    Args:
        units: privacy units at the site (training patients; one image is one patient
            where nothing groups images).
        epsilon: the run's target ε. delta: its δ.
        rounds: rounds the site trains in. epochs: local epochs a round.
        batch_size: the logical batch (expected patients a step).
        noise_multiplier: σ, calibrated for the above (0 until :func:`plan` sets it).
        accountant: ``"prv"`` or ``"rdp"`` (``"gaussian"``: central DP, see
            :func:`plan_central`).
        unit: what one privacy unit is, for the sentence (``"patients"``, ``"sites"``).
    """

    units: int
    epsilon: float
    delta: float
    rounds: int
    epochs: int
    batch_size: int
    noise_multiplier: float = 0.0
    accountant: str = "prv"
    unit: str = "patients"

    @property
    def sample_rate(self) -> float:
        return 1.0 / math.ceil(self.units / self.batch_size)

    @property
    def steps(self) -> int:
        """Noisy steps over the whole run."""
        return self.rounds * self.epochs * math.ceil(self.units / self.batch_size)

    @property
    def expected_batch(self) -> float:
        return self.sample_rate * self.units

    @property
    def step_noise_to_signal(self) -> float:
        """Noise std over the largest clipped signal of one step: ``σ / B``."""
        return self.noise_multiplier / self.expected_batch

    @property
    def run_signal_to_noise(self) -> float:
        """The clipped signal over the noise, all steps together: ``√T · B / σ``."""
        return math.sqrt(self.steps) / self.step_noise_to_signal

    @property
    def verdict(self) -> str:
        return verdict_of(self.run_signal_to_noise)

    def describe(self) -> str:
        """One plain sentence: what the noise is, and what to expect."""
        expect = {
            "no learning": f"expect no learning (measured below about {NO_LEARNING:.0f})",
            "learns, at a cost": "expect learning, below the non-DP model (measured "
            "0.86-0.95x of its Dice at 90-366)",
            "close to non-DP": f"expect close to the non-DP model (forecast from "
            f"{NEAR_NON_DP:.0f}, beyond the runs measured so far)",
        }[self.verdict]
        schedule = (
            f"{self.rounds} rounds × {self.epochs} epochs, batch {self.batch_size}"
            if self.unit == "patients"
            else f"{self.rounds} rounds, every one of them in each"
        )
        return (
            f"{self.units} {self.unit}: at ε = {self.epsilon:g} (δ = {self.delta:g}) over "
            f"{schedule}: noise "
            f"multiplier {self.noise_multiplier:.2f}, the noise per step is "
            f"{self.step_noise_to_signal:.2f}× the clipped signal, and over the run's "
            f"{self.steps} steps the signal is {self.run_signal_to_noise:.0f}× the noise: "
            f"{expect}"
        )


def plan(
    units: int,
    epsilon: float,
    delta: float,
    rounds: int,
    epochs: int,
    batch_size: int,
    accountant: str = "prv",
    state_dir: str | Path | None = None,
) -> PrivacyPlan:
    """The run's DP-SGD at a site: its calibrated noise and what it means.

    Args:
        units, epsilon, delta, rounds, epochs, batch_size, accountant: as
            :class:`PrivacyPlan`.
        state_dir: the site's state, whose noise cache the rounds share (optional).

    Raises:
        ConfigError: a value out of range (named, with what to give instead).
    """
    for name, value in (("patients", units), ("rounds", rounds), ("epochs", epochs)):
        if value < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")
    if batch_size < 1:
        raise ConfigError(f"batch-size must be at least 1, got {batch_size}")
    base = PrivacyPlan(units, epsilon, delta, rounds, epochs, batch_size, accountant=accountant)
    settings = DPSettings("local", epsilon, delta, accountant=accountant, rounds=rounds)
    per_round = base.steps // rounds
    # Opacus's PRV search probes noise levels whose numbers overflow; the result is sound.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        noise = calibrated_noise(
            settings, base.sample_rate, per_round, Path(state_dir) if state_dir else None
        )
    return replace(base, noise_multiplier=noise)


def consortium_signal_to_noise(sites: list[tuple[int, float]]) -> float:
    """The run's signal-to-noise of the global model that averages sites' DP-SGD.

    Args:
        sites: ``(patients, run signal-to-noise)`` of each site's plan
            (:attr:`PrivacyPlan.units`, :attr:`PrivacyPlan.run_signal_to_noise`).

    FedAvg weighs site ``i`` by its share ``w_i`` of the patients; if every site's
    updates carry the same signal and independent noise (site ``i``'s signal-to-noise
    ``r_i``), the average's noise is ``sqrt(Σ w_i² / r_i²)`` of the signal. A small site
    next to large ones is carried by them: its own plan says what its contribution is
    worth, this one what the consortium's model is.
    """
    total = sum(n for n, _ in sites)
    if not sites or total < 1 or any(not r > 0 for _, r in sites):
        raise ConfigError(f"a consortium needs sites with patients and a plan, got {sites}")
    return 1.0 / math.sqrt(sum((n / total) ** 2 / r**2 for n, r in sites))


def verdict_of(signal_to_noise: float) -> str:
    """The verdict for a run signal-to-noise (thresholds :data:`NO_LEARNING`,
    :data:`NEAR_NON_DP`)."""
    return VERDICTS[(signal_to_noise >= NO_LEARNING) + (signal_to_noise >= NEAR_NON_DP)]


def plan_central(sites: int, epsilon: float, delta: float, rounds: int) -> PrivacyPlan:
    """Central DP (``dp="central"``) planned the same way: the units are the sites, every
    site is in every round (sampling rate 1, one step a round), and the server's noise
    ``σ`` is calibrated as :mod:`server.central_dp` charges it (exact Gaussian
    composition over the rounds), against the unweighted average of ``sites`` updates
    each clipped to C: the noise per round is ``σ / sites`` of the clipped signal.

    Raises:
        ConfigError: fewer than one site or round, or ε not positive and finite.
    """
    from common.privacy.accountant import gaussian_noise_for_epsilon

    for name, value in (("sites", sites), ("rounds", rounds)):
        if value < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")
    noise = gaussian_noise_for_epsilon(epsilon, delta, rounds)
    return PrivacyPlan(
        sites, epsilon, delta, rounds, 1, sites, noise, accountant="gaussian", unit="sites"
    )


def alternatives(base: PrivacyPlan, state_dir=None) -> list[tuple[str, PrivacyPlan]]:
    """What a site could change, each planned: fewer rounds, a larger ε. Only changes
    that raise the verdict are returned.

    Larger logical batches (virtual steps) are not offered: their run signal-to-noise is
    higher, but at a fixed number of passes they mean 4-8x fewer steps, and on the chest
    X-rays they did no better (``bench/dp/sweep.py``: batch 32 0.894x, 64 0.858x against
    0.901x of the non-DP Dice at batch 8).
    """
    tries: list[tuple[str, dict]] = []
    if base.rounds > 1:
        tries.append((f"{max(1, base.rounds // 3)} rounds", {"rounds": max(1, base.rounds // 3)}))
    for factor in (2, 4):
        tries.append((f"ε = {base.epsilon * factor:g}", {"epsilon": base.epsilon * factor}))
    out, seen = [], set()
    for label, change in tries:
        fields = {**base.__dict__, **change, "noise_multiplier": 0.0}
        key = tuple(sorted(fields.items()))
        if key in seen:
            continue
        seen.add(key)
        fields.pop("noise_multiplier")
        fields.pop("unit")
        candidate = plan(**fields, state_dir=state_dir)
        if VERDICTS.index(candidate.verdict) > VERDICTS.index(base.verdict):
            out.append((label, candidate))
    return out
