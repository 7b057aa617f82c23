"""The chest X-ray benchmark's target checks (no data needed)."""

from __future__ import annotations

import pytest

from bench.cxr.run import cross_site, targets

VENDORS = {"montgomery": "CR", "shenzhen": "DR", "jsrt": "film"}


def _row(cr: float, dr: float, film: float) -> dict:
    m = {"CR": {"dice": cr}, "DR": {"dice": dr}, "film": {"dice": film}}
    return {"metrics": {**m, "overall": {"dice": (cr + dr + film) / 3}}, "seconds": 1.0}


def test_strong_augmentation_is_judged_on_the_sites_the_model_never_saw():
    result = {
        "vendors": VENDORS,
        "rows": {
            "jsrt alone": _row(0.85, 0.92, 0.97),
            # better on its own site, worse on the others: the target is missed
            "jsrt alone, strong augmentation": _row(0.84, 0.91, 0.99),
            "montgomery alone": _row(0.93, 0.90, 0.92),
            "montgomery alone, strong augmentation": _row(0.90, 0.92, 0.93),
        },
    }
    lines = [t for t in targets(result) if "other sites" in t]
    assert len(lines) == 2
    jsrt = next(t for t in lines if t.startswith("jsrt"))
    assert "standard 0.885, strong 0.875" in jsrt and jsrt.endswith("missed)")
    mont = next(t for t in lines if t.startswith("montgomery"))
    assert "standard 0.910, strong 0.925" in mont and mont.endswith("met)")
    assert cross_site(result["rows"]["jsrt alone"]["metrics"], ["CR", "DR"]) == pytest.approx(0.885)
