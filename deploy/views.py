"""Terminal views shared by the CLI commands (rich tables and progress bars)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


def progress_bar(console: Console) -> Progress:
    """The project's standard progress bar."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def print_intake(console: Console, report, title: str) -> None:
    """Print an intake report: the summary, then every file that was not processed."""
    c = report.counts()
    console.print(
        f"[bold]{title}[/]: {report.cases} usable cases; files: {c['processed']} "
        f"processed, {c['quarantined']} quarantined, {c['rejected']} rejected "
        f"(total {c['total']})"
    )
    if report.cases:
        vendors = ", ".join(f"{v} ({n})" for v, n in sorted(report.vendors.items()))
        sizes = ", ".join(f"{k} ({v})" for k, v in sorted(report.image_sizes.items()))
        console.print(
            f"  vendors: {vendors}\n  image sizes: {sizes}\n"
            f"  labels: foreground {100 * report.foreground_fraction:.2f}% of pixels, "
            f"{report.objects_per_case:.2f} objects per case, {report.empty_masks} "
            f"empty masks, {report.second_annotator} cases with a second annotator"
        )
    bad = [f for f in report.files if f.fate != "processed"]
    if bad:
        table = Table("file", "fate", "reason")
        for f in bad:
            table.add_row(f.path, f.fate, f.reason)
        console.print(table)


def print_results(console: Console, run_dir: Path) -> None:
    """Print the run's results: one row per vendor, one column per model (Dice)."""
    import json

    from common.report import BASELINES_FILE, read_rounds, results_rows

    baselines_path = Path(run_dir) / BASELINES_FILE
    baselines = json.loads(baselines_path.read_text()) if baselines_path.exists() else {}
    rows = [
        (n, s)
        for n, s in results_rows(read_rounds(run_dir), baselines)
        if not n.startswith("Federated, best")
    ]
    if not rows:
        console.print("[yellow]no held-out results recorded[/]")
        return
    seen = set(baselines.get("site-vendors", []))
    vendors = sorted({v for _, s in rows for v in s if v != "overall"})
    short = [
        n.replace("Federated, last round", "federated")
        .replace("Local-only: ", "")
        .replace("Centralised (all sites pooled)", "centralised")
        for n, _ in rows
    ]
    table = Table("held-out Dice", *short, title="federated vs. centralised vs. each site alone")
    for v in vendors + ["overall"]:
        label = v + (" (no site has it)" if seen and v not in seen and v != "overall" else "")
        table.add_row(label, *[f"{s.get(v, {}).get('dice', float('nan')):.3f}" for _, s in rows])
    console.print(table)
