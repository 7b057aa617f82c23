"""The DP benchmark's checks: the planner's forecast against each row, and the targets
(no data needed)."""

from __future__ import annotations

from bench.dp.run import checks, outcome, site_table

VENDORS = {"montgomery": "Eureka CR", "shenzhen": "Philips DR"}


def _row(mont: float, shen: float, snr: float | None = None, auc: float = 0.5) -> dict:
    """A row; ``snr``: each site's own forecast signal-to-noise (both sites 9 patients)."""
    from common.privacy.planner import verdict_of

    def m(d: float) -> dict:
        return {"dice": d, "iou": d / (2 - d)}

    plans = {
        s: {"verdict": verdict_of(snr), "run-signal-to-noise": snr, "units": 9, "unit": "patients"}
        for s in (VENDORS if snr else ())
    }
    attack = {s: {"auc": auc, "low": auc - 0.1, "high": auc + 0.1} for s in VENDORS}
    return {
        "metrics": {"overall": m((mont + shen) / 2), "Eureka CR": m(mont), "Philips DR": m(shen)},
        "seconds": 1.0,
        "epsilon": {"montgomery": 7.99, "shenzhen": 7.98},
        "planner": plans,
        "attack": attack,
    }


RESULT = {
    "vendors": VENDORS,
    "rows": {
        "federated ε=∞": {**_row(0.90, 0.90, auc=0.60), "epsilon": {}},
        # each site alone 400: the average of two is sqrt(2) x that, close to non-DP
        "local ε=8": _row(0.88, 0.70, snr=400.0),
        # each site alone 40: the average 57, no learning
        "local ε=3": _row(0.30, 0.85, snr=40.0),
    },
}


def test_outcomes_are_named_like_the_planners_verdicts():
    assert outcome(0.96) == "close to non-DP"
    assert outcome(0.80) == "learns, at a cost"
    assert outcome(0.30) == "no learning"


def test_the_models_forecast_is_checked_against_every_sites_vendor():
    lines = checks(RESULT)
    mont8 = next(x for x in lines if x.startswith("local ε=8, montgomery"))
    shen8 = next(x for x in lines if x.startswith("local ε=8, shenzhen"))
    assert "0.978x non-DP (close to non-DP); planner: close to non-DP" in mont8
    assert "(signal/noise 566; the site's own 400)" in mont8 and mont8.endswith("agrees")
    assert "0.778x non-DP (learns, at a cost)" in shen8 and shen8.endswith("DISAGREES")
    mont3 = next(x for x in lines if x.startswith("local ε=3, montgomery"))
    assert "planner: no learning (signal/noise 57" in mont3 and mont3.endswith("agrees")
    # the targets name the worst site
    assert "local ε=8: worst site 0.778x non-DP (>= 0.95: missed)" in lines
    assert "local ε=3: worst site 0.333x non-DP (>= 0.9: missed)" in lines


def test_site_table_has_a_line_per_row_and_site():
    text = site_table(RESULT)
    assert text.count("\n") == 2 + 3 * 2
    assert (
        "| local ε=8 | montgomery | 7.99 | close to non-DP (566) | learns, at a cost (400) | 0.978x"
        in text
    )
    assert "| federated ε=∞ | shenzhen | – | – | – | reference | 0.600 [0.500-0.700] |" in text
