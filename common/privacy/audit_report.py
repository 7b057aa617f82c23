"""The auditor's summary of ledgers: a per-site table, and ε over rounds as a plot.

Per site: entries, what left (weights, metrics, decline notes; tensors and bytes), the
last release, the mechanism, ε spent and δ, the budget and what is left of it.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

from common.privacy.audit import load


@dataclass
class SiteSummary:
    """What one site's ledger says it released, and its privacy spend."""

    site: str
    kinds: dict[str, int] = field(default_factory=dict)
    tensors: int = 0
    bytes: int = 0
    first: str = ""
    last: str = ""
    runs: set[str] = field(default_factory=set)
    epsilon: float | None = 0.0  # None: something left without DP (epsilon unbounded)
    delta: float | None = None
    budget: float | None = None
    curve: list[tuple[int, float]] = field(default_factory=list)  # (release number, ε)
    accountant: str = ""
    unit: str = ""  # what ε protects: "patient", or "image" if any release counted images
    attack: str = ""  # the latest membership-inference AUC the site recorded
    starts: set[str] = field(default_factory=set)  # warm starts its DP rounds began from

    @property
    def budget_left(self) -> float | None:
        if self.budget is None or self.epsilon is None:
            return None
        return max(0.0, self.budget - self.epsilon)


def summarise(paths: list[str | Path]) -> list[SiteSummary]:
    """One :class:`SiteSummary` per site ledger among ``paths``."""
    out = []
    for site, (_, lines) in sorted(load(paths).sites.items()):
        s = SiteSummary(site)
        for entry in lines:
            if "_bad" in entry or "kind" not in entry:
                continue
            s.kinds[entry["kind"]] = s.kinds.get(entry["kind"], 0) + 1
            s.tensors += entry["release"].get("tensors", 0)
            s.bytes += entry["release"].get("bytes", 0)
            s.first = s.first or entry["time"]
            s.last = entry["time"]
            s.runs.add(entry["run"])
            attack = entry["release"].get("attack")
            if attack:  # `fedsynth privacy attack` at the site
                s.attack = f"{attack['auc']:.3f} [{attack['low']:.3f}-{attack['high']:.3f}]"
            dp = entry.get("dp")
            if dp:
                s.epsilon = dp["epsilon_total"] if s.epsilon is not None else None
                s.delta, s.budget, s.accountant = dp["delta"], dp.get("budget"), dp["accountant"]
                s.curve.append((len(s.curve) + 1, dp["epsilon_total"]))
                # entries from before patient-level DP counted images
                unit = dp.get("unit", "image")
                s.unit = "image" if "image" in (s.unit, unit) else unit
                if "warm_start" in dp:
                    s.starts.add(dp["warm_start"])
            elif entry["kind"] in ("weights", "synthetic"):
                s.epsilon = None  # a release without DP: no finite ε covers this site
        out.append(s)
    return out


def table(summaries: list[SiteSummary]) -> list[dict]:
    """Rows for printing: one dict per site."""

    def eps(x):
        return "unbounded (no DP)" if x is None else f"{x:.3f}"

    return [
        {
            "site": s.site,
            "released": ", ".join(f"{n} {k}" for k, n in sorted(s.kinds.items())),
            "MB": f"{s.bytes / 1e6:.2f}",
            "runs": len(s.runs),
            "epsilon": eps(s.epsilon),
            "delta": "" if s.delta is None else f"{s.delta:g}",
            "per": s.unit,
            "attack AUC": s.attack,
            "warm start": ", ".join(sorted(s.starts)),
            "budget": "none" if s.budget is None else f"{s.budget:g}",
            "left": "" if s.budget_left is None else f"{s.budget_left:.3f}",
            "last release": s.last[:19].replace("T", " "),
        }
        for s in summaries
    ]


def _plot(summaries: list[SiteSummary]) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from common.report import figure_png

    if not any(s.curve for s in summaries):
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, s in enumerate(summaries):
        if not s.curve:
            continue
        xs, ys = zip(*s.curve)
        (line,) = ax.plot(xs, ys, marker="o", label=s.site)
        if s.budget:
            ax.axhline(s.budget, color=line.get_color(), ls="--", lw=1)
    ax.set_xlabel("DP release (training round) at the site")
    ax.set_ylabel("cumulative ε")
    ax.set_title("Privacy spent per site (dashed: the site's budget)")
    ax.legend()
    png = figure_png(fig)
    plt.close(fig)
    return png


def render_html(summaries: list[SiteSummary], out: Path, findings: list[str]) -> Path:
    """Write the HTML report (table, plot, and the verification findings)."""
    rows = table(summaries)
    esc = html.escape
    head = "".join(f"<th>{esc(k)}</th>" for k in rows[0]) if rows else ""
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(str(v))}</td>" for v in r.values()) + "</tr>" for r in rows
    )
    plot = _plot(summaries)
    img = f'<img src="data:image/png;base64,{plot}">' if plot else "<p>No DP releases.</p>"
    notes = "".join(f"<li>{esc(f)}</li>" for f in findings) or "<li>all ledgers verify</li>"
    out.write_text(
        f"""<!doctype html><html><head><meta charset="utf-8"><title>FedSynth privacy audit</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{border:1px solid #ccc;padding:4px 8px}}
table{{border-collapse:collapse}}</style></head><body>
<h1>Privacy audit</h1><h2>Per site</h2><table><tr>{head}</tr>{body}</table>
<h2>ε over rounds</h2>{img}<h2>Verification</h2><ul>{notes}</ul></body></html>"""
    )
    return out
