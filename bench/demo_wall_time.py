"""The default demo's total wall time and its results table, recorded as JSON.

Runs ``fedsynth demo`` in a fresh work folder (sample data generated, every process
started and stopped) and records the phases' wall times (``timings.json``), the held-out
Dice per vendor of the federated, centralised and local-only models, and the two quality
ratios the project tracks.

Usage::

    python bench/demo_wall_time.py [--out bench/results/demo.json] [--from-run RUN_DIR]

``--from-run`` records an existing demo run instead of starting a new one.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common.report import BASELINES_FILE, read_rounds, results_rows


def record(run_dir: Path, wall: float | None) -> dict:
    """Timings, results rows and target ratios of one demo run."""
    timings = json.loads((run_dir / "timings.json").read_text())
    baselines = json.loads((run_dir / BASELINES_FILE).read_text())
    rows = dict(results_rows(read_rounds(run_dir), baselines))
    fed = next(v for k, v in rows.items() if k.startswith("Federated, last"))
    central = rows["Centralised (all sites pooled)"]
    local = {k: v for k, v in rows.items() if k.startswith("Local-only")}
    seen = set(baselines["site-vendors"])
    unseen = [v for v in fed if v not in seen and v != "overall"]
    return {
        "measured": time.strftime("%Y-%m-%d %H:%M"),
        "wall-seconds": wall if wall is not None else timings["total"],
        "timings": timings,
        "dice": {
            name: {v: s["dice"] for v, s in summary.items()} for name, summary in rows.items()
        },
        "federated/centralised overall": fed["overall"]["dice"] / central["overall"]["dice"],
        "unseen vendors": {
            v: {
                "federated": fed[v]["dice"],
                "best local-only": max(s[v]["dice"] for s in local.values()),
            }
            for v in unseen
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/demo.json"))
    parser.add_argument("--from-run", type=Path, default=None)
    args = parser.parse_args()
    if args.from_run:
        result = record(args.from_run, None)
    else:
        with tempfile.TemporaryDirectory(prefix="fedsynth-demo-") as tmp:
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "deploy.cli.main", "demo", "--workdir", tmp], check=True
            )
            wall = time.perf_counter() - start
            result = record(next(Path(tmp, "runs").iterdir()), wall)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "dice"}, indent=2))


if __name__ == "__main__":
    main()
