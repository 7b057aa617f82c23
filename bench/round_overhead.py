"""Per-round overhead of a federated round with 3 sites, before and after reducing it.

Overhead = round wall time - the slowest site's time in its training loop - the
server's held-out evaluation. All configurations run side by side in one invocation on
the same sample data, each with a fresh SuperLink and 3 SuperNodes on localhost:

* ``flower-defaults``: what an app gets without FedSynth's changes: Flower's Grid reply
  poll (3 s), SuperExec task poll (1 s), a client-side evaluate round after each train
  round (a second ClientApp process per site), every process importing torch + MONAI;
* ``prompt-polls``: reply poll 0.1 s, SuperExec poll 0.1 s, no client-side evaluate round;
* ``prompt-polls+trainer``: the above plus a warm site trainer beside each SuperNode
  (the demo's default);
* ``empty-app``: a Flower App that does nothing (``bench/empty_app``) with the same prompt
  polls: the floor Flower's Deployment Engine itself sets for a round here.

Usage::

    python bench/round_overhead.py [--rounds 4] [--out bench/results/round_overhead.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from common.data.intake import prepare_site
from common.data.sampledata import write_consortium
from common.report import read_rounds
from deploy.local.consortium import LocalConsortium, SiteNode

CONFIGS = {
    "flower-defaults": {
        "poll": 1.0,
        "trainer": False,
        "run": {"reply-poll-interval": 3.0, "fraction-evaluate": 1.0},
    },
    "prompt-polls": {
        "poll": 0.1,
        "trainer": False,
        "run": {"reply-poll-interval": 0.1, "fraction-evaluate": 0.0},
    },
    "prompt-polls+trainer": {
        "poll": 0.1,
        "trainer": True,
        "run": {"reply-poll-interval": 0.1, "fraction-evaluate": 0.0},
    },
}


def measure(name: str, spec: dict, data: Path, work: Path, rounds: int) -> dict:
    """Run one configuration; per-round wall, slowest training, eval and overhead."""
    nodes = [
        SiteNode(
            f"site-{i}",
            {
                "site-name": f"site-{i}",
                "data-dir": str(data / f"site-{i}"),
                "state-dir": str(work / "state" / f"site-{i}"),
            },
            trainer=spec["trainer"],
        )
        for i in (1, 2, 3)
    ]
    out = work / "runs" / name
    config = {
        "num-server-rounds": rounds,
        "local-epochs": 1,
        "image-size": 64,
        "min-sites": 3,
        "eval-dir": str(data / "heldout"),
        "out-dir": str(out),
        **spec["run"],
    }
    t0 = time.perf_counter()
    with LocalConsortium(work / "flwr" / name, nodes, poll_interval=spec["poll"]) as c:
        run_id = c.submit(config)
        status = c.wait(run_id, timeout=1800)
    total = time.perf_counter() - t0
    if status.get("status") != "finished:completed":
        raise RuntimeError(f"{name}: run ended as {status}")
    recs = read_rounds(out)
    per_round = []
    for prev, cur in zip(recs, recs[1:]):
        wall = cur["time"] - prev["time"]
        slowest = max(t["train-seconds"] for t in cur["sites"]["trained"])
        handler = max(t["handler-seconds"] for t in cur["sites"]["trained"])
        startup = max(t.get("startup-seconds", 0.0) for t in cur["sites"]["trained"])
        ev = cur.get("eval-seconds", 0.0)
        per_round.append(
            {
                "round": cur["round"],
                "wall": wall,
                "slowest-train": slowest,
                "slowest-handler": handler,
                "slowest-startup": startup,
                "server-eval": ev,
                "overhead": wall - slowest - ev,
            }
        )
    steady = per_round[1:] or per_round  # round 1 pays one-off start-up
    return {
        "config": name,
        "rounds": per_round,
        "total-seconds": total,
        "median-overhead": statistics.median(r["overhead"] for r in steady),
        "median-wall": statistics.median(r["wall"] for r in steady),
        "median-train": statistics.median(r["slowest-train"] for r in steady),
    }


def measure_empty(work: Path, rounds: int) -> dict:
    """Round wall time of an app that does no work at all (Flower's own floor)."""
    nodes = [SiteNode(f"site-{i}", {"site-name": f"site-{i}"}) for i in (1, 2, 3)]
    out = work / "runs" / "empty-app"
    app = Path(__file__).resolve().parent / "empty_app"
    with LocalConsortium(work / "flwr" / "empty-app", nodes, poll_interval=0.1) as c:
        run_id = c.submit({"num-server-rounds": rounds, "out-dir": str(out)}, app=app)
        status = c.wait(run_id, timeout=900)
    if status.get("status") != "finished:completed":
        raise RuntimeError(f"empty-app: run ended as {status}")
    times = json.loads((out / "rounds.json").read_text())
    walls = [b - a for a, b in zip(times, times[1:])]
    steady = walls[1:] or walls
    return {
        "config": "empty-app",
        "rounds": walls,
        "median-overhead": statistics.median(steady),
        "median-wall": statistics.median(steady),
        "median-train": 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("bench/results/round_overhead.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fedsynth-bench-") as tmp:
        work = Path(tmp)
        data = work / "data"
        write_consortium(data, n_sites=3, cases_per_site=16, heldout_per_vendor=4, defects=False)
        for i in (1, 2, 3):
            prepare_site(data / f"site-{i}", work / "state" / f"site-{i}", 64, new_secret=True)
        results = [measure(name, spec, data, work, args.rounds) for name, spec in CONFIGS.items()]
        results.append(measure_empty(work, args.rounds))
    base = results[0]["median-overhead"]
    print(
        f"{'configuration':24s} {'round wall s':>12s} {'slowest train s':>15s} "
        f"{'overhead s':>10s} {'vs defaults':>11s}"
    )
    for r in results:
        print(
            f"{r['config']:24s} {r['median-wall']:12.2f} {r['median-train']:15.2f} "
            f"{r['median-overhead']:10.2f} {r['median-overhead'] / base:10.2f}x"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "measured": time.strftime("%Y-%m-%d %H:%M"),
                "rounds": args.rounds,
                "results": results,
            },
            indent=2,
        )
    )
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
