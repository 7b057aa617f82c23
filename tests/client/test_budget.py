"""A site with a privacy budget trains under DP until the next round would exceed it."""

from __future__ import annotations

import pytest
import torch

from client.task import Declined, load_site, train_round
from common.config import RunSettings, SiteSettings
from common.privacy.accountant import SiteAccountant, epsilon_of
from common.seg.networks import create_network

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _weights():
    torch.manual_seed(0)
    return {k: v.numpy() for k, v in create_network("unet").state_dict().items()}


def _run(**dp) -> RunSettings:
    return RunSettings(local_epochs=1, image_size=64, batch_size=4, num_server_rounds=5, **dp)


def test_site_declines_the_round_that_would_exceed_its_budget(tiny_consortium, tmp_path, prepare):
    data, _ = tiny_consortium
    run = _run(dp="local", dp_noise_multiplier=1.0, dp_accountant="rdp", warm_start="phantoms")
    prepare(data / "site-1", tmp_path / "s", 64)
    probe = SiteSettings(data_dir=str(data / "site-1"), state_dir=str(tmp_path / "s"))
    n_train = len(load_site(probe, run)[0])
    from common.privacy.dp import plan_round

    step = plan_round(run.dp_settings(), n_train, run.batch_size, run.local_epochs).step
    one, two = epsilon_of([step], 1e-5, "rdp"), epsilon_of([step] * 2, 1e-5, "rdp")
    site = SiteSettings(
        data_dir=str(data / "site-1"), state_dir=str(tmp_path / "s"), max_epsilon=(one + two) / 2
    )

    first = train_round(site, run, _weights(), server_round=1)
    assert first.dp["epsilon_total"] == pytest.approx(one, rel=1e-6)
    assert first.dp["steps_taken"] == step.steps  # every planned step ran, no more
    assert first.train_loss != first.train_loss  # NaN: loss is not disclosed under DP
    assert first.dp["warm_start"] == "phantoms"  # the ledger says where fine-tuning began
    for server_round in (2, 3):
        with pytest.raises(Declined, match="privacy budget"):
            train_round(site, run, _weights(), server_round=server_round)
    assert len(SiteAccountant.load(site.state_dir, "rdp").history) == 1  # nothing spent


def test_site_with_a_budget_refuses_to_train_without_dp(tiny_consortium, tmp_path):
    data, _ = tiny_consortium
    site = SiteSettings(data_dir=str(data / "site-1"), state_dir=str(tmp_path), max_epsilon=5.0)
    with pytest.raises(Declined, match="dp=off"):
        train_round(site, _run(), _weights(), server_round=1)
