"""Privacy against Dice on the chest X-ray consortium: ε–Dice, the planner's forecast and
a membership-inference attack, row by row.

The three countries of ``bench/cxr`` (Montgomery, Shenzhen, JSRT; the same links, the
same patient-level split, the same coordinator's held-out set) train the same network
for the same passes over their data (10 rounds × 2 local epochs at 128 px) as
``bench/cxr/run.py``; only privacy changes:

* ``federated ε=∞``: no DP, the run config's defaults (the reference of every ratio);
* ``local ε=8 | 3 | 1``: DP-SGD at every site, per patient (δ = 1e-5 over the run),
  with the DP training settings :data:`DP_TRAINING` (chosen by ``sweep.py``, see
  README.md); ``..., warm start``: the same after the coordinator's warm start on the
  built-in phantoms (it spends no site's privacy);
* ``central ε=8 | 3 | 1``: the server clips each site's update and adds noise
  (site-level DP: three sites are three privacy units);
* ``montgomery alone ε=∞ | ε=8``: one site's own model, the attack's clearest case.

Beside every row: each site's ε as its ledger records it, the planner's verdict for the
site before the run (:mod:`common.privacy.planner`) against the outcome measured on that
site's vendor, and a loss-based membership-inference attack on the released global model
(the site's training patients against its held-back validation patients; AUC with a 95%
bootstrap interval). Results: ``bench/results/dp.json`` in the schema of the other real-
data tables, a plot and a Markdown table beside it.

Usage::

    python bench/dp/run.py                       # every row (README.md: the time)
    python bench/dp/run.py --only "federated ε=∞" "local ε=8"
    python bench/dp/run.py --render bench/results/dp.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from anywhere

from bench import tables  # noqa: E402
from bench.cxr import layout  # noqa: E402
from bench.cxr.run import FULL, federated  # noqa: E402
from bench.cxr.run import run_config as cxr_run_config  # noqa: E402
from bench.dp.sweep import fit_dp  # noqa: E402
from bench.tables import since  # noqa: E402
from common.config import RunSettings  # noqa: E402

SITES = tuple(layout.SITES)
DELTA = 1e-5
# DP-SGD's training settings, chosen by measurement (sweep.py, README.md): at the rows'
# 20 passes, larger logical batches (virtual steps) did not beat batch 8; Adam's learning
# rate 0.005 did best.
DP_TRAINING = {"learning-rate": 0.005}
EPSILONS = (8.0, 3.0, 1.0)
ALONE = "montgomery"


def eps_name(e: float) -> str:
    return "ε=∞" if e == float("inf") else f"ε={e:g}"


ROWS: dict[str, dict] = {"federated ε=∞": {}}
ROWS |= {f"local {eps_name(e)}": {"dp": "local", "dp-epsilon": e, **DP_TRAINING} for e in EPSILONS}
ROWS |= {f"central {eps_name(e)}": {"dp": "central", "dp-epsilon": e} for e in EPSILONS}
ROWS[f"{ALONE} alone ε=∞"] = {}
ROWS[f"{ALONE} alone ε=8"] = {"dp": "local", "dp-epsilon": 8.0, **DP_TRAINING}
# The attack's power, shown where there is something to find: a model that memorises
# (three times the passes, no augmentation), without and with DP.
OVERFIT = {"epochs": 60, "augment": False}
ROWS[f"{ALONE} alone ε=∞, overfit"] = OVERFIT
ROWS[f"{ALONE} alone ε=8, overfit"] = {"dp": "local", "dp-epsilon": 8.0, **DP_TRAINING, **OVERFIT}
ROWS["federated ε=∞, warm start"] = {"warm-start": "phantoms"}
ROWS |= {
    f"local {eps_name(e)}, warm start": {
        "dp": "local",
        "dp-epsilon": e,
        "warm-start": "phantoms",
        **DP_TRAINING,
    }
    for e in EPSILONS
}
REFERENCE = "federated ε=∞"


def outcome(ratio: float) -> str:
    """What a row did for a site, named as the planner's verdicts are: within 0.95× of
    the non-DP Dice, below half of it, or between."""
    from common.privacy.planner import VERDICTS

    return VERDICTS[(ratio >= 0.5) + (ratio >= 0.95)]


def forecast(config: dict, patients: dict[str, int], p: dict) -> dict[str, dict]:
    """The planner's verdict for each site before the row ran (local DP: the site's
    training patients; central DP: the sites are the units)."""
    from common.privacy.planner import plan, plan_central

    if config.get("dp") not in ("local", "central"):
        return {}
    eps = float(config["dp-epsilon"])
    if config["dp"] == "central":
        one = plan_central(len(patients), eps, DELTA, p["rounds"])
        return {s: _plan_json(one) for s in patients}
    batch = int(config.get("batch-size", 8))
    return {
        s: _plan_json(plan(n, eps, DELTA, p["rounds"], p["epochs"], batch))
        for s, n in patients.items()
    }


def _plan_json(p) -> dict:
    return {
        "verdict": p.verdict,
        "noise-multiplier": round(p.noise_multiplier, 4),
        "run-signal-to-noise": round(p.run_signal_to_noise, 1),
        "unit": p.unit,
        "units": p.units,
    }


def attack(weights: Path, splits: dict, run: RunSettings) -> dict[str, dict]:
    """Loss-based membership inference on ``weights``, site by site."""
    import torch

    from common.privacy.attack import membership_auc
    from common.seg.networks import create_network
    from common.seg.training import patient_losses

    out = {}
    for name, (train, val) in splits.items():
        model = create_network(run.network, train.channels)
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        result = membership_auc(-patient_losses(model, train), -patient_losses(model, val))
        out[name] = result.to_json()
    return out


def spent(workdir: Path, config: dict, run_dir: Path | None) -> dict[str, float]:
    """Each site's ε after the row, as its ledger (local DP) or the server's central-DP
    record says."""
    from common.privacy import ledger

    if config.get("dp") == "local":
        out = {}
        for name in SITES:
            path = workdir / "state" / name / ledger.LEDGER_FILE
            entries = [e for e in ledger.read_lines(path) if e.get("dp")] if path.exists() else []
            out[name] = entries[-1]["dp"]["epsilon_total"] if entries else None
        return out
    if config.get("dp") == "central" and run_dir is not None:
        last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
        eps = last["sites"]["central-dp"]["epsilon"]
        # the Simulation Engine names virtual site i "site-i": the file's i-th site
        return {
            SITES[int(k.split("-")[-1]) - 1] if k not in SITES else k: v for k, v in eps.items()
        }
    return {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=list(ROWS), help=f"rows: {list(ROWS)}")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/fedsynth-cxr"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/dp.json"))
    parser.add_argument("--render", type=Path, default=None, help="only redraw a results JSON")
    args = parser.parse_args()
    if args.render:
        _write_outputs(json.loads(args.render.read_text()), args.render)
        return
    tables.check_rows(args.only, ROWS)
    p = dict(FULL)
    console = Console()
    data = args.workdir / "data"
    manifest = layout.build(data)
    run = RunSettings.from_config(cxr_run_config(p))
    started = time.perf_counter()
    sites, heldout = tables.load(data, SITES, args.workdir, run, console)
    splits = _splits(data, args.workdir, run)
    patients = {s: splits[s][0].patients for s in SITES}
    rows: dict[str, dict] = {}
    for name in (n for n in ROWS if n in args.only):
        config = ROWS[name]
        for privacy in (args.workdir / "state").glob("*/privacy"):
            shutil.rmtree(privacy)  # a fresh accountant and ledger: each row's ε is its own
        start = time.perf_counter()
        run_dir = None
        if " alone " in name:
            eps = config.get("dp-epsilon")
            dp = {"batch": config.get("batch-size", 8), "lr": config.get("learning-rate", 0.002)}
            epochs = config.get("epochs", p["rounds"] * p["epochs"])
            fitted = fit_dp(
                sites[ALONE],
                heldout,
                run,
                epochs,
                eps,
                **dp,
                clip=1.0,
                keep=args.workdir / "alone.pt",
                augment=config.get("augment", True),
            )
            metrics, weights = fitted["metrics"], args.workdir / "alone.pt"
            used = {ALONE: splits[ALONE]}
            plans = forecast(config, {ALONE: patients[ALONE]}, {**p, "rounds": 1, "epochs": epochs})
            eps_spent = {ALONE: fitted["epsilon"]} if eps else {}
        else:
            rc = {**cxr_run_config(p), **config}
            metrics, _, run_dir = federated(args.workdir, data, SITES, p, console, rc)
            weights, used = run_dir / "checkpoints" / "last.pt", splits
            plans = forecast(config, patients, p)
            eps_spent = spent(args.workdir, config, run_dir)
        rows[name] = {
            "metrics": metrics,
            "seconds": since(start),
            "run_config": config,
            "epsilon": eps_spent,
            "planner": plans,
            "attack": attack(weights, used, run),
        }
        console.print(
            f"[bold]{name}[/bold]: Dice {metrics['overall']['dice']:.3f} "
            + " ".join(f"{v}: {m['dice']:.3f}" for v, m in metrics.items() if v != "overall")
            + f" ({rows[name]['seconds']:.0f} s); attack AUC "
            + " ".join(f"{s} {a['auc']:.3f}" for s, a in rows[name]["attack"].items())
        )
        result = tables.record(
            manifest,
            p,
            cxr_run_config(p),
            sites,
            heldout,
            rows,
            seconds=since(started),
            dp_training=DP_TRAINING,
            delta=DELTA,
            patients=patients,
        )
        tables.save(result, args.out)  # after every row: a long run keeps what it measured
    result = json.loads(args.out.read_text())
    console.print(_write_outputs(result, args.out))
    console.print(f"{len(rows)} rows in {since(started) / 60:.1f} min; results in {args.out}")


def _splits(data: Path, workdir: Path, run: RunSettings) -> dict:
    """Every site's (training, held-back validation) patients, as the site splits them."""
    from client.task import load_site
    from common.config import SiteSettings

    return {
        s: load_site(SiteSettings(str(data / s), str(workdir / "state" / s), s), run) for s in SITES
    }


def consortium_forecast(planner: dict[str, dict]) -> dict | None:
    """The planner's verdict for the global model of a row: the sites' forecasts
    combined (:func:`common.privacy.planner.consortium_signal_to_noise`); central DP's
    plan is already the consortium's (its units are the sites)."""
    from common.privacy.planner import consortium_signal_to_noise, verdict_of

    if not planner:
        return None
    plans = list(planner.values())
    if plans[0].get("unit") == "sites" or len(plans) == 1:
        snr = plans[0]["run-signal-to-noise"]
    else:
        snr = consortium_signal_to_noise([(p["units"], p["run-signal-to-noise"]) for p in plans])
    return {"verdict": verdict_of(snr), "run-signal-to-noise": round(snr, 1)}


def reference_of(name: str) -> str:
    """The non-DP row a row is compared with: the federated one, or the same site alone
    trained the same way without DP."""
    if " alone " in name:
        return name.replace("ε=8", "ε=∞")
    return REFERENCE


def checks(result: dict) -> list[str]:
    """The issue's targets and the planner's forecasts, checked against the rows: each
    row's forecast for its model (the consortium's, or the site's alone) against the
    outcome measured on every site's vendor."""
    rows, out = result["rows"], []
    vendor_of = result.get("vendors", {})
    ref = rows.get(REFERENCE)
    for name, row in rows.items():
        base = rows.get(reference_of(name))
        whole = consortium_forecast(row.get("planner", {}))
        if base is None or base is row or whole is None:
            continue
        for site in row.get("attack", {}):
            vendor = vendor_of.get(site)
            if vendor not in row["metrics"]:
                continue
            ratio = row["metrics"][vendor]["dice"] / base["metrics"][vendor]["dice"]
            seen = outcome(ratio)
            agree = "agrees" if seen == whole["verdict"] else "DISAGREES"
            alone = row["planner"].get(site, {})
            out.append(
                f"{name}, {site}: {ratio:.3f}x non-DP ({seen}); planner: {whole['verdict']} "
                f"(signal/noise {whole['run-signal-to-noise']:.0f}; the site's own "
                f"{alone.get('run-signal-to-noise', 0):.0f}): {agree}"
            )
    for eps, floor in (("8", 0.95), ("3", 0.90)):
        for suffix in ("", ", warm start"):
            row = rows.get(f"local ε={eps}{suffix}")
            if not (row and ref):
                continue
            worst = min(
                row["metrics"][v]["dice"] / ref["metrics"][v]["dice"]
                for v in ref["metrics"]
                if v != "overall"
            )
            verdict = "met" if worst >= floor else "missed"
            out.append(
                f"local ε={eps}{suffix}: worst site {worst:.3f}x non-DP (>= {floor}: {verdict})"
            )
    for name in (n for n in ROWS if " alone " in n or n in (REFERENCE, "local ε=8")):
        if name in rows:
            for site, a in rows[name]["attack"].items():
                out.append(
                    f"attack AUC, {name}, {site}: {a['auc']:.3f} [{a['low']:.3f}-{a['high']:.3f}]"
                )
    return out


SERIES = {  # a curve: its rows from ε=1 to ε=∞
    "local DP": [*(f"local {eps_name(e)}" for e in sorted(EPSILONS)), REFERENCE],
    "local DP, warm start": [
        *(f"local {eps_name(e)}, warm start" for e in sorted(EPSILONS)),
        "federated ε=∞, warm start",
    ],
    "central DP (site-level)": [*(f"central {eps_name(e)}" for e in sorted(EPSILONS)), REFERENCE],
}


def curves(result: dict, path: Path) -> None:
    """ε–Dice curves: one panel per vendor and overall, one line per kind of DP."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    vendors = sorted({v for r in rows.values() for v in r["metrics"] if v != "overall"})
    xs = [*(eps_name(e) for e in sorted(EPSILONS)), "ε=∞"]
    fig, axes = plt.subplots(1, len(vendors) + 1, figsize=(4 * (len(vendors) + 1), 3.6))
    for ax, vendor in zip(axes, ["overall", *vendors]):
        for label, names in SERIES.items():
            ys = [
                rows[n]["metrics"].get(vendor, {}).get("dice") if n in rows else None for n in names
            ]
            pts = [(i, y) for i, y in enumerate(ys) if y is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=label)
        ax.set_xticks(range(len(xs)), xs)
        ax.set_ylim(0, 1)
        ax.set_title(vendor, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("held-out Dice")
    axes[0].legend(fontsize=7)
    fig.suptitle("Chest X-ray lungs: held-out Dice against ε (δ = 1e-5, per patient)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _write_outputs(result: dict, out: Path) -> str:
    """The ε–Dice curves (``.png``) and the Markdown table (``.md``) beside the results."""
    curves(result, out.with_suffix(".png"))
    text = tables.table(result, list(ROWS), []) + "\n" + site_table(result)
    text += "\n" + "\n".join(f"* {c}" for c in checks(result)) + "\n"
    out.with_suffix(".md").write_text(text)
    return text


def site_table(result: dict) -> str:
    """Per row and site: ε spent, the planner's forecasts (for the row's model, and for
    the site's own contribution), the measured outcome against the row's non-DP
    reference, and the attack's AUC."""
    from common.privacy.planner import verdict_of

    rows, vendor_of = result["rows"], result.get("vendors", {})
    lines = [
        "| row | site | ε spent | planner: the model (signal/noise) | planner: the site's "
        "own | measured | attack AUC [95% CI] |",
        "|---|---|---:|---|---|---|---|",
    ]
    for name in (n for n in ROWS if n in rows):
        row = rows[name]
        base = rows.get(reference_of(name))
        whole = consortium_forecast(row.get("planner", {}))
        for site, a in row.get("attack", {}).items():
            vendor = vendor_of.get(site)
            eps = row.get("epsilon", {}).get(site)
            plan = row.get("planner", {}).get(site)
            own = "–"
            if plan:  # the verdict from the recorded signal-to-noise, at today's thresholds
                snr = plan["run-signal-to-noise"]
                own = f"{verdict_of(snr)} ({snr:.0f})"
            model = f"{whole['verdict']} ({whole['run-signal-to-noise']:.0f})" if whole else "–"
            measured = "reference" if base is row else "–"
            if base is not None and base is not row and vendor in row["metrics"]:
                ratio = row["metrics"][vendor]["dice"] / base["metrics"][vendor]["dice"]
                measured = f"{ratio:.3f}x ({outcome(ratio)})"
            lines.append(
                f"| {name} | {site} | {'–' if eps is None else f'{eps:.2f}'} | {model} | "
                f"{own} | {measured} | {a['auc']:.3f} [{a['low']:.3f}-{a['high']:.3f}] |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
