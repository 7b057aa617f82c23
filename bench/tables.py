"""What the real-data results tables share: training a reference row, the Markdown table,
the bar plot.

Each table (``bench/retina``, ``bench/cxr``) lays its data out by links, then trains
every row with the same network, the same images and the same passes over the data, and
scores the same held-out set per vendor; results are JSON in one schema (``rows`` ->
name -> ``metrics`` -> vendor and ``overall`` -> ``dice``, ``iou``, ``hd95``).
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from common.config import RunSettings


def fit(train, heldout, run: RunSettings, epochs: int) -> dict:
    """Train the run's network from its seed on ``train`` for ``epochs``; evaluate."""
    import torch

    from common.data.channels import resolve
    from common.seg.networks import create_network
    from common.seg.training import evaluate
    from common.seg.training import train as train_model

    mode = resolve(run.channels, heldout.channels == 3)  # as the server resolves it
    train, heldout = train.with_channels(mode), heldout.with_channels(mode)
    torch.manual_seed(run.seed)
    model = create_network(run.network, heldout.channels)
    settings = replace(run.train_settings(), epochs=epochs, seed=run.seed)
    train_model(model, train, settings)
    return evaluate(model, heldout)


def load(data: Path, names, workdir: Path, run: RunSettings, console):
    """Every site's training split (as the federated runs use it) and the held-out set,
    each prepared through the site intake (states under ``workdir``)."""
    from client.task import load_site
    from common.config import SiteSettings
    from deploy.local.runner import _prepare

    sites = {}
    for name in names:
        state = workdir / "state" / name
        _prepare(data / name, state, name, run.image_size, console)
        site = SiteSettings(str(data / name), str(state), name)
        sites[name] = load_site(site, run)[0]
    heldout, _ = _prepare(
        data / "heldout", workdir / "heldout-state", "held-out set", run.image_size, console
    )
    return sites, heldout


def train_generators(data: Path, names, workdir: Path, run: RunSettings, console) -> dict:
    """Each site's generator for ``run``, trained once before the runs, as a hospital does
    with ``fedsynth synth train`` (kept in its state, where every run finds it by its
    fingerprint): ``{site: {"seconds", "trained now"}}``, one site after another."""
    from client.synthesis import ensure_generator
    from common.config import SiteSettings

    out = {}
    for name in names:
        site = SiteSettings(str(data / name), str(workdir / "state" / name), name)
        start = time.perf_counter()

        def progress(step: int, total: int, name=name) -> None:
            if step % 250 == 0 or step == total:
                console.print(f"generator of {name}: step {step}/{total} ({since(start):.0f} s)")

        generator = ensure_generator(site, run, progress=progress)
        seconds, now = generator.seconds, generator.trained_now
        out[name] = {"seconds": seconds, "trained now": now}
        took = f"{seconds:.0f} s" if now else f"already trained ({since(start):.0f} s to check)"
        console.print(f"generator of {name}: {took}")
    return out


def table(result: dict, order, targets: list[str]) -> str:
    """The results as a Markdown table: Dice (IoU) overall and per vendor, and wall time,
    then the targets, checked."""
    rows = result["rows"]
    names = [n for n in order if n in rows]
    vendors = sorted({v for n in names for v in rows[n]["metrics"] if v != "overall"})
    counts = result.get("cases", {}).get("heldout-vendors", {})
    head = ["row", "overall"] + [f"{v} ({counts.get(v, '?')})" for v in vendors] + ["wall"]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for n in names:
        m = rows[n]["metrics"]
        cells = [
            f"{m[v]['dice']:.3f} ({m[v]['iou']:.3f})" if v in m else "–"
            for v in ["overall", *vendors]
        ]
        wall = f"{rows[n]['seconds']:.0f} s" if rows[n]["seconds"] else "–"
        lines.append("| " + " | ".join([n, *cells, wall]) + " |")
    return "\n".join(lines + [""] + [f"* {t}" for t in targets]) + "\n"


def plot(result: dict, path: Path, order, title: str, ylabel: str = "held-out Dice") -> None:
    """Held-out Dice per row, overall and per vendor, as grouped bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    names = [n for n in order if n in rows]
    vendors = sorted({v for n in names for v in rows[n]["metrics"] if v != "overall"})
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / (len(vendors) + 1)
    for j, v in enumerate(["overall", *vendors]):
        vals = [rows[n]["metrics"].get(v, {}).get("dice", np.nan) for n in names]
        ax.bar(np.arange(len(names)) + j * width, vals, width, label=v)
    ax.set_xticks(np.arange(len(names)) + width * len(vendors) / 2)
    ax.set_xticklabels(names, rotation=25, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def check_rows(names, rows) -> None:
    """Stop with the choices when ``--only`` names a row the table does not have."""
    for name in names:
        if name not in rows:
            raise SystemExit(f"unknown row {name!r}; choose from {list(rows)}")


def since(start: float) -> float:
    """Seconds since ``start`` (a ``time.perf_counter()``)."""
    return time.perf_counter() - start


def record(manifest: dict, p: dict, run_config, sites: dict, heldout, rows: dict, **extra):
    """The results JSON every table writes: settings, split, case counts, rows."""
    return {
        "measured": time.strftime("%Y-%m-%d %H:%M"),
        "settings": p,
        "run_config": run_config,
        "split": manifest["split"],
        "vendors": {s["name"]: " ".join(s["vendor"].values()) for s in manifest["sites"]},
        "cases": {
            **{s: len(a) for s, a in sites.items()},
            "heldout": len(heldout),
            "heldout-vendors": {
                str(v): int((heldout.vendors == v).sum()) for v in set(heldout.vendors)
            },
        },
        **extra,
        "rows": rows,
    }


def save(result: dict, out: Path) -> None:
    """Write ``result`` to ``out``, keeping rows an earlier ``--only`` invocation measured
    with the same settings."""
    if out.exists():
        earlier = json.loads(out.read_text())
        if earlier.get("settings") == result["settings"]:
            result["rows"] = {**earlier.get("rows", {}), **result["rows"]}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
