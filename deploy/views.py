"""Terminal views shared by the CLI commands (rich tables and progress bars)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


def progress_bar(console: Console) -> Progress:
    """The project's standard progress bar."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console)


def print_intake(console: Console, report, title: str) -> None:
    """Print an intake report: the summary, then every file that was not processed."""
    c = report.counts()
    console.print(f"[bold]{title}[/]: {report.cases} usable cases; files: {c['processed']} "
                  f"processed, {c['quarantined']} quarantined, {c['rejected']} rejected "
                  f"(total {c['total']})")
    if report.cases:
        vendors = ", ".join(f"{v} ({n})" for v, n in sorted(report.vendors.items()))
        sizes = ", ".join(f"{k} ({v})" for k, v in sorted(report.image_sizes.items()))
        console.print(f"  vendors: {vendors}\n  image sizes: {sizes}\n"
                      f"  labels: foreground {100 * report.foreground_fraction:.2f}% of pixels, "
                      f"{report.objects_per_case:.2f} objects per case, {report.empty_masks} "
                      f"empty masks, {report.second_annotator} cases with a second annotator")
    bad = [f for f in report.files if f.fate != "processed"]
    if bad:
        table = Table("file", "fate", "reason")
        for f in bad:
            table.add_row(f.path, f.fate, f.reason)
        console.print(table)


def print_results(console: Console, run_dir: Path) -> None:
    """Print the run's results table (federated, local-only, centralised) per vendor."""
    import json

    from common.report import BASELINES_FILE, read_rounds, results_rows

    baselines_path = Path(run_dir) / BASELINES_FILE
    baselines = json.loads(baselines_path.read_text()) if baselines_path.exists() else {}
    rows = results_rows(read_rounds(run_dir), baselines)
    if not rows:
        console.print("[yellow]no held-out results recorded[/]")
        return
    unseen = set(baselines.get("site-vendors", []))
    vendors = sorted({v for _, s in rows for v in s if v != "overall"})
    table = Table("model", *[v + (" *" if unseen and v not in unseen else "") for v in vendors],
                  "overall Dice", "IoU", "HD95 px", title="held-out Dice per vendor "
                  "(* = no site has this vendor)" if unseen else "held-out Dice per vendor")
    for name, s in rows:
        table.add_row(name, *[f"{s.get(v, {}).get('dice', float('nan')):.3f}" for v in vendors],
                      f"{s['overall']['dice']:.3f}", f"{s['overall']['iou']:.3f}",
                      f"{s['overall']['hd95']:.1f}")
    console.print(table)
