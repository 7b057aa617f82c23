from __future__ import annotations

import io
import json
import re

import pytest
from rich.console import Console
from rich.progress import Progress

from common.data.intake import FileFate, IntakeReport
from deploy.cli.views import PlainProgress, print_intake, progress_bar


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _plain(min_interval: float = 1.0) -> tuple[PlainProgress, io.StringIO, FakeClock]:
    out, clock = io.StringIO(), FakeClock()
    bar = PlainProgress(Console(file=out, force_terminal=False), min_interval, clock)
    return bar, out, clock


def _lines(out: io.StringIO) -> list[str]:
    return out.getvalue().splitlines()


def test_a_terminal_gets_rich_progress_and_a_log_gets_plain_lines():
    assert isinstance(progress_bar(Console(file=io.StringIO(), force_terminal=True)), Progress)
    plain = progress_bar(Console(file=io.StringIO(), force_terminal=False))
    assert isinstance(plain, PlainProgress)


def test_plain_lines_for_start_description_change_and_end():
    bar, out, clock = _plain()
    with bar:
        task = bar.add_task("federated rounds", total=12)
        clock.now += 20
        bar.update(task, completed=1, description="federated rounds (held-out Dice 0.500)")
        clock.now += 21
        bar.update(task, completed=3, description="federated rounds (held-out Dice 0.812)")
        clock.now += 0.2  # same figure, same description: nothing to say
        bar.update(task, completed=3, description="federated rounds (held-out Dice 0.812)")
        clock.now += 259
        bar.update(task, completed=12, description="federated rounds (held-out Dice 0.901)")
    assert _lines(out) == [
        "federated rounds ...",
        "federated rounds: 1/12 (held-out Dice 0.500) 20 s",
        "federated rounds: 3/12 (held-out Dice 0.812) 41 s",
        "federated rounds: 12/12 (held-out Dice 0.901) 300 s",
        "federated rounds: done, 12/12 (held-out Dice 0.901) in 300 s",
    ]


def test_plain_intake_as_the_cli_feeds_it():
    """The site-prepare callback: total unknown at first, then set, then one per file."""
    bar, out, clock = _plain()
    with bar:
        task = bar.add_task("intake site-1", total=None)
        bar.update(task, total=52)
        bar.advance(task, 0)
        for _ in range(52):
            clock.now += 3.1 / 52
            bar.advance(task, 1)
    lines = _lines(out)
    assert lines[0] == "intake site-1 ..."
    assert lines[-1] == "intake site-1: done, 52/52 in 3.1 s"
    assert 3 <= len(lines) <= 5  # one line per second at most in between
    assert all(re.fullmatch(r"intake site-1: \d+/52 \d\.\d s", x) for x in lines[1:-1])


@pytest.mark.parametrize("seconds_per_step", [0.0, 0.5])
def test_a_1000_step_task_prints_about_a_dozen_lines(seconds_per_step):
    bar, out, clock = _plain()
    with bar:
        task = bar.add_task("writing DICOM", total=1000)
        for _ in range(1000):
            clock.now += seconds_per_step
            bar.advance(task)
    lines = _lines(out)
    assert len(lines) <= 12
    took = "0.0 s" if not seconds_per_step else "500 s"
    assert lines[-1] == f"writing DICOM: done, 1000/1000 in {took}"
    if seconds_per_step:  # time allows a line per tenth: 100, 200 ... 900
        counts = [int(re.search(r": (\d+)/1000", x).group(1)) for x in lines[1:-1]]
        assert counts == list(range(100, 1000, 100))


def test_a_description_change_too_soon_is_printed_with_the_next_update():
    bar, out, clock = _plain()
    with bar:
        task = bar.add_task("baselines", total=4)
        clock.now += 0.1
        bar.update(task, description="baseline: local-only site-1")  # too soon: held
        clock.now += 5
        bar.advance(task)
    assert _lines(out)[1] == "baseline: local-only site-1: 1/4 5.1 s"


def test_a_block_that_raises_says_where_it_stopped():
    bar, out, clock = _plain()
    with pytest.raises(RuntimeError), bar:
        task = bar.add_task("de-identifying", total=10)
        bar.advance(task, 4)
        clock.now += 2
        raise RuntimeError("boom")
    assert _lines(out)[-1] == "de-identifying: stopped at 4/10 after 2.0 s"


def test_plain_lines_are_not_markup_and_unknown_ids_are_named():
    bar, out, _ = _plain()
    with bar:
        bar.add_task("[bold]site[/] ...", total=None)
        with pytest.raises(KeyError, match="no progress task 7"):
            bar.advance(7)
    assert _lines(out)[0] == "[bold]site[/] ... ..."
    assert _lines(out)[1].startswith("[bold]site[/] ...: done, 0 in")
    with pytest.raises(ValueError, match="min_interval must be 0 or more seconds, got -1"):
        PlainProgress(Console(file=io.StringIO()), min_interval=-1)


def test_the_round_follower_prints_one_line_per_evaluated_round(tmp_path, monkeypatch):
    """deploy.local.runner._follow, the caller that puts the held-out Dice in the description."""
    from deploy.cli import views
    from deploy.local import runner

    clock = FakeClock()
    monkeypatch.setattr(views, "PlainProgress", lambda console: PlainProgress(console, 1.0, clock))
    out = io.StringIO()
    bar, tick = runner._follow(tmp_path, 3, Console(file=out, force_terminal=False))
    metrics = tmp_path / runner.METRICS_FILE
    rows = []
    with bar:
        tick()  # no metrics yet
        for rnd, dice in ((0, None), (1, 0.5), (2, 0.75), (3, 0.8125)):
            clock.now += 10
            row = {"round": rnd}
            if dice is not None:
                row["heldout"] = {"overall": {"dice": dice}}
            rows.append(json.dumps(row))
            metrics.write_text("\n".join(rows) + "\n")
            tick()
            tick()  # ticks come more often than rounds
    assert _lines(out) == [
        "federated rounds ...",
        "federated rounds: 1/3 (held-out Dice 0.500) 20 s",
        "federated rounds: 2/3 (held-out Dice 0.750) 30 s",
        "federated rounds: 3/3 (held-out Dice 0.812) 40 s",
        "federated rounds: done, 3/3 (held-out Dice 0.812) in 40 s",
    ]


def test_print_intake_summarises_many_image_sizes_in_one_line():
    sizes = {f"{500 + i}x{400 + 2 * i}": 1 for i in range(300)}
    sizes["622x529"] = 35
    report = IntakeReport(
        data_dir="/data",
        files=[FileFate("images/x.png", "processed"), FileFate("junk.bin", "rejected", "junk")],
        cases=335,
        vendors={"Canon CR5": 335},
        image_sizes=sizes,
    )
    out = io.StringIO()
    print_intake(Console(file=out, width=250, force_terminal=False), report, "site-1")
    text = out.getvalue()
    line = next(x for x in text.splitlines() if "image sizes" in x)
    assert line.strip() == f"image sizes: {report.size_summary()}"
    assert "500x400 to 799x998 (301 distinct); most common: 622x529 (35)" in line
    assert len(line) < 200 and "junk.bin" in text
