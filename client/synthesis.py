"""What a hospital does when asked for synthetic pairs: train its generator, sample, gate.

The site's diffusion model (:mod:`common.synth.diffusion`) is trained once on the site's
training split and kept in ``STATE/synth/diffusion.pt`` with a fingerprint of the data
and settings it was trained on; later releases sample from it with a new seed (under
DP, sampling again is post-processing and spends no more ε). Every sample passes the
memorisation gate (:mod:`common.synth.memorisation`) against the training split, with the
site's validation split as the held-out reference, before it may leave.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from client.task import Declined, load_site, site_seed
from common.config import RunSettings, SiteSettings
from common.data.arrays import SiteArrays
from common.privacy.dp import charge
from common.seg.patches import random_patches

if TYPE_CHECKING:
    from common.synth.diffusion import DiffusionSettings, DiffusionStats

logger = logging.getLogger(__name__)

MODEL_FILE = Path("synth") / "diffusion.pt"
RELEASES_DIR = Path("synth") / "releases"  # gated releases, kept: the same seed draws them again
PATCHES_PER_IMAGE = 16  # with synth-patch: patches per image to learn from and to gate against


@dataclass
class SynthResult:
    """Released pairs and what the site may say about them."""

    images: np.ndarray  # (k, C, S, S) float16 in [0, 1]
    masks: np.ndarray  # (k, S, S) uint8
    gate: dict  # common.synth.memorisation.GateResult.summary()
    train_seconds: float
    sample_seconds: float
    trained_now: bool
    dp: dict | None = None
    quality: dict | None = None  # against the site's validation split (never under DP)


def _fingerprint(train, settings, dp_mode: str) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([settings.to_json(), dp_mode], sort_keys=True).encode())
    for case in sorted(str(c) for c in train.cases):
        h.update(case.encode())
    h.update(np.ascontiguousarray(train.images).tobytes())
    return h.hexdigest()[:24]


def synthesize_round(site: SiteSettings, run: RunSettings, server_round: int) -> SynthResult:
    """Train (or reuse) the site's generator, sample ``synth-n`` pairs and gate them.

    Args:
        site: this hospital's settings.
        run: the consortium's settings (``synth-*``, ``dp-*``, ``seed``).
        server_round: the round asking (seeds the samples).

    Returns:
        :class:`SynthResult` with only the pairs that passed the gate.

    Raises:
        Declined: no usable data, or DP over the site's budget.
    """
    if not site.share_synthetic:
        raise Declined("this site releases no synthetic pairs (node_config share-synthetic=false)")
    dp = run.dp_settings(site)
    if dp.budget and not dp.enabled:
        raise Declined(
            f"this site has a privacy budget (max-epsilon={dp.budget:g}) and releases only "
            f"under local differential privacy (dp=local), but the run has dp={dp.mode}"
        )
    train, val = generator_data(*load_site(site, run), run)
    generator = ensure_generator(site, run, train)
    model, settings, trained_dp = generator.model, generator.settings, generator.dp
    start = time.perf_counter()
    seed = run.seed * 100_003 + server_round * 1009 + site_seed(site)
    key = _release_key(train, val, settings, run, seed)
    cached = _load_release(site, key)
    if cached is not None:  # the same generator, seed and checks: the same pairs again
        images, masks, summary, quality = cached
        logger.info("synthetic release: the gated pairs drawn before with this seed")
    else:
        from common.synth import diffusion

        def draw(n: int, seed: int):
            return diffusion.sample(model, settings, n, seed=seed)

        images, masks, summary = draw_release(draw, run, seed, train, val)
        logger.info(
            "synthetic release: %d drawn, %d with masks unlike the site's, %d dropped by the "
            "memorisation gate, %d released",
            summary["generated"],
            summary["implausible"],
            summary["dropped"],
            summary["released"],
        )
        quality = None
        if trained_dp is None:  # under DP only the pairs leave: no statistic of real data
            quality = release_quality(images.astype(np.float32), masks, val)
        _save_release(site, key, images, masks, summary, quality)
    return SynthResult(
        images=images,
        masks=masks,
        gate=summary,
        train_seconds=generator.seconds,
        sample_seconds=time.perf_counter() - start,
        trained_now=generator.trained_now,
        dp=_release_dp(site, trained_dp),
        quality=quality,
    )


def draw_release(draw, run: RunSettings, seed: int, train, val):
    """Draw pairs (``draw(n, seed) -> (images, masks)``: the site's generator) until
    ``synth-n`` pass the mask check and the memorisation gate, or until
    ``synth-draw-factor × synth-n`` have been drawn.

    With the mask check on, the released pairs also keep the mix of structure counts of
    the site's real masks (:meth:`common.synth.mask_check.MaskRange.quotas`): a pair whose
    count's share is already filled is not released. Each draw after the first is sized
    by the share that passed so far. Every drawn pair is accounted for: ``generated =
    implausible + dropped + released + surplus`` (surplus: passed, but its count's share,
    or ``synth-n``, was already reached).

    Returns:
        ``(images float16, masks uint8, summary)``; ``summary`` is the gate's summary over
        all draws, with ``implausible`` (masks outside the site's range, by reason in
        ``mask_check``, which also has the quotas and how many were filled), ``surplus``
        and ``draws``.
    """
    from common.synth.mask_check import MaskRange
    from common.synth.memorisation import gate

    wanted, budget = run.synth_n, run.synth_n * run.synth_draw_factor
    reference = None
    if run.synth_mask_quantile:
        reference = MaskRange.of(train.masks, run.synth_mask_quantile, run.synth_mask_size_bins)
    quota = reference.quotas(wanted) if reference else [wanted]
    filled = [0] * len(quota)
    kept_images, kept_masks, summaries = [], [], []
    drawn, implausible, surplus, draws = 0, 0, 0, 0
    reasons = {"structures": 0, "foreground": 0}
    while sum(filled) < wanted and drawn < budget:
        n = wanted
        if drawn:  # sized by the scarcest bin's pass rate so far (at least 1 in the factor)
            floor = 1 / run.synth_draw_factor
            n = max(
                math.ceil((q - f) / max(f / drawn, floor * q / wanted) * 1.1)
                for q, f in zip(quota, filled)
                if q > f
            )
            n = max(8, n)
        n = min(budget - drawn, n)
        images, masks = draw(n, seed + draws)
        drawn, draws = drawn + n, draws + 1
        plausible, bins = np.ones(n, bool), np.zeros(n, np.int64)
        if reference is not None:
            plausible, why = reference.check(masks)
            bins = reference.bin_of(masks)
            implausible += int((~plausible).sum())
            reasons = {k: reasons[k] + why[k] for k in reasons}
        # in draw order, up to each bin's room and a quarter more (the gate drops some)
        room = [math.ceil((q - f) * 1.25) + 1 if q > f else 0 for q, f in zip(quota, filled)]
        candidates = []
        for i in np.flatnonzero(plausible):
            if room[bins[i]] > 0:
                room[bins[i]] -= 1
                candidates.append(i)
        surplus += int(plausible.sum()) - len(candidates)
        if not candidates:
            continue
        verdict = gate(
            images[candidates], train.images, val.images, quantile=run.synth_gate_quantile
        )
        summaries.append(verdict.summary())
        for i in np.asarray(candidates)[verdict.keep]:
            if filled[bins[i]] == quota[bins[i]]:
                surplus += 1
                continue
            filled[bins[i]] += 1
            kept_images.append(images[i].astype(np.float16))
            kept_masks.append(masks[i])
        logger.info(  # a line per draw: a large release takes minutes
            "synthetic release: draw %d, %d pairs: %d of %d released so far (%d drawn of at "
            "most %d)",
            draws,
            n,
            sum(filled),
            wanted,
            drawn,
            budget,
        )
    if kept_images:
        images, masks = np.stack(kept_images), np.stack(kept_masks)
    else:  # nothing passed: empty arrays of the drawn pairs' shape
        images, masks = images[:0].astype(np.float16), masks[:0]
    summary = _merge_gate_summaries(summaries)
    check = None
    if reference is not None:
        check = {**reference.summary(), "outside": reasons, "quotas": quota, "filled": filled}
    summary.update(
        generated=drawn,
        implausible=implausible,
        released=int(len(images)),
        surplus=surplus,
        draws=draws,
        mask_check=check,
    )
    return images, masks, summary


def _merge_gate_summaries(summaries: list[dict]) -> dict:
    """One gate summary over several draws (the thresholds are the same in each: they come
    from the held-out images): counts added, the held-out-median share weighted."""
    if not summaries:
        return {"dropped": 0, "thresholds_from": "none: no pair reached the gate"}
    out = dict(summaries[0])
    gated = sum(s["generated"] for s in summaries)
    out["gated"] = gated
    out["dropped"] = sum(s["dropped"] for s in summaries)
    shares = [(s["closer_than_holdout_median"], s["generated"]) for s in summaries]
    if all(v is not None for v, _ in shares) and gated:
        out["closer_than_holdout_median"] = round(sum(v * w for v, w in shares) / gated, 4)
    return out


def _release_key(train, val, settings, run: RunSettings, seed: int) -> str:
    """What a gated release is a deterministic function of: the generator (its data and
    settings), the noise seed, ``synth-n``, the checks' settings and held-out images."""
    h = hashlib.sha256()
    dp_mode = run.dp_settings().mode
    parts = [
        _fingerprint(train, settings, dp_mode),
        seed,
        run.synth_n,
        run.synth_gate_quantile,
        run.synth_mask_quantile,
        run.synth_draw_factor,
    ]
    if run.synth_mask_size_bins != 1:  # releases made before the setting keep their keys
        parts.append(run.synth_mask_size_bins)
    h.update(json.dumps(parts).encode())
    h.update(np.ascontiguousarray(val.images).tobytes())
    return h.hexdigest()[:24]


def _load_release(site: SiteSettings, key: str):
    """``(images, masks, gate summary, quality)`` of a release made before, or ``None``."""
    path = site.state_path / RELEASES_DIR / f"{key}.npz"
    if not path.exists():
        return None
    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
        return z["images"], z["masks"], meta["gate"], meta["quality"]


def _save_release(site: SiteSettings, key: str, images, masks, summary, quality) -> None:
    """Keep a gated release at the site (sampling and gating a large one takes minutes)."""
    folder = site.state_path / RELEASES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    meta = json.dumps({"gate": summary, "quality": quality})
    tmp = folder / f"{key}.tmp.npz"
    np.savez_compressed(tmp, images=images, masks=masks, meta=np.asarray(meta))
    tmp.replace(folder / f"{key}.npz")


def release_quality(images: np.ndarray, masks: np.ndarray, val: SiteArrays) -> dict | None:
    """How the released pairs compare with the site's own validation split (real images
    the generator never saw): the classifier two-sample accuracy (0.5: indistinguishable),
    the random-feature Fréchet distance, and the masks' foreground share, real and
    synthetic. ``None`` with fewer than 8 of either."""
    from common.synth.quality import frechet_distance, mask_statistics
    from common.synth.two_sample import classifier_two_sample

    if min(len(images), len(val)) < 8:
        return None
    real = val.images.astype(np.float32)
    two = classifier_two_sample(real, val.masks, images, masks)
    return {
        "two-sample-accuracy": two["accuracy"],
        "frechet-distance": frechet_distance(real, images),
        "foreground-real": mask_statistics(val.masks)["foreground_share"],
        "foreground-synthetic": mask_statistics(masks)["foreground_share"],
    }


def generator_data(train: SiteArrays, val: SiteArrays, run: RunSettings):
    """What the generator learns from (``train``) and what its gate holds out (``val``).

    The site's splits as they are; with ``synth-patch``, random patches of them at the
    generator's size (``PATCHES_PER_IMAGE`` per image, mostly inside the field of view),
    so that thin structures keep the resolution they have at ``image-size``. The gate then
    compares each synthetic patch with these training patches, a sample of all the
    patches an image holds: it catches a copied patch only if that patch was drawn.

    Returns:
        ``(train, val)`` :class:`common.data.arrays.SiteArrays`.
    """
    if not run.synth_patch:
        return train, val
    size = run.diffusion_settings().image_size
    return (
        random_patches(train, size, PATCHES_PER_IMAGE, run.seed),
        random_patches(val, size, PATCHES_PER_IMAGE, run.seed + 1),
    )


def _release_dp(site: SiteSettings, trained: dict | None) -> dict | None:
    """The ledger's DP record for a release from a generator trained under ``trained``.

    The first release from a DP-trained generator carries its DP-SGD record (that is when
    the ledger learns of the ε its training spent); later releases are post-processing
    of the same model and spend nothing. ``epsilon_total`` is the site's total now.
    """
    from common.privacy import ledger
    from common.privacy.accountant import SiteAccountant

    if trained is None:
        return None
    total = SiteAccountant.load(site.state_dir, trained["accountant"]).epsilon(trained["delta"])
    path = site.state_path / ledger.LEDGER_FILE
    seen = path.exists() and any(
        (e.get("dp") or {}).get("generator") == trained["generator"]
        for e in ledger.read_lines(path)
    )
    if not seen:
        return {**trained, "epsilon_total": total}
    return {
        "mechanism": "post-processing",
        "generator": trained["generator"],
        "delta": trained["delta"],
        "accountant": trained["accountant"],
        "budget": trained.get("budget"),
        "epsilon_round": 0.0,
        "epsilon_total": total,
    }


class Generator(NamedTuple):
    """A site's generator, ready to sample, and what this call did to get it."""

    model: Any
    settings: DiffusionSettings
    dp: dict | None  # the ledger's record of its DP-SGD training; None: trained without DP
    training: DiffusionStats | None  # trained in this call; None: reused

    @property
    def trained_now(self) -> bool:
        return self.training is not None

    @property
    def seconds(self) -> float:
        """Training seconds spent in this call (0: reused)."""
        return self.training.seconds if self.training else 0.0

    def describe(self) -> str:
        """``trained N steps in S s``, and why it stopped short of its steps if it did."""
        t = self.training
        text = f"trained {t.steps} steps in {t.seconds:.0f} s"
        if t.out_of_time:
            text += (
                f" (stopped by synth-train-minutes={self.settings.train_minutes:g}, "
                f"short of {t.planned_steps})"
            )
        return text


def ensure_generator(site: SiteSettings, run: RunSettings, train=None, progress=None) -> Generator:
    """The site's trained generator: loaded if it matches the data and settings, else trained.

    Args:
        site: this hospital's settings.
        run: the consortium's settings.
        train: the site's training split (loaded if ``None``).
        progress: ``progress(step, total)`` while training.

    Returns:
        A :class:`Generator`.
    """
    from common.synth import diffusion

    if train is None:
        train, _ = generator_data(*load_site(site, run), run)
    dp = run.dp_settings(site)
    settings = replace(run.diffusion_settings(), image_channels=train.channels)
    path = site.state_path / MODEL_FILE
    fingerprint = _fingerprint(train, settings, dp.mode)
    if path.exists():
        model, _, meta = diffusion.load(path)
        if meta.get("fingerprint") == fingerprint:
            return Generator(model, settings, meta.get("dp"), None)
    model, dp_record, stats = _train(site, train, settings, dp, progress)
    if dp_record is not None:
        dp_record["generator"] = fingerprint  # ties later releases to this training
    meta = {
        "fingerprint": fingerprint,
        "dp": dp_record,
        "train_seconds": stats.seconds,
        "steps": stats.steps,
        "planned_steps": stats.planned_steps,
    }
    diffusion.save(path, model, settings, meta)
    return Generator(model, settings, dp_record, stats)


def _train(site: SiteSettings, train, settings, dp, progress=None):
    """Train the generator (DP-SGD under ``dp=local``, within the site's budget)."""
    from common.synth import diffusion

    model = diffusion.create_model(settings)
    plan = accountant = None
    if dp.enabled:
        # the privacy unit is the patient, as for the segmentation model
        plan, accountant = _plan(site, dp, train.patients, settings)
    ema, stats = diffusion.train_diffusion(
        model,
        train.images.astype(np.float32),
        train.masks,
        settings,
        dp=plan,
        progress=progress,
        patients=train.patient_images(),
    )
    record = None
    if plan is not None:
        record = charge(
            plan,
            accountant,
            site.state_dir,
            stats.steps,
            dp.budget,
            model="diffusion",
            unit="patient",
            patients=train.patients,
        )
    if stats.out_of_time:
        logger.warning(
            "generator training stopped by its time budget (synth-train-minutes=%g) after "
            "%d of %d steps (%.0f s)",
            settings.train_minutes,
            stats.steps,
            stats.planned_steps,
            stats.seconds,
        )
    else:
        logger.info("generator trained: %d steps in %.0f s", stats.steps, stats.seconds)
    return ema, record, stats


def _plan(site: SiteSettings, dp, n_train: int, settings):
    """The generator's DP-SGD plan (noise for dp-epsilon over its whole training)."""
    from common.errors import ConfigError
    from common.privacy.accountant import SiteAccountant
    from common.privacy.dp import plan_round

    batches = math.ceil(n_train / settings.batch_size)
    epochs = max(1, math.ceil(settings.train_steps / batches))
    try:
        # trained once: the target ε covers this one training, not num-server-rounds
        plan = plan_round(
            replace(dp, rounds=1), n_train, settings.batch_size, epochs, site.state_dir
        )
        accountant = SiteAccountant.load(site.state_dir, dp.accountant)
    except ConfigError as exc:
        raise Declined(str(exc)) from None
    spent = accountant.epsilon(dp.delta)
    after = accountant.epsilon_after(plan.step, dp.delta)
    if dp.budget and after > dp.budget:
        raise Declined(
            f"privacy budget: training the generator would bring the site's epsilon from "
            f"{spent:.2f} to {after:.2f}, over its max-epsilon={dp.budget:g} "
            f"(delta={dp.delta:g})"
        )
    return plan, accountant
