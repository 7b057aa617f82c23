"""Retinal vessel segmentation on real images: the multi-site, multi-vendor results table.

DRIVE (Canon CR5, adults) and half of CHASE_DB1's children (Nidek NM-200-D) are two
hospitals; DRIVE's test images and the other CHASE_DB1 children are the server's held-out
set (``layout.py`` documents the split). Every row trains the same network on the same
images with the same budget of passes over the data and is evaluated on the same
held-out set, Dice and IoU inside the field of view, per vendor and overall:

* each site alone, and centralised (all sites' training images pooled): plain training;
* federated (FedAvg), federated with DP-SGD at ε = 10, synthetic-only, real +
  synthetic and exchange: Flower Simulation Engine runs of the FedSynth apps
  (``fedsynth simulate``);
* centralised with a fused label (STAPLE over both observers where two exist) against
  the first observer alone;
* the second human observer against the first on the same held-out images.

Vessels are thin: images are prepared at ``--image-size`` (512: DRIVE at 0.88×, CHASE at
0.51× of its width) and trained on random ``--patch-size`` patches, ``--patches`` per
image and epoch; prediction runs on the whole image.

Usage::

    python bench/retina/run.py                 # the table (see README.md for the measured time)
    python bench/retina/run.py --quick         # a quick check of the machinery (~5 minutes)
    python bench/retina/run.py --only human centralised
    python bench/retina/run.py --generator cpu-128 --only federated synthetic-only \
        "real + synthetic" exchange --out bench/results/retina_cpu128.json   # the better generator
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from anywhere

from bench import tables  # noqa: E402
from bench.retina import layout  # noqa: E402
from bench.tables import fit, since  # noqa: E402
from common.config import RunSettings  # noqa: E402
from common.seg.label_fusion import fuse_arrays  # noqa: E402
from common.seg.metrics import case_metrics, summarise  # noqa: E402

# rounds x epochs: the passes over the data of every trained row; synth-steps and synth-n:
# each site's generator training steps and the pairs it releases; eval-every: federated
# rows score the held-out set every few rounds (always after the last).
FULL = {
    "image-size": 512,
    "patch-size": 128,
    "patches-per-image": 8,
    "rounds": 12,
    "epochs": 2,
    "synth-steps": 800,
    "synth-n": 64,
    "eval-every": 4,
}
QUICK = {
    "image-size": 256,
    "patch-size": 96,
    "patches-per-image": 4,
    "rounds": 3,
    "epochs": 1,
    "synth-steps": 100,
    "synth-n": 16,
    "eval-every": 3,
}
REFERENCES = ("human", "trivial: all of the FOV")  # rows that train nothing
ROWS = (
    *REFERENCES,
    "site-1 alone",
    "site-2 alone",
    "federated",
    "federated DP ε=10",
    "synthetic-only",
    "real + synthetic",
    "exchange",
    "real + synthetic, 16x draws",
    "exchange, 16x draws",
    "centralised",
    "centralised, STAPLE labels",
)
# Each site's generator learns 64 px patches at the image-size scale (synth-patch); the
# server trains one epoch per round on the pooled pairs that pass the memorisation gate
# (each pair seen patches-per-image times, as a real image is).
SYNTH = "synth-patch=true server-epochs=1"
FEDERATED = {
    "federated": "",
    "federated DP ε=10": 'dp="local" dp-epsilon=10.0 patches-per-image=1',
    "synthetic-only": f'share="synthetic" augmentation="strong" {SYNTH}',
    "real + synthetic": f'share="both" {SYNTH}',
    "exchange": f'share="exchange" {SYNTH}',  # each site: its images + the other's pairs
    # the mask check stops most drawn patches (vessels too thick): drawing up to 16x synth-n
    # instead of 4x lets each site release more of the ones within its real range
    "real + synthetic, 16x draws": f'share="both" synth-draw-factor=16 {SYNTH}',
    "exchange, 16x draws": f'share="exchange" synth-draw-factor=16 {SYNTH}',
}


def run_config(p: dict, extra: str = "") -> str:
    """The run_config every row shares (as ``fedsynth simulate --run-config``)."""
    return (
        f'image-size={p["image-size"]} channels="green" patch-size={p["patch-size"]} '
        f"patches-per-image={p['patches-per-image']} local-epochs={p['epochs']} "
        f"batch-size=8 learning-rate=0.002 eval-every={p['eval-every']} "
        f'synth-config="{p.get("generator", "cpu")}" '
        f"synth-train-steps={p['synth-steps']} synth-n={p['synth-n']} {extra}"
    ).strip()


def human(heldout) -> dict:
    """Second observer against the first, inside the FOV, where a second exists."""
    idx = np.flatnonzero(heldout.has_mask2)
    per_case = [
        case_metrics(heldout.masks2[i] * heldout.fov[i], heldout.masks[i] * heldout.fov[i])
        for i in idx
    ]
    return summarise(per_case, [str(v) for v in heldout.vendors[idx]])


def trivial(heldout) -> dict:
    """Every pixel of the field of view called vessel: the floor a model must beat."""
    per_case = [case_metrics(f, m) for f, m in zip(heldout.fov, heldout.masks)]
    return summarise(per_case, [str(v) for v in heldout.vendors])


def load(data: Path, workdir: Path, run: RunSettings, console: Console):
    """Every site's training split (as the federated runs use it) and the held-out set."""
    return tables.load(data, ("site-1", "site-2"), workdir, run, console)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller images, fewer rounds")
    parser.add_argument("--only", nargs="*", default=list(ROWS), help=f"rows: {list(ROWS)}")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/fedsynth-retina"))
    parser.add_argument("--out", type=Path, default=None, help="results JSON")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None, help="local epochs per round")
    parser.add_argument(
        "--generator",
        default="cpu",
        help='synth-config of the synthetic rows: "cpu" (64 px patches, the table) or '
        '"cpu-128" (128 px patches, its own training steps)',
    )
    parser.add_argument(
        "--render", type=Path, default=None, help="only redraw the table and plot of a results JSON"
    )
    args = parser.parse_args()
    if args.render:
        _write_outputs(json.loads(args.render.read_text()), args.render)
        return
    p = dict(QUICK if args.quick else FULL)
    p["rounds"] = args.rounds or p["rounds"]
    p["epochs"] = args.epochs or p["epochs"]
    if args.generator != "cpu":  # recorded in the settings, so rows of two generators never mix
        p["generator"] = args.generator
        if not args.quick:
            p["synth-steps"] = 0  # the configuration's own steps
    out = args.out or Path(
        "bench/results/retina_quick.json" if args.quick else "bench/results/retina.json"
    )
    console = Console()
    data = args.workdir / "data"
    manifest = layout.build(data)
    run = RunSettings.from_config(_pairs(run_config(p)))
    started = time.perf_counter()
    sites, heldout = load(data, args.workdir, run, console)
    epochs = p["rounds"] * p["epochs"]  # every row: the same passes over the data
    rows: dict[str, dict] = {}

    def record(name: str, metrics: dict, seconds: float, **more) -> None:
        rows[name] = {"metrics": metrics, "seconds": seconds, **more}
        console.print(
            f"[bold]{name}[/bold]: Dice {metrics['overall']['dice']:.3f} "
            + " ".join(f"{v}: {m['dice']:.3f}" for v, m in metrics.items() if v != "overall")
            + f" ({seconds:.0f} s)"
        )

    tables.check_rows(args.only, ROWS)
    for name in ROWS:
        if name not in args.only:
            continue
        start = time.perf_counter()
        if name == "human":
            record(name, human(heldout), 0.0)
        elif name.startswith("trivial"):
            record(name, trivial(heldout), 0.0)
        elif name.endswith(" alone"):
            record(name, fit(sites[name.split()[0]], heldout, run, epochs), since(start))
        elif name == "centralised":
            pooled = type(heldout).concat(list(sites.values()))
            record(name, fit(pooled, heldout, run, epochs), since(start))
        elif name == "centralised, STAPLE labels":
            pooled = type(heldout).concat([fuse_arrays(s, "staple") for s in sites.values()])
            record(name, fit(pooled, heldout, run, epochs), since(start))
        else:
            metrics, seconds, more = _federated(args.workdir, p, FEDERATED[name], console)
            record(name, metrics, seconds, **more)
    total = time.perf_counter() - started
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "measured": time.strftime("%Y-%m-%d %H:%M"),
        "settings": p,
        "run_config": run_config(p),
        "split": manifest["split"],
        "cases": {
            **{s: len(a) for s, a in sites.items()},
            "heldout": len(heldout),
            "heldout-vendors": {
                str(v): int((heldout.vendors == v).sum()) for v in set(heldout.vendors)
            },
        },
        "seconds": total,
        "rows": rows,
    }
    if out.exists():  # keep rows measured by earlier --only invocations
        earlier = json.loads(out.read_text())
        if earlier.get("settings") == p:
            result["rows"] = {**earlier.get("rows", {}), **rows}
    out.write_text(json.dumps(result, indent=2))
    console.print(_write_outputs(result, out))
    console.print(f"{len(rows)} rows in {total / 60:.1f} min; results in {out}")


def _write_outputs(result: dict, out: Path) -> str:
    """The plot (``.png``) and the Markdown table (``.md``) beside the results JSON."""
    _plot(result, out.with_suffix(".png"))
    text = table(result)
    out.with_suffix(".md").write_text(text)
    return text


def table(result: dict) -> str:
    """The results as a Markdown table: Dice (IoU) overall and per vendor, and wall time."""
    return tables.table(result, ROWS, targets(result))


def targets(result: dict) -> list[str]:
    """The issue's two targets, checked: federated against centralised Dice on every
    vendor (>= 0.95x) and the best model against the second observer on DRIVE (Canon)."""
    rows, out = result["rows"], []
    fed, central = rows.get("federated"), rows.get("centralised")
    if fed and central:
        for vendor, m in central["metrics"].items():
            if vendor != "overall":
                ratio = fed["metrics"][vendor]["dice"] / m["dice"]
                verdict = "met" if ratio >= 0.95 else "missed"
                out.append(f"federated / centralised Dice, {vendor}: {ratio:.3f} ({verdict})")
    drive = next((v for r in rows.values() for v in r["metrics"] if "Canon" in v), None)
    if drive and "human" in rows:
        trained = {n: r for n, r in rows.items() if n not in REFERENCES}
        best = max(trained, key=lambda n: trained[n]["metrics"][drive]["dice"], default=None)
        if best:
            dice = trained[best]["metrics"][drive]["dice"]
            gap = rows["human"]["metrics"][drive]["dice"] - dice
            verdict = "met" if gap <= 0.03 else "missed"
            out.append(
                f"best DRIVE Dice {dice:.3f} ({best}): {gap:.3f} below the second observer "
                f"({verdict})"
            )
    return out


def _federated(workdir: Path, p: dict, extra: str, console: Console):
    from common.privacy import ledger
    from deploy.local.simulate import run_simulation

    for privacy in workdir.glob("state/*/privacy"):
        shutil.rmtree(privacy)  # a fresh accountant and ledger for every row
    shutil.rmtree(workdir / "registry", ignore_errors=True)
    start = time.perf_counter()
    report = run_simulation(workdir, 2, p["rounds"], 0, run_config(p, extra), console)
    seconds = time.perf_counter() - start
    rounds = [json.loads(x) for x in (report.parent / "metrics.jsonl").read_text().splitlines()]
    eps = {}
    for path in workdir.glob("state/*/privacy/ledger.jsonl"):
        spent = [e["dp"]["epsilon_total"] for e in ledger.read_lines(path) if e.get("dp")]
        if spent:
            eps[path.parents[1].name] = max(spent)
    released = [x for r in rounds for x in r["sites"].get("synthetic", [])]
    return rounds[-1]["heldout"], seconds, {"epsilon": eps, "synthetic": released}


def _plot(result: dict, path: Path) -> None:
    title = "Retinal vessels: DRIVE (Canon) + CHASE_DB1 (Nidek)"
    tables.plot(result, path, ROWS, title, "held-out Dice (inside FOV)")


def _pairs(text: str) -> dict:
    from deploy.local.runner import parse_overrides

    return parse_overrides(text)


if __name__ == "__main__":
    main()
