"""Terminal views shared by the CLI commands (rich tables and progress bars)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


def progress_bar(console: Console) -> Progress | PlainProgress:
    """The project's standard progress bar.

    On a terminal, a rich :class:`~rich.progress.Progress`. Elsewhere (CI, containers,
    output sent to a file) a :class:`PlainProgress` that prints a few plain lines a person
    can follow in a log, with the same ``add_task`` / ``update`` / ``advance`` / ``with``.
    """
    if not console.is_terminal:
        return PlainProgress(console)
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


@dataclass
class _PlainTask:
    description: str
    total: float | None
    completed: float
    visible: bool
    started: float
    last_line: float  # clock time of the task's last line
    last_completed: float  # its count then
    pending: bool = False  # a description change not printed yet (too soon after a line)
    closed: bool = False


class PlainProgress:
    """Progress as plain lines, for a console that is not a terminal.

    It offers the part of :class:`rich.progress.Progress` the CLI uses. Each task prints a
    line when it is added (``"intake site-1 ..."``); a line when its description changes
    (``"federated rounds: 3/12 (held-out Dice 0.812) 41 s"``: a description's closing
    parenthesis moves after the count); a line each time a counted task passes another
    tenth of its total; and, when the ``with`` block ends, one closing line
    (``"intake site-1: done, 52/52 in 3.1 s"``, or ``"stopped at ..."`` when the block
    raised). No task prints more than one line per ``min_interval`` seconds but its first
    and last; a line held back is printed with the next update that may print.

    Args:
        console: where the lines go (printed without markup or highlighting).
        min_interval: the fewest seconds between two lines of a task (0: no limit).
        clock: monotonic seconds (tests pass a fake one).

    Raises:
        ValueError: if ``min_interval`` is negative.
    """

    def __init__(
        self,
        console: Console,
        min_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if min_interval < 0:
            raise ValueError(f"min_interval must be 0 or more seconds, got {min_interval}")
        self.console = console
        self.min_interval = min_interval
        self._clock = clock
        self._tasks: dict[int, _PlainTask] = {}

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        for task in self._tasks.values():
            if not task.closed:
                task.closed = True
                self._close_line(task, failed=exc_type is not None)

    def add_task(
        self,
        description: str,
        start: bool = True,
        total: float | None = None,
        completed: float = 0,
        visible: bool = True,
        **fields: object,
    ) -> int:
        """Start a task and print ``"<description> ..."``; returns its id.

        ``start`` and ``fields`` are accepted for rich's signature and ignored.
        """
        now = self._clock()
        task_id = len(self._tasks)
        self._tasks[task_id] = _PlainTask(
            description, total, completed, visible, now, last_line=now, last_completed=completed
        )
        self._print(self._tasks[task_id], f"{description} ...")
        return task_id

    def update(
        self,
        task_id: int,
        *,
        total: float | None = None,
        completed: float | None = None,
        advance: float | None = None,
        description: str | None = None,
        visible: bool | None = None,
        refresh: bool = False,
        **fields: object,
    ) -> None:
        """Change a task as rich does (``completed`` is set before ``advance`` is added);
        print a line if the description changed or the count passed another tenth of the
        total, unless the task printed one less than ``min_interval`` seconds ago.

        Raises:
            KeyError: if ``task_id`` was not returned by :meth:`add_task` here.
        """
        task = self._task(task_id)
        if total is not None:
            task.total = total
        if completed is not None:
            task.completed = completed
        if advance is not None:
            task.completed += advance
        if visible is not None:
            task.visible = visible
        if description is not None and description != task.description:
            task.description = description
            task.pending = True
        if task.closed or not (task.pending or self._passed_a_tenth(task)):
            return
        now = self._clock()
        if now - task.last_line < self.min_interval:
            return  # held back; the next update that may print will
        task.pending = False
        task.last_line, task.last_completed = now, task.completed
        name, detail = _split_detail(task.description)
        self._print(task, f"{name}: {_count(task)}{detail} {_seconds(now - task.started)}")

    def advance(self, task_id: int, advance: float = 1) -> None:
        """Add ``advance`` to a task's count (see :meth:`update`)."""
        self.update(task_id, advance=advance)

    def _task(self, task_id: int) -> _PlainTask:
        try:
            return self._tasks[task_id]
        except KeyError:
            raise KeyError(
                f"no progress task {task_id!r} here (tasks: {sorted(self._tasks)}); "
                "use the id add_task returned"
            ) from None

    @staticmethod
    def _passed_a_tenth(task: _PlainTask) -> bool:
        if not task.total or task.total <= 0 or task.completed >= task.total:
            return False  # uncounted, or finished: the closing line says it
        return int(10 * task.completed / task.total) > int(10 * task.last_completed / task.total)

    def _close_line(self, task: _PlainTask, failed: bool) -> None:
        name, detail = _split_detail(task.description)
        took = _seconds(self._clock() - task.started)
        if failed:
            self._print(task, f"{name}: stopped at {_count(task)}{detail} after {took}")
        else:
            self._print(task, f"{name}: done, {_count(task)}{detail} in {took}")

    def _print(self, task: _PlainTask, line: str) -> None:
        if task.visible:
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)


def _split_detail(description: str) -> tuple[str, str]:
    """``"federated rounds (held-out Dice 0.812)"`` -> ``("federated rounds", " (held-out
    Dice 0.812)")``: a closing parenthesised remark, so that it can follow the count."""
    if not description.endswith(")"):
        return description, ""
    depth = 0
    for i in range(len(description) - 1, -1, -1):
        depth += {")": 1, "(": -1}.get(description[i], 0)
        if depth == 0:
            if i > 0 and description[i - 1] == " " and description[: i - 1].strip():
                return description[: i - 1], description[i - 1 :]
            break
    return description, ""


def _count(task: _PlainTask) -> str:
    done = _number(task.completed)
    return done if task.total is None else f"{done}/{_number(task.total)}"


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.1f}"


def _seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 10 else f"{s:.0f} s"


def _colour(report) -> str:
    colour = getattr(report, "colour", 0)
    if not colour:
        return "none (greyscale images: one channel)"
    if colour == report.cases:
        return f"all {colour} images (RGB kept; the run's channels setting picks what trains)"
    return f"{colour} of {report.cases} images (the site is cached as RGB, grey images repeated)"


def print_intake(console: Console, report, title: str) -> None:
    """Print an intake report: the summary, then every file that was not processed."""
    c = report.counts()
    console.print(
        f"[bold]{title}[/]: {report.cases} usable cases"
        + (f" ({report.patients} patients)" if 0 < report.patients < report.cases else "")
        + f"; files: {c['processed']} "
        f"processed, {c['quarantined']} quarantined, {c['rejected']} rejected "
        f"(total {c['total']})"
    )
    if report.cases:
        vendors = ", ".join(f"{v} ({n})" for v, n in sorted(report.vendors.items()))
        console.print(
            f"  vendors: {vendors}\n  image sizes: {report.size_summary()}\n"
            f"  colour: {_colour(report)}\n"
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
