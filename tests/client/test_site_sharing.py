"""What a site agrees to share, from its own node_config: weights, synthetic pairs, or not."""

from __future__ import annotations

import pytest

from client.synthesis import synthesize_round
from client.task import Declined, train_round
from common.config import RunSettings, SiteSettings


def _site(tmp_path, **own) -> SiteSettings:
    return SiteSettings(str(tmp_path / "data"), str(tmp_path / "state"), "site-a", **own)


def test_a_site_that_shares_synthetic_pairs_only_declines_to_train(tmp_path):
    run = RunSettings(share="exchange")
    with pytest.raises(Declined, match="synthetic pairs only.*share-weights=false"):
        train_round(_site(tmp_path, share_weights=False), run, {}, server_round=1)


def test_a_site_that_shares_no_pairs_declines_to_synthesize(tmp_path):
    run = RunSettings(share="exchange")
    with pytest.raises(Declined, match="share-synthetic=false"):
        synthesize_round(_site(tmp_path, share_synthetic=False), run, server_round=1)
