"""DP-SGD really clips and adds noise; ε is cumulative, saved, and recomputed independently."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from common.privacy import audit, ledger
from common.privacy.accountant import MechanismStep, SiteAccountant, epsilon_of
from common.privacy.dp import DPSettings, RoundPlan, make_private, plan_round
from common.seg.networks import NETWORKS, create_network

# x has no gradient of its own; Opacus's hooks only need the parameters'.
pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook:UserWarning")


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.PReLU(),
        nn.ConvTranspose2d(16, 2, 3, stride=2, padding=1, output_padding=1),
        nn.InstanceNorm2d(2, affine=True),
    )


def _plan(noise: float, clip: float) -> RoundPlan:
    return RoundPlan(MechanismStep(noise or 1e-9, 0.5, 1), clip, 4, "rdp", 1e-5)


def _private_step(noise: float, clip: float, x: torch.Tensor):
    """One backward and Opacus pre-step (clip, sum, noise) on a fixed batch."""
    model = _net()
    reference = copy.deepcopy(model)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    private, opt, _ = make_private(model, opt, loader, _plan(noise, clip))
    opt.zero_grad()
    private(x).pow(2).mean().backward()
    opt.pre_step()
    summed = [p.summed_grad.clone() for p in private.parameters()]
    noisy = [p.grad.clone() * opt.expected_batch_size for p in private.parameters()]
    private.remove_hooks()
    return reference, summed, noisy


def _clipped_sum(model: nn.Module, x: torch.Tensor, clip: float) -> list[torch.Tensor]:
    """Per-sample gradients one by one, each clipped to ``clip``, summed."""
    total = [torch.zeros_like(p) for p in model.parameters()]
    for i in range(len(x)):
        model.zero_grad()
        model(x[i : i + 1]).pow(2).mean().backward()
        grads = [p.grad.clone() for p in model.parameters()]
        norm = torch.sqrt(sum((g**2).sum() for g in grads))
        scale = min(1.0, clip / (float(norm) + 1e-6))
        total = [t + g * scale for t, g in zip(total, grads)]
    return total


def test_per_sample_gradients_are_clipped_before_summing():
    x = torch.randn(6, 1, 8, 8) * 3
    clip = 0.05  # far below the per-sample gradient norms, so every sample is clipped
    reference, summed, _ = _private_step(0.0, clip, x)
    expected = _clipped_sum(reference, x, clip)
    for got, want in zip(summed, expected):
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-6)
    assert float(torch.sqrt(sum((g**2).sum() for g in summed))) <= clip * len(x) + 1e-6


def test_gaussian_noise_of_the_planned_scale_is_added():
    x = torch.randn(6, 1, 8, 8)
    noise, clip = 2.0, 0.5
    _, summed, noisy = _private_step(noise, clip, x)
    added = torch.cat([(n - s).flatten() for n, s in zip(noisy, summed)])
    assert added.numel() > 200
    assert abs(float(added.std()) / (noise * clip) - 1) < 0.15
    assert abs(float(added.mean())) < 0.2 * noise * clip


def test_custom_per_sample_rules_match_torch_func():
    from opacus.grad_sample import GradSampleModule

    from common.privacy import grad_samplers

    x = torch.randn(5, 1, 8, 8)

    def per_sample(force_functorch: bool):
        module = GradSampleModule(_net(), force_functorch=force_functorch)
        module(x).pow(2).sum().backward()
        return [p.grad_sample for p in module.parameters()]

    reference = per_sample(True)
    grad_samplers.register()
    assert nn.PReLU in GradSampleModule.GRAD_SAMPLERS
    for got, want in zip(per_sample(False), reference):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_networks_pass_opacus_module_validator(name):
    from opacus.validators import ModuleValidator

    assert ModuleValidator.validate(create_network(name), strict=False) == []


def test_epsilon_is_cumulative_and_survives_a_restart(tmp_path):
    step = MechanismStep(noise_multiplier=1.1, sample_rate=0.125, steps=24)
    acc = SiteAccountant.load(tmp_path, "prv")
    for _ in range(3):
        acc.record(step)
    acc.save(tmp_path)
    again = SiteAccountant.load(tmp_path, "prv")
    assert again.history == [step] * 3
    one_round = epsilon_of([step], 1e-5)
    assert again.epsilon(1e-5) > 1.5 * one_round  # not the per-round ε Flower's example prints
    with pytest.raises(ValueError, match="accounted with 'prv'"):
        SiteAccountant.load(tmp_path, "rdp")


@pytest.mark.parametrize("accountant", ["prv", "rdp"])
def test_recomputed_epsilon_matches_opacus(accountant):
    from opacus.accountants import PRVAccountant, RDPAccountant

    history = [(1.1, 0.125, 48), (0.9, 0.2, 30)]
    opacus = PRVAccountant() if accountant == "prv" else RDPAccountant()
    opacus.history = list(history)
    want = opacus.get_epsilon(delta=1e-5)
    got = audit.recompute_epsilon(history, 1e-5, accountant)
    assert got == pytest.approx(want, rel=0.01)


def test_recompute_flags_an_understated_epsilon(tmp_path):
    step = MechanismStep(1.0, 0.25, 8)
    acc = SiteAccountant(accountant="rdp")
    for r in (1, 2):
        acc.record(step)
        true_total = acc.epsilon(1e-5)
        dp = {
            "mechanism": "dp-sgd", "noise_multiplier": 1.0, "sample_rate": 0.25, "steps": 8,
            "max_grad_norm": 1.0, "accountant": "rdp", "delta": 1e-5,
            "epsilon_round": 0.0, "epsilon_total": true_total if r == 1 else true_total / 2,
        }  # fmt: skip
        ledger.append(tmp_path, site="s", run="1", server_round=r, kind="weights",
                      release=ledger.release_digest(), dp=dp)  # fmt: skip
    results = audit.recompute([tmp_path / ledger.LEDGER_FILE])
    assert [r.too_low for r in results] == [False, True]


def test_round_plan_calibrates_noise_to_the_target(tmp_path):
    settings = DPSettings(mode="local", epsilon=8.0, delta=1e-5, rounds=4, accountant="rdp")
    plan = plan_round(settings, n_train=20, batch_size=4, epochs=2, state_dir=tmp_path)
    assert plan.step.sample_rate == pytest.approx(0.2) and plan.step.steps == 10
    total = epsilon_of([plan.step] * 4, 1e-5, "rdp")
    assert 7.5 < total <= 8.0  # the whole run spends the target, not more
    assert (tmp_path / "privacy" / "noise_cache.json").exists()


def test_poisson_batches_that_draw_nobody_still_take_a_noisy_step():
    import numpy as np

    from common.data.arrays import SiteArrays
    from common.seg.training import TrainSettings, train

    n, size = 3, 32
    rng = np.random.default_rng(0)
    data = SiteArrays(
        images=rng.random((n, 1, size, size)).astype(np.float16),
        masks=(rng.random((n, size, size)) > 0.9).astype(np.uint8),
        vendors=np.array(["v"] * n),
        cases=np.array([f"c{i}" for i in range(n)]),
        masks2=np.zeros((n, size, size), np.uint8),
        has_mask2=np.zeros(n, bool),
        fov=np.ones((n, size, size), np.uint8),
    )
    # q = 1/3 over 3 cases: a batch is empty with probability 8/27, so 60 steps meet many
    plan = plan_round(DPSettings(mode="local", noise_multiplier=1.0), n, 1, 20)
    stats = train(create_network("unet"), data, TrainSettings(epochs=20, batch_size=1), dp=plan)
    assert stats.steps == plan.step.steps == 60


@pytest.mark.parametrize(
    ("epsilon", "rate", "steps"), [(1.0, 0.1, 50), (8.0, 0.5, 10), (200.0, 0.5, 1)]
)
def test_noise_search_agrees_with_opacus_and_never_overspends(epsilon, rate, steps):
    from opacus.accountants.utils import get_noise_multiplier

    from common.privacy.accountant import noise_for_epsilon

    noise = noise_for_epsilon(epsilon, 1e-5, rate, steps, "rdp")
    spent = epsilon_of([MechanismStep(noise, rate, steps)], 1e-5, "rdp")
    assert epsilon - 0.01 <= spent <= epsilon
    theirs = get_noise_multiplier(
        target_epsilon=epsilon,
        target_delta=1e-5,
        sample_rate=rate,
        steps=steps,
        accountant="rdp",
        epsilon_tolerance=0.01,
    )
    assert noise == pytest.approx(theirs, rel=0.02)
