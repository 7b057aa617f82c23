"""The same apps on Flower's Simulation Engine, with virtual sites found by partition-id."""

from __future__ import annotations

import importlib.util
import json

import pytest

from deploy.local.simulate import run_simulation

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="Ray missing: pip install -e '.[simulation]'"
)
def test_simulation_engine_with_central_dp_charges_every_site_each_round(tmp_path):
    """Virtual sites found by partition-id all train; central DP charges each of them;
    the held-out set is scored every eval-every rounds."""
    from common.privacy.accountant import gaussian_epsilon

    report = run_simulation(
        tmp_path,
        n_sites=3,
        rounds=2,
        cases_per_site=4,
        extra='local-epochs=1 image-size=32 eval-every=2 dp="central" '
        "dp-noise-multiplier=2.0 dp-central-clip=0.5",
    )
    rounds = [json.loads(x) for x in (report.parent / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rounds] == [0, 1, 2]
    assert [r["round"] for r in rounds if r["heldout"]] == [0, 2]
    for r in rounds[1:]:
        trained = sorted(t["site"] for t in r["sites"]["trained"])
        assert trained == ["site-1", "site-2", "site-3"]
        central = r["sites"]["central-dp"]
        assert sorted(central["sites"]) == ["site-1", "site-2", "site-3"]
        assert central["noise_std"] == pytest.approx(2.0 * 0.5 / 3)
        assert central["clipped"] == sum(n > 0.5 for n in central["update_norms"].values())
        expected = gaussian_epsilon([2.0] * r["round"], 1e-5)
        assert central["epsilon"] == {s: pytest.approx(expected) for s in central["sites"]}
    assert "central DP" in report.read_text()
