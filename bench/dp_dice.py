"""Held-out Dice of federated training at ε = ∞ (no DP), 10 and 3 on the sample consortium.

Local DP (DP-SGD at each site) and central DP (the server clips each site's update and
adds noise; site-level ε) are separate settings.

Each setting is one Simulation Engine run (``fedsynth simulate``) on the same sample data
and settings; only DP changes. Every site's privacy state is reset between runs, so each
run's ε is its own. Results: the final round's held-out Dice overall and per vendor,
and the ε each site's ledger reports.

Usage::

    python bench/dp_dice.py [--rounds 6] [--epochs 2] [--workdir /tmp/fedsynth-dp-bench]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from common.privacy import ledger
from deploy.local.simulate import run_simulation

SETTINGS = {
    "inf": 'dp="off"',
    "10": 'dp="local" dp-epsilon=10.0',
    "3": 'dp="local" dp-epsilon=3.0',
    "central-10": 'dp="central" dp-epsilon=10.0',
    "central-3": 'dp="central" dp-epsilon=3.0',
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--sites", type=int, default=3)
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/fedsynth-dp-bench"))
    parser.add_argument("--extra", default="", help="more run_config for every setting")
    parser.add_argument(
        "--only", nargs="*", default=["inf", "10", "3"], help=f"settings to run: {list(SETTINGS)}"
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/dp_dice.json"))
    args = parser.parse_args()
    rows = []
    for eps, dp in SETTINGS.items():
        if eps not in args.only:
            continue
        for privacy in args.workdir.glob("state/*/privacy"):
            shutil.rmtree(privacy)  # a fresh accountant and ledger per setting
        shutil.rmtree(args.workdir / "registry", ignore_errors=True)
        start = time.perf_counter()
        report = run_simulation(
            args.workdir,
            args.sites,
            args.rounds,
            args.cases,
            extra=f"local-epochs={args.epochs} {args.extra} {dp}",
        )
        wall = time.perf_counter() - start
        rounds = [json.loads(x) for x in (report.parent / "metrics.jsonl").read_text().splitlines()]
        spent = {}
        for path in sorted(args.workdir.glob("state/*/privacy/ledger.jsonl")):
            entries = [e for e in ledger.read_lines(path) if e.get("dp")]
            spent[path.parent.parent.name] = entries[-1]["dp"]["epsilon_total"] if entries else None
        central = rounds[-1]["sites"].get("central-dp")
        if central:
            spent = central["epsilon"]
            norms = [
                n for r in rounds[1:] for n in r["sites"]["central-dp"]["update_norms"].values()
            ]
        final = rounds[-1]["heldout"]
        rows.append(
            {
                "epsilon": eps,
                "run_config": dp,
                "seconds": wall,
                "dice": {v: m["dice"] for v, m in final.items()},
                "iou": {v: m["iou"] for v, m in final.items()},
                "epsilon-spent": spent,
                **({"update-norms": norms} if central else {}),
            }
        )
        print(f"ε={eps:>3}: Dice {final['overall']['dice']:.3f}  ({wall:.0f} s)  spent {spent}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "measured": time.strftime("%Y-%m-%d %H:%M"),
                "rounds": args.rounds,
                "local-epochs": args.epochs,
                "sites": args.sites,
                "cases-per-site": args.cases,
                "extra": args.extra,
                "rows": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
