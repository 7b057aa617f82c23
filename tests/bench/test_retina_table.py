"""The retina benchmark's table and target checks (no data needed)."""

from __future__ import annotations

from bench.retina.run import table, targets


def _row(overall: float, canon: float, nidek: float, seconds: float = 10.0) -> dict:
    def m(d: float) -> dict:
        return {"dice": d, "iou": d / (2 - d)}

    return {
        "metrics": {"overall": m(overall), "Canon CR5": m(canon), "Nidek NM-200-D": m(nidek)},
        "seconds": seconds,
    }


RESULT = {
    "cases": {"heldout-vendors": {"Canon CR5": 20, "Nidek NM-200-D": 14}},
    "rows": {
        "centralised": _row(0.72, 0.76, 0.66),
        "human": _row(0.79, 0.79, 0.79, seconds=0.0),
        "federated": _row(0.70, 0.75, 0.60),
    },
}


def test_table_lists_rows_in_benchmark_order_with_dice_and_iou():
    lines = table(RESULT).splitlines()
    assert lines[0] == "| row | overall | Canon CR5 (20) | Nidek NM-200-D (14) | wall |"
    names = [line.split(" | ")[0].lstrip("| ") for line in lines[2:5]]
    assert names == ["human", "federated", "centralised"]  # ROWS order, not insertion
    assert "| 0.750 (0.600) |" in lines[3] and lines[2].endswith("| – |")


def test_targets_name_the_vendor_that_misses():
    checks = targets(RESULT)
    assert "Canon CR5: 0.987 (met)" in checks[0]
    assert "Nidek NM-200-D: 0.909 (missed)" in checks[1]
    assert checks[2].startswith("best DRIVE Dice 0.760 (centralised): 0.030 below")
