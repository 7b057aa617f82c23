"""The same question on the built-in sample consortium, at 40 and at 400 patients a site:
what DP costs as a site grows, the planner's forecast beside each row, and the attack.

Three sample sites (phantom chest radiographs from the built-in DICOM generator, each
site a different vendor, about a fifth of each site's patients held back for validation)
train on the Simulation Engine (40 patients: 6 rounds × 2 local epochs at 128 px; 400:
3 rounds × 1 epoch at 64 px, :data:`SIZES`), without DP and
with local DP at ε = 8 (and 3 at 40 patients; δ = 1e-5, per patient, ``run.py``'s DP
training settings), and are scored on the coordinator's held-out phantoms per vendor. Results:
``bench/results/dp_sample.json`` (the schema of ``dp.json``) and a Markdown table.

Usage::

    python bench/dp/sample.py                    # both sizes (README.md: the time)
    python bench/dp/sample.py --cases 40
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
from bench.dp.run import DELTA, DP_TRAINING, attack, eps_name, forecast, outcome  # noqa: E402
from bench.tables import since  # noqa: E402

# passes and size per site size: 400 patients a site at 128 px for 6 x 2 would train on 10x
# the images of a 40-patient row, so the larger sites train at 64 px for 3 rounds x 1 epoch
SIZES = {
    40: {"image-size": 128, "rounds": 6, "epochs": 2},
    400: {"image-size": 64, "rounds": 3, "epochs": 1},
}
# the run config's defaults (batch 4, Adam 0.003): at 32 training patients a site, batch 8
# leaves 48 steps in the whole run, too few to learn the phantoms (Dice 0.16 measured)
BASE = {"batch-size": 4, "learning-rate": 0.003}
# ε per site size: the 400-patient sites at ε = 8 only (each of their runs takes minutes)
EPSILONS = {40: (float("inf"), 8.0, 3.0), 400: (float("inf"), 8.0)}


def _config(eps: float) -> dict:
    if eps == float("inf"):
        return {}
    return {"dp": "local", "dp-epsilon": eps, **DP_TRAINING}


def _splits(workdir: Path, run) -> dict:
    from client.task import load_site
    from common.config import SiteSettings

    names = sorted(p.name for p in (workdir / "data").glob("site-*"))
    return {
        n: load_site(SiteSettings(str(workdir / "data" / n), str(workdir / "state" / n), n), run)
        for n in names
    }


def _spent(workdir: Path) -> dict:
    from common.privacy import ledger

    out = {}
    for path in sorted(workdir.glob("state/*/" + str(ledger.LEDGER_FILE))):
        entries = [e for e in ledger.read_lines(path) if e.get("dp")]
        if entries:
            out[path.parents[1].name] = entries[-1]["dp"]["epsilon_total"]
    return out


def main() -> None:
    from common.config import RunSettings
    from deploy.local.simulate import run_simulation

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, nargs="*", default=[40, 400])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/fedsynth-dp-sample"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/dp_sample.json"))
    args = parser.parse_args()
    console = Console()
    started = time.perf_counter()
    rows: dict[str, dict] = {}
    result: dict = {}
    for cases in args.cases:
        workdir = args.workdir / f"n{cases}"
        p = SIZES.get(cases, SIZES[40])
        base = {**BASE, "local-epochs": p["epochs"], "image-size": p["image-size"]}
        for eps in EPSILONS.get(cases, (float("inf"), 8.0)):
            name = f"{cases} patients {eps_name(eps)}"
            config = _config(eps)
            for privacy in workdir.glob("state/*/privacy"):
                shutil.rmtree(privacy)  # each row's ε is its own
            shutil.rmtree(workdir / "registry", ignore_errors=True)
            extra = " ".join(
                f"{k}={json.dumps(v)}"
                for k, v in {**base, **config, "eval-every": p["rounds"]}.items()
            )
            start = time.perf_counter()
            report = run_simulation(workdir, 3, p["rounds"], cases, extra=extra, console=console)
            seconds = since(start)
            run = RunSettings.from_config(base)
            splits = _splits(workdir, run)
            patients = {s: tr.patients for s, (tr, _) in splits.items()}
            last = json.loads((report.parent / "metrics.jsonl").read_text().splitlines()[-1])
            rows[name] = {
                "metrics": last["heldout"],
                "seconds": seconds,
                "run_config": config,
                "patients": patients,
                "epsilon": _spent(workdir) if config else {},
                "planner": forecast({**base, **config}, patients, p),
                "attack": attack(report.parent / "checkpoints" / "last.pt", splits, run),
            }
            console.print(
                f"[bold]{name}[/bold]: Dice {last['heldout']['overall']['dice']:.3f} "
                f"({seconds:.0f} s); planner "
                + ", ".join(f"{s} {p['verdict']}" for s, p in rows[name]["planner"].items())
            )
            result = {
                "measured": time.strftime("%Y-%m-%d %H:%M"),
                "settings": {str(k): v for k, v in SIZES.items()},
                "run_config": BASE,
                "dp_training": DP_TRAINING,
                "delta": DELTA,
                "seconds": since(started),
                "rows": rows,
            }
            tables.save(result, args.out)
    text = render(json.loads(args.out.read_text()))
    args.out.with_suffix(".md").write_text(text)
    console.print(text)


def render(result: dict) -> str:
    """Dice overall and the worst vendor's ratio to the same size's non-DP row, with the
    planner's verdicts and the attack, one line per row."""
    lines = [
        "| row | Dice overall | worst vendor vs non-DP | planner (per site) | measured "
        "| attack AUC (per site) | wall |",
        "|---|---:|---:|---|---|---|---:|",
    ]
    rows = result["rows"]
    for name, row in rows.items():
        ref = rows.get(name.split(" ε=")[0] + " ε=∞")
        m = row["metrics"]
        ratio, seen = None, "reference"
        if ref and ref is not row:
            ratio = min(m[v]["dice"] / ref["metrics"][v]["dice"] for v in m if v != "overall")
            seen = outcome(ratio)
        plans = sorted({p["verdict"] for p in row["planner"].values()}) or ["–"]
        aucs = ", ".join(f"{a['auc']:.2f}" for a in row["attack"].values())
        lines.append(
            f"| {name} | {m['overall']['dice']:.3f} | "
            f"{'–' if ratio is None else f'{ratio:.3f}x'} | {' / '.join(plans)} | {seen} | "
            f"{aucs} | {row['seconds']:.0f} s |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
