"""Central DP: Flower's server-side clipping and noise, with uniform weights and per-site ε."""

from __future__ import annotations

import json

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping

from common import keys
from common.config import RunSettings
from common.errors import ConfigError
from common.privacy.accountant import MechanismStep, epsilon_of, gaussian_epsilon
from server.central_dp import STATE_FILE, CentralDPAccountant
from server.strategies import create_strategy

D = 20_000  # parameters: enough for the noise's norm to be measured to a few percent


def _site(name: str, w: np.ndarray, n: int = 10) -> RecordDict:
    return RecordDict(
        {
            keys.ARRAYS: ArrayRecord({"w": Array(w.astype(np.float32))}),
            keys.METRICS: MetricRecord({keys.NUM_EXAMPLES: n}),
            keys.SITE: ConfigRecord({keys.SITE_NAME: name}),
        }
    )


def _strategy(tmp_path, noise: float, clip: float):
    run = RunSettings(dp="central", dp_noise_multiplier=noise, dp_central_clip=clip, min_sites=1)
    s = create_strategy(run, tmp_path)
    s.current_arrays = ArrayRecord({"w": Array(np.zeros(D, np.float32))})  # the global model
    return s


def test_central_dp_wraps_flowers_server_side_clipping(tmp_path):
    s = _strategy(tmp_path, 1.0, 1.0)
    assert isinstance(s, DifferentialPrivacyServerSideFixedClipping)
    assert s.min_available_nodes == 1 and s.rounds == {}


def test_updates_are_clipped_averaged_unweighted_and_noised(tmp_path, make_reply):
    np.random.seed(0)
    s = _strategy(tmp_path, noise=1e-6, clip=1.0)  # almost no noise: see the clipping
    big = np.full(D, 10.0 / np.sqrt(D))  # update norm 10: clipped to 1
    small = np.full(D, -0.5 / np.sqrt(D))  # norm 0.5: kept
    replies = [make_reply(_site("A", big, n=1000), 1), make_reply(_site("B", small, n=1), 2)]
    arrays, _ = s.aggregate_train(1, replies)
    got = arrays["w"].numpy()
    # unweighted mean of the clipped updates, not weighted by 1000 : 1 examples
    expected = (np.full(D, 1.0 / np.sqrt(D)) + small) / 2
    assert np.allclose(got, expected, atol=5e-6)
    privacy = s.rounds[1].to_json()["central-dp"]
    assert privacy["clipped"] == 1 and privacy["sites"] == ["A", "B"]
    assert privacy["update_norms"]["A"] == pytest.approx(10.0, rel=1e-4)


def test_noise_std_is_sigma_clip_over_the_sites_used(tmp_path, make_reply):
    np.random.seed(1)
    s = _strategy(tmp_path, noise=2.0, clip=0.5)
    zero = np.zeros(D)
    declined = RecordDict({keys.SITE: ConfigRecord({keys.SITE_NAME: "C", keys.DECLINED: "x"})})
    replies = [make_reply(_site("A", zero), 1), make_reply(_site("B", zero), 2)]
    arrays, _ = s.aggregate_train(1, [*replies, make_reply(declined, 3)])
    std = arrays["w"].numpy().std()
    assert std == pytest.approx(2.0 * 0.5 / 2, rel=0.03)  # k = 2 used, not 3 asked
    assert s.rounds[1].to_json()["central-dp"]["noise_std"] == pytest.approx(0.5)


def test_epsilon_is_per_site_and_cumulative(tmp_path, make_reply):
    s = _strategy(tmp_path, noise=3.0, clip=1.0)
    zero = np.zeros(D)
    s.aggregate_train(1, [make_reply(_site("A", zero), 1), make_reply(_site("B", zero), 2)])
    s.aggregate_train(2, [make_reply(_site("A", zero), 1)])  # B declined or failed
    eps = s.rounds[2].to_json()["central-dp"]["epsilon"]
    expected_a = gaussian_epsilon([3.0, 3.0], 1e-5)
    assert eps == {"A": pytest.approx(expected_a, rel=1e-9)}
    assert s.site_accountant.epsilon("B") == pytest.approx(gaussian_epsilon([3.0], 1e-5))
    assert s.site_accountant.epsilon("B") < expected_a
    saved = CentralDPAccountant(1.0)
    saved.load_state_dict(json.loads((tmp_path / STATE_FILE).read_text()))
    assert saved.rounds == {"A": [3.0, 3.0], "B": [3.0]}


def test_noise_is_calibrated_to_the_run_epsilon(tmp_path):
    run = RunSettings(dp="central", dp_epsilon=8.0, num_server_rounds=5)
    s = create_strategy(run, tmp_path)
    assert gaussian_epsilon([s.noise_multiplier] * 5, run.dp_delta) == pytest.approx(8.0, 1e-4)


@pytest.mark.parametrize(("noise", "rounds"), [(1.0, 1), (2.0, 10), (5.0, 3)])
def test_analytic_gaussian_epsilon_matches_opacus_prv(noise, rounds):
    exact = gaussian_epsilon([noise] * rounds, 1e-5)
    prv = epsilon_of([MechanismStep(noise, 1.0, rounds)], 1e-5, "prv")
    assert exact == pytest.approx(prv, rel=0.02)


def test_bad_central_clip_is_refused():
    with pytest.raises(ConfigError, match="dp-central-clip"):
        RunSettings(dp="central", dp_central_clip=0.0)
