"""The phases of a long command: a line as each starts, its wall time, and a clean stop.

``fedsynth demo`` and ``fedsynth simulate`` run as a few phases (sample data, intake,
generators, federated rounds, baselines). Each phase prints one line when it starts, so a
log read without a terminal shows where the command is; its wall time is kept for
``timings.json``; and when the command is interrupted (Ctrl-C, or SIGTERM, which the CLI
turns into the same interrupt) the phase says that it stopped and what a re-run does.

Example::

    phases = Phases(console)
    with phases("intake", resume="prepared sites keep their cache"):
        ...
    phases.timings   # {"intake": 0.8}
"""

from __future__ import annotations

import contextlib
import time

from rich.console import Console


class Phases:
    """Named phases of one command, timed in order.

    Args:
        console: where the phase lines go.
    """

    def __init__(self, console: Console):
        self.console = console
        self.timings: dict[str, float] = {}
        self._start = time.perf_counter()

    @contextlib.contextmanager
    def __call__(self, name: str, resume: str = "a re-run starts this phase again"):
        """Run the block as phase ``name``.

        Args:
            name: the phase, as printed and as its key in :attr:`timings`.
            resume: what a re-run of the same command does after a stop in this phase.
        """
        self.console.print(f"[bold]== {name}[/]")
        start = time.perf_counter()
        try:
            yield
        except KeyboardInterrupt:
            self.console.print(
                f"[yellow]stopped during {name}[/] after {time.perf_counter() - start:.1f} s; "
                f"every process it started is stopped; {resume}"
            )
            raise
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start

    def total(self) -> float:
        """Seconds since this object was made."""
        return time.perf_counter() - self._start
