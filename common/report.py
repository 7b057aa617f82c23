"""The run's HTML report: per-vendor Dice over rounds, baselines, and what each site did.

Inputs are the files a run directory holds:

* ``metrics.jsonl``: one JSON object per round (held-out metrics per vendor, site records);
* ``baselines.json`` (optional): local-only and centralised results on the same held-out set;
* ``run.json``: the run's settings;
* ``heldout_cases.png`` (optional): the final global model's best, median and worst
  held-out case per vendor, drawn by :func:`contact_sheet_png`, shown beside the
  Dice-over-rounds plot.

Plots are drawn with matplotlib and embedded in the page, so ``report.html`` is one
self-contained file.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

METRICS_FILE, BASELINES_FILE, RUN_FILE, REPORT_FILE = (
    "metrics.jsonl",
    "baselines.json",
    "run.json",
    "report.html",
)
CASES_FILE = "heldout_cases.png"  # the final model's best, median and worst case per vendor


def read_rounds(run_dir: Path) -> list[dict]:
    """The per-round records of ``metrics.jsonl`` (empty if the file does not exist)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def figure_png(fig) -> str:
    """A matplotlib figure as base64 PNG, for an inline ``<img>``."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def _vendors(rounds: list[dict], baselines: dict) -> list[str]:
    seen: list[str] = []
    for r in rounds:
        for v in r.get("heldout", {}):
            if v != "overall" and v not in seen:
                seen.append(v)
    for row in _baseline_rows(baselines):
        for v in row[1]:
            if v != "overall" and v not in seen:
                seen.append(v)
    return sorted(seen)


def _baseline_rows(baselines: dict) -> list[tuple[str, dict]]:
    rows = []
    if "centralised" in baselines:
        rows.append(("Centralised (all sites pooled)", baselines["centralised"]))
    for site, summary in sorted(baselines.get("local-only", {}).items()):
        rows.append((f"Local-only: {site}", summary))
    return rows


def results_rows(rounds: list[dict], baselines: dict) -> list[tuple[str, dict]]:
    """The results table's rows: federated (last and best round), then the baselines."""
    rows = []
    scored = [r for r in rounds if r.get("heldout") and r["round"] > 0]
    if scored:
        last = scored[-1]
        best = max(scored, key=lambda r: r["heldout"]["overall"]["dice"])
        rows.append((f"Federated, last round ({last['round']})", last["heldout"]))
        rows.append((f"Federated, best round ({best['round']})", best["heldout"]))
    return rows + _baseline_rows(baselines)


def _plot_rounds(rounds: list[dict], vendors: list[str], baselines: dict) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = [r for r in rounds if r.get("heldout")]
    if not scored:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    xs = [r["round"] for r in scored]
    for v in ["overall"] + vendors:
        ys = [r["heldout"].get(v, {}).get("dice", float("nan")) for r in scored]
        ax.plot(
            xs,
            ys,
            marker="o",
            lw=2.5 if v == "overall" else 1.5,
            color="black" if v == "overall" else None,
            label=v,
        )
    if "centralised" in baselines:
        ax.axhline(
            baselines["centralised"]["overall"]["dice"],
            ls="--",
            color="grey",
            label="centralised (overall)",
        )
    ax.set_xlabel("round")
    ax.set_ylabel("held-out Dice")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Global model on the held-out set, per vendor")
    out = figure_png(fig)
    plt.close(fig)
    return out


def contact_sheet_png(
    images, references, predictions, dice: list[float], vendors: list[str]
) -> bytes:
    """One row per vendor: its best, median and worst case by Dice, each image with the
    reference outline (green) and the prediction's (magenta).

    Args:
        images: ``(N, C, S, S)`` in ``[0, 1]`` (C = 1 grey, 3 colour).
        references: ``(N, S, S)`` reference masks.
        predictions: ``(N, S, S)`` predicted masks.
        dice: each case's Dice.
        vendors: each case's vendor.

    Returns:
        PNG bytes.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from common.data.imaging import display

    groups = sorted(set(vendors))
    fig, axes = plt.subplots(len(groups), 3, figsize=(7.2, 2.5 * len(groups) + 0.3), squeeze=False)
    for row, vendor in enumerate(groups):
        idx = [i for i, v in enumerate(vendors) if v == vendor]
        ranked = sorted(idx, key=lambda i: -dice[i])
        picks = (("best", ranked[0]), ("median", ranked[len(ranked) // 2]), ("worst", ranked[-1]))
        for col, (label, i) in enumerate(picks):
            ax = axes[row, col]
            ax.imshow(display(images[i]), cmap="gray", vmin=0, vmax=1)
            for mask, colour in ((references[i], "#00d000"), (predictions[i], "#ff00ff")):
                if np.any(mask) and not np.all(mask):
                    ax.contour(mask, levels=[0.5], colors=colour, linewidths=0.9)
            ax.set_title(f"{label}: Dice {dice[i]:.3f}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(f"{vendor}\n({len(idx)} cases)", fontsize=8)
    fig.suptitle("Final model per vendor (green: reference, magenta: prediction)", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def _plot_comparison(rows: list[tuple[str, dict]], vendors: list[str]) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = [r for r in rows if "last round" not in r[0]]
    if len(rows) < 2:
        return None
    import textwrap

    groups = vendors + ["overall"]
    fig, ax = plt.subplots(figsize=(max(7.5, 1.8 * len(groups)), 4.6))
    width = 0.8 / len(rows)
    for i, (name, summary) in enumerate(rows):
        ys = [summary.get(g, {}).get("dice", 0.0) for g in groups]
        ax.bar(np.arange(len(groups)) + i * width, ys, width, label=name)
    labels = [textwrap.fill(g, 18) for g in groups]
    ax.set_xticks(np.arange(len(groups)) + 0.4 - width / 2, labels, fontsize=8)
    ax.set_ylabel("held-out Dice")
    ax.set_ylim(0, 1)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3)
    ax.set_title("Federated vs. each site alone vs. centralised")
    out = figure_png(fig)
    plt.close(fig)
    return out


def _fmt(x) -> str:
    return "–" if x is None or x != x else f"{x:.3f}"


def render(run_dir: Path) -> Path:
    """Write ``report.html`` in ``run_dir`` from the files there; return its path."""
    run_dir = Path(run_dir)
    rounds = read_rounds(run_dir)
    baselines = _load(run_dir / BASELINES_FILE)
    run = _load(run_dir / RUN_FILE)
    vendors = _vendors(rounds, baselines)
    site_vendors = set(baselines.get("site-vendors", []))
    rows = results_rows(rounds, baselines)
    esc = html.escape

    unseen = " <em>(no site has it)</em>"
    head = "".join(
        f"<th>Dice {esc(v)}{unseen if site_vendors and v not in site_vendors else ''}</th>"
        for v in vendors
    )
    table = [
        "<table><tr><th>model</th>"
        + head
        + "<th>Dice overall</th><th>IoU overall</th><th>HD95 overall (px)</th></tr>"
    ]
    for name, s in rows:
        cells = "".join(f"<td>{_fmt(s.get(v, {}).get('dice'))}</td>" for v in vendors)
        o = s.get("overall", {})
        table.append(
            f"<tr><td>{esc(name)}</td>{cells}<td><b>{_fmt(o.get('dice'))}</b></td>"
            f"<td>{_fmt(o.get('iou'))}</td><td>{_fmt(o.get('hd95'))}</td></tr>"
        )
    table.append("</table>")

    site_rows = []
    for r in rounds:
        s = r.get("sites", {})
        for t in s.get("trained", []):
            site_rows.append(
                f"<tr><td>{r['round']}</td><td>{esc(str(t['site']))}</td><td>trained</td>"
                f"<td>{int(t.get('num-examples', 0))}</td><td>{_fmt(t.get('train-loss'))}</td>"
                f"<td>{_fmt(t.get('val-dice'))}</td><td>{_fmt(t.get('train-seconds'))}</td></tr>"
            )
        for d in s.get("declined", []):
            site_rows.append(
                f"<tr class=warn><td>{r['round']}</td><td>{esc(str(d['site']))}</td>"
                f"<td colspan=5>declined: {esc(d['reason'])}</td></tr>"
            )
        for x in s.get("rejected", []):
            site_rows.append(
                f"<tr class=warn><td>{r['round']}</td><td>{esc(str(x['site']))}</td>"
                f"<td colspan=5>update rejected before aggregation: {esc(x['reason'])}</td></tr>"
            )
        for f in s.get("failed", []):
            who = esc(str(f["site"])) if "site" in f else f"node {f.get('node')}"
            site_rows.append(
                f"<tr class=warn><td>{r['round']}</td><td>{who}</td>"
                f"<td colspan=5>failed: {esc(str(f['error']))}</td></tr>"
            )
        for x in s.get("synthetic", []):
            if "failed" in x or "declined" in x:
                why = x.get("failed") or x.get("declined")
                site_rows.append(
                    f"<tr class=warn><td>{r['round']}</td><td>{esc(str(x['site']))}</td>"
                    f"<td colspan=5>synthetic release not used: {esc(str(why))}</td></tr>"
                )
            else:
                site_rows.append(
                    f"<tr><td>{r['round']}</td><td>{esc(str(x['site']))}</td><td>synthetic</td>"
                    f"<td colspan=4>{int(x.get('synthetic-released', 0))} pairs released of "
                    f"{int(x.get('synthetic-generated', 0))} drawn: "
                    f"{int(x.get('synthetic-implausible', 0))} with masks unlike the site's, "
                    f"{int(x.get('synthetic-dropped', 0))} dropped by the memorisation gate"
                    f"{_release_quality(x)}</td><td>{_fmt(x.get('train-seconds'))}</td></tr>"
                )
        for x in s.get("exchanged", []):
            whom = ", ".join(f"{k} {v}" for k, v in x.get("from", {}).items())
            site_rows.append(
                f"<tr><td>{r['round']}</td><td>{esc(str(x['to']))}</td><td>received</td>"
                f"<td colspan=5>{int(x.get('pairs', 0))} synthetic pairs of other sites "
                f"({esc(whom)}) to train on</td></tr>"
            )
        if s.get("server-training"):
            t = s["server-training"]
            site_rows.append(
                f"<tr><td>{r['round']}</td><td>server</td><td>pool</td>"
                f"<td>{int(t.get('examples', 0))}</td><td>{_fmt(t.get('loss'))}</td><td>–</td>"
                f"<td>{_fmt(t.get('seconds'))}</td></tr>"
            )
        if s.get("central-dp"):
            c = s["central-dp"]
            eps = ", ".join(f"{esc(str(k))} {v:.2f}" for k, v in c.get("epsilon", {}).items())
            site_rows.append(
                f"<tr><td>{r['round']}</td><td>server</td><td colspan=5>central DP: "
                f"{len(c.get('sites', []))} update(s), {c.get('clipped', 0)} clipped to "
                f"{c.get('clipping_norm', 0):g}, noise std {c.get('noise_std', 0):.3g}; "
                f"cumulative ε (δ={c.get('delta', 0):g}): {eps}</td></tr>"
            )
        if s.get("missing"):
            site_rows.append(
                f"<tr class=warn><td>{r['round']}</td><td>{s['missing']} site(s)</td>"
                f"<td colspan=5>no reply within the round timeout</td></tr>"
            )

    over_rounds = _plot_rounds(rounds, vendors, baselines)
    comparison = _plot_comparison(rows, vendors)
    cases = run_dir / CASES_FILE
    beside = [f'<img src="data:image/png;base64,{over_rounds}">'] if over_rounds else []
    if cases.exists():
        beside.append(
            f'<img style="max-width:48%" src="data:image/png;base64,'
            f'{base64.b64encode(cases.read_bytes()).decode()}">'
        )
    notes = []
    if baselines:
        notes.append(
            f"Baselines trained for {baselines.get('epochs', '?')} epochs, the same "
            "number of passes over local data as the federated run "
            "(rounds × local epochs), and evaluated on the same held-out set."
        )
    if site_vendors:
        notes.append("Site vendors: " + ", ".join(sorted(site_vendors)) + ".")
    warm = run.get("warm-start-record")
    if warm:  # the start spent no site's privacy: say what it was
        notes.append(
            f"Initial model: pretrained by the coordinator on {warm['cases']} phantoms for "
            f"{warm['epochs']} epochs (no site data, no ε spent)."
            if warm["kind"] == "phantoms"
            else f"Initial model: the weights {warm['file']} (SHA-256 {warm['sha256'][:12]}…)."
        )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>FedSynth run report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}tr.warn td{{background:#fff3cd}}
pre{{background:#f6f6f6;padding:8px;font-size:12px}}</style></head><body>
<h1>FedSynth run report</h1>
<p>{len(rounds)} round(s) recorded. Held-out set evaluated at the server, per vendor. HD95 in
pixels at the training resolution.</p>
<h2>Results</h2>{"".join(table)}<p>{esc(" ".join(notes))}</p>
<div style="display:flex;gap:1em;align-items:flex-start">{"".join(beside)}</div>
{f'<img src="data:image/png;base64,{comparison}">' if comparison else ""}
{_synthetic_section(run_dir)}
<h2>Sites per round</h2><table><tr><th>round</th><th>site</th><th>status</th><th>examples</th>
<th>train loss</th><th>local val Dice</th><th>train s</th></tr>{"".join(site_rows)}</table>
<h2>Settings</h2><pre>{esc(json.dumps(run, indent=2))}</pre></body></html>"""
    out = run_dir / REPORT_FILE
    out.write_text(page)
    return out


def _release_quality(x: dict) -> str:
    """A release's quality against its site's validation split, as the site reported it."""
    acc = x.get("synthetic-two-sample-accuracy")
    if acc is None:
        return ""
    return (
        f"; against the site's validation images: two-sample accuracy {acc:.2f} "
        f"(0.5: indistinguishable), foreground {x.get('synthetic-foreground-synthetic', 0):.3f}"
        f" synthetic vs {x.get('synthetic-foreground-real', 0):.3f} real"
    )


def _synthetic_section(run_dir: Path) -> str:
    """The synthetic pool's quality against the held-out real set, if the run has one."""
    quality = _load(run_dir / "synthetic" / "quality.json")
    if not quality:
        return ""
    esc = html.escape
    mr, ms = quality["masks_real"], quality["masks_synthetic"]
    rows = [
        ("pairs", quality["n_real"], quality["n_synthetic"]),
        (
            "MS-SSIM between random pairs (lower: more varied)",
            quality["ms_ssim_real"],
            quality["ms_ssim_synthetic"],
        ),
        ("empty masks (share)", mr["empty_share"], ms["empty_share"]),
        ("structures per mask (mean)", mr["structures_mean"], ms["structures_mean"]),
        ("structure size, median (share of image)", mr["size_median"], ms["size_median"]),
        (
            "structure size, 10th–90th percentile",
            f"{mr['size_q10']:.4f}–{mr['size_q90']:.4f}",
            f"{ms['size_q10']:.4f}–{ms['size_q90']:.4f}",
        ),
        ("foreground (share of pixels)", mr["foreground_share"], ms["foreground_share"]),
        *(
            [
                ("boundary per structure, median (image sides)", mr[b], ms[b]),
                ("roundness, median (4π area / boundary²)", mr[r], ms[r]),
            ]
            if (b := "boundary_median") in mr and (r := "roundness_median") in mr
            else []
        ),
        (
            "masks with 0/1/2/3/4/5+ structures",
            "/".join(map(str, mr["structures_hist"])),
            "/".join(map(str, ms["structures_hist"])),
        ),
    ]

    def cell(v):
        return esc(v) if isinstance(v, str) else (str(v) if isinstance(v, int) else f"{v:.4f}")

    body = "".join(
        f"<tr><td>{esc(k)}</td><td>{cell(a)}</td><td>{cell(b)}</td></tr>" for k, a, b in rows
    )
    halves = quality.get("frechet_distance_real_halves")
    fd = (
        f"<p>Fréchet distance, held-out real vs synthetic: <b>{quality['frechet_distance']:.3f}</b>"
        + (
            f" (two halves of the real set: {halves:.3f}, the floor to read it against)"
            if halves
            else ""
        )
        + f". Feature space: {esc(quality['feature_space'])}.</p>"
    )
    seg = quality.get("frechet_distance_segmentation")
    if seg is not None:
        floor = quality.get("frechet_distance_segmentation_real_halves")
        fd += (
            f"<p>Fréchet distance in the features of the consortium's trained model (its "
            f"deepest convolution): <b>{seg:.3f}</b>"
            + (f" (two halves of the real set: {floor:.3f})" if floor else "")
            + ".</p>"
        )
    two = quality.get("two_sample")
    if two:
        fd += (
            f"<p>Classifier two-sample test (a small CNN told to separate real from "
            f"synthetic pairs, scored on halves it did not train on): accuracy "
            f"<b>{two['accuracy']:.2f}</b> (95% CI {two['ci95'][0]:.2f}–{two['ci95'][1]:.2f}, "
            f"{two['n_test']} pairs; 0.5: indistinguishable, 1.0: always told apart).</p>"
        )
    per_site = ", ".join(
        f"{esc(k)}: {v if isinstance(v, int) else v.get('pairs', 0)}"
        for k, v in quality.get("per_site", {}).items()
    )
    site_rows = "".join(
        f"<tr><td>{esc(k)}</td><td>{v.get('pairs', 0)}</td>"
        f"<td>{_fmt(v.get('two_sample_accuracy'))}</td><td>{_fmt(v.get('frechet_distance'))}</td>"
        f"<td>{_fmt(v.get('foreground_share'))}</td>" + _sheet(run_dir, k) + "</tr>"
        for k, v in quality.get("per_site", {}).items()
        if isinstance(v, dict)
    )
    if site_rows:
        fd += (
            "<table><tr><th>site</th><th>pairs</th><th>two-sample accuracy vs held-out</th>"
            "<th>Fréchet distance</th><th>foreground</th><th>held-out real (top), the "
            f"site's pairs (bottom)</th></tr>{site_rows}</table>"
        )
    grid = run_dir / "synthetic" / "pairs.png"
    img = (
        f'<img src="data:image/png;base64,{base64.b64encode(grid.read_bytes()).decode()}">'
        if grid.exists()
        else ""
    )
    return (
        f"<h2>Synthetic data</h2><p>Pool: {per_site}.</p>{fd}"
        f"<table><tr><th></th><th>held-out real</th><th>synthetic pool</th></tr>{body}</table>"
        f"<p>Real held-out pairs (top) and synthetic pairs (bottom); masks outlined.</p>{img}"
    )


def sheet_file(site: str) -> str:
    """The file name of ``site``'s contact sheet in a run's ``synthetic/`` folder."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in site)
    return f"pairs_{safe}.png"


def _sheet(run_dir: Path, site: str) -> str:
    """A site's contact sheet (``synthetic/pairs_<site>.png``) as a table cell."""
    png = run_dir / "synthetic" / sheet_file(site)
    if not png.exists():
        return "<td></td>"
    data = base64.b64encode(png.read_bytes()).decode()
    return f'<td><img style="max-width:640px" src="data:image/png;base64,{data}"></td>'


def _load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}
