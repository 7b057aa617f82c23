"""Synthetic sharing on the sample consortium: generator speed, and real vs synthetic Dice.

1. Each site's generator (the ``cpu`` configuration) is trained once, before the runs,
   as a hospital would with ``fedsynth synth train``: training images/s.
2. Sampling speed of one generator, side by side in one process: DPM-Solver++ with 20
   steps against DDPM with 1000 steps (pairs/s).
3. Simulation Engine runs on the same data, seeds and rounds, only the sharing changes:
   real-only (``share=weights``), synthetic-only (``share=synthetic``, standard and
   strong augmentation) and real + synthetic (``share=both``). Final round's held-out
   Dice and IoU per vendor, the pool's size and how many pairs the gate dropped.

Usage::

    python bench/synthetic.py [--rounds 12] [--epochs 3] [--workdir /tmp/fedsynth-synth-bench]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.console import Console

from client.synthesis import MODEL_FILE
from common.synth import diffusion
from deploy.local.simulate import run_simulation

RUNS = {
    "real-only": 'share="weights"',
    "synthetic-only": 'share="synthetic"',
    "synthetic-only, strong augmentation": 'share="synthetic" augmentation="strong"',
    "real + synthetic": 'share="both" server-epochs=1',
}


def sampling_speed(state: Path, n_dpm: int, n_ddpm: int) -> dict:
    """Pairs per second of one site's generator with DPM-Solver++ (20) and DDPM (1000)."""
    model, settings, _ = diffusion.load(state / MODEL_FILE)
    out = {}
    for solver, n in (("dpm++", n_dpm), ("ddpm", n_ddpm)):
        diffusion.sample(model, settings, 2, seed=0, solver=solver, steps=2)  # warm up
        start = time.perf_counter()
        diffusion.sample(model, settings, n, seed=1, solver=solver)
        seconds = time.perf_counter() - start
        steps = settings.sample_steps if solver == "dpm++" else settings.timesteps
        out[solver] = {"pairs": n, "steps": steps, "seconds": seconds, "pairs_per_s": n / seconds}
    out["speed-up"] = out["dpm++"]["pairs_per_s"] / out["ddpm"]["pairs_per_s"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=3, help="local and server epochs")
    parser.add_argument("--sites", type=int, default=3)
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--synth-n", type=int, default=64)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/fedsynth-synth-bench"))
    parser.add_argument("--only", nargs="*", default=list(RUNS), help=f"runs: {list(RUNS)}")
    parser.add_argument("--out", type=Path, default=Path("bench/results/synthetic.json"))
    args = parser.parse_args()
    console = Console()
    common = (
        f"local-epochs={args.epochs} server-epochs={args.epochs} synth-n={args.synth_n} "
        'synth-config="cpu"'
    )
    rows, speed, pretrain = [], None, None
    for name, extra in RUNS.items():
        if name not in args.only:
            continue
        start = time.perf_counter()
        report = run_simulation(
            args.workdir, args.sites, args.rounds, args.cases, f"{common} {extra}", console
        )
        wall = time.perf_counter() - start
        rounds = [json.loads(x) for x in (report.parent / "metrics.jsonl").read_text().splitlines()]
        if pretrain is None and "synthetic" in extra:
            pretrain = _pretrain_figures(args.workdir)
            speed = sampling_speed(args.workdir / "state" / "site-1", 64, 8)
            console.print(f"sampling: {json.dumps(speed)}")
        released = [x for r in rounds for x in r["sites"].get("synthetic", [])]
        final = rounds[-1]["heldout"]
        rows.append(
            {
                "run": name,
                "run_config": extra,
                "seconds": wall,
                "dice": {v: m["dice"] for v, m in final.items()},
                "iou": {v: m["iou"] for v, m in final.items()},
                "synthetic": released,
            }
        )
        console.print(f"{name}: Dice {final['overall']['dice']:.3f} ({wall:.0f} s)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "measured": time.strftime("%Y-%m-%d %H:%M"),
                "rounds": args.rounds,
                "epochs": args.epochs,
                "sites": args.sites,
                "cases-per-site": args.cases,
                "synth-n": args.synth_n,
                "generator": diffusion.DiffusionSettings.named("cpu").to_json(),
                "pretraining": pretrain,
                "sampling": speed,
                "rows": rows,
            },
            indent=2,
        )
    )


def _pretrain_figures(workdir: Path) -> dict:
    """Training images/s of each site's generator, from the model files' timestamps."""
    settings = diffusion.DiffusionSettings.named("cpu")
    out = {}
    for path in sorted(workdir.glob("state/*/synth/diffusion.pt")):
        _, _, meta = diffusion.load(path)
        seconds = meta.get("train_seconds")
        if seconds:
            images = settings.train_steps * settings.batch_size
            out[path.parents[1].name] = {"seconds": seconds, "images_per_s": images / seconds}
    return out


if __name__ == "__main__":
    main()
