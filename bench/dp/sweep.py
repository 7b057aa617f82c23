"""DP-SGD's own settings, chosen by measurement: logical batch, learning rate, clipping.

One site alone (Montgomery by default: the smallest, where DP costs most), trained for
the same passes over its data as every row of the chest X-ray tables (20 epochs), at one
ε, with each combination of logical batch (virtual steps: Opacus splits it into physical
batches of ``dp-max-physical-batch``), Adam learning rate and clipping norm; scored on
the site's own vendor in the coordinator's held-out set, beside the same site trained
without DP in the same run. The best combination is what ``bench/dp/run.py`` and the
run config's DP defaults use.

Usage::

    python bench/dp/sweep.py                       # Montgomery, ε = 8 (see README.md)
    python bench/dp/sweep.py --site jsrt --epsilon 3
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from anywhere

from bench import tables  # noqa: E402
from bench.cxr import layout  # noqa: E402
from bench.tables import since  # noqa: E402
from common.config import RunSettings  # noqa: E402

EPOCHS = 20  # the passes over the data of every chest X-ray row (10 rounds x 2 epochs)


def fit_dp(
    train,
    heldout,
    run: RunSettings,
    epochs: int,
    epsilon: float | None,
    keep=None,
    augment: bool = True,
    **dp,
) -> dict:
    """:func:`bench.tables.fit`, with DP-SGD at ``epsilon`` (None: without DP) over all
    ``epochs`` as one round; ``dp``: batch, lr, clip. Returns metrics, seconds, steps,
    the noise multiplier and the ε the accountant gives; the weights go to ``keep``."""
    import torch

    from common.privacy.accountant import epsilon_of
    from common.privacy.dp import DPSettings, plan_round
    from common.seg.networks import create_network
    from common.seg.training import evaluate
    from common.seg.training import train as train_model

    torch.manual_seed(run.seed)
    model = create_network(run.network, heldout.channels)
    settings = replace(
        run.train_settings(),
        epochs=epochs,
        seed=run.seed,
        batch_size=dp["batch"],
        learning_rate=dp["lr"],
    )
    plan = None
    if epsilon is not None:
        dps = DPSettings("local", epsilon, 1e-5, max_grad_norm=dp["clip"], rounds=1)
        plan = plan_round(dps, train.patients, dp["batch"], epochs)
    start = time.perf_counter()
    stats = train_model(model, train, settings, augment=augment, dp=plan)
    if keep is not None:
        torch.save(model.state_dict(), keep)
    return {
        "epsilon": epsilon_of([plan.step], 1e-5, plan.accountant) if plan else None,
        "metrics": evaluate(model, heldout),
        "seconds": since(start),
        "steps": stats.steps,
        "noise-multiplier": plan.step.noise_multiplier if plan else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", default="montgomery", choices=list(layout.SITES))
    parser.add_argument("--epsilon", type=float, default=8.0)
    parser.add_argument("--batch", type=int, nargs="*", default=[8, 32, 64])
    parser.add_argument("--lr", type=float, nargs="*", default=[0.002, 0.005, 0.01])
    parser.add_argument("--clip", type=float, nargs="*", default=[1.0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/fedsynth-cxr"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/dp_sweep.json"))
    args = parser.parse_args()
    console = Console()
    data = args.workdir / "data"
    manifest = layout.build(data)
    run = RunSettings.from_config({"image-size": 128, "registry": ""})
    sites, heldout = tables.load(data, [args.site], args.workdir, run, console)
    train = sites[args.site]
    vendor = " ".join(layout.SITES[args.site][1].values())
    keep = heldout.vendors == vendor
    heldout = heldout.subset(np.flatnonzero(keep))  # the site's own vendor only
    rows = []
    reference = fit_dp(train, heldout, run, EPOCHS, None, batch=8, lr=0.002, clip=1.0)
    console.print(f"non-DP (batch 8, lr 0.002): Dice {reference['metrics'][vendor]['dice']:.3f}")
    for batch, lr, clip in itertools.product(args.batch, args.lr, args.clip):
        r = fit_dp(train, heldout, run, EPOCHS, args.epsilon, batch=batch, lr=lr, clip=clip)
        dice = r["metrics"][vendor]["dice"]
        ratio = dice / reference["metrics"][vendor]["dice"]
        rows.append({"batch": batch, "lr": lr, "clip": clip, **r, "ratio": ratio})
        console.print(
            f"ε={args.epsilon:g} batch {batch:>3} lr {lr:<6g} clip {clip:g}: Dice {dice:.3f} "
            f"({ratio:.3f}x non-DP), σ {r['noise-multiplier']:.2f}, {r['steps']} steps, "
            f"{r['seconds']:.0f} s"
        )
    result = {
        "measured": time.strftime("%Y-%m-%d %H:%M"),
        "site": args.site,
        "vendor": vendor,
        "patients": train.patients,
        "epsilon": args.epsilon,
        "delta": 1e-5,
        "epochs": EPOCHS,
        "split": manifest["split"],
        "non-dp": reference,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    best = max(rows, key=lambda r: r["ratio"])
    console.print(
        f"best: batch {best['batch']}, lr {best['lr']:g}, clip {best['clip']:g}: "
        f"{best['ratio']:.3f}x non-DP; results in {args.out}"
    )


if __name__ == "__main__":
    main()
