from __future__ import annotations

import json

from common.report import render, results_rows


def _summary(d):
    return {
        "overall": {"dice": d, "iou": d / 2, "hd95": 3.0, "n": 2},
        "Vendor A": {"dice": d, "iou": d / 2, "hd95": 3.0, "n": 1},
        "Vendor X": {"dice": d - 0.1, "iou": 0.1, "hd95": 9.0, "n": 1},
    }


def test_report_has_results_table_plots_and_site_fates(tmp_path):
    lines = [
        {"round": 0, "time": 0, "heldout": _summary(0.1), "sites": {}},
        {
            "round": 1,
            "time": 1,
            "heldout": _summary(0.7),
            "sites": {
                "asked": 3,
                "trained": [
                    {
                        "site": "s1",
                        "num-examples": 8,
                        "train-loss": 0.5,
                        "val-dice": 0.6,
                        "train-seconds": 1.0,
                    }
                ],
                "declined": [{"site": "s2", "reason": "no usable cases <b>"}],
                "failed": [],
                "missing": 1,
            },
        },
        {"round": 2, "time": 2, "heldout": _summary(0.6), "sites": {}},
    ]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    (tmp_path / "baselines.json").write_text(
        json.dumps(
            {
                "epochs": 6,
                "site-vendors": ["Vendor A"],
                "centralised": _summary(0.8),
                "local-only": {"s1": _summary(0.5)},
            }
        )
    )
    html = render(tmp_path).read_text()
    assert html.count("data:image/png;base64") == 2
    assert "Federated, best round (1)" in html and "Federated, last round (2)" in html
    assert "Centralised" in html and "Local-only: s1" in html
    assert "(no site has it)" in html and "no usable cases &lt;b&gt;" in html
    assert "no reply within the round timeout" in html


def test_best_round_ignores_the_initial_model():
    rounds = [{"round": 0, "heldout": _summary(0.9)}, {"round": 1, "heldout": _summary(0.2)}]
    names = [n for n, _ in results_rows(rounds, {})]
    assert names == ["Federated, last round (1)", "Federated, best round (1)"]
