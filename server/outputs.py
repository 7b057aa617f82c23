"""A run's output folder: settings, per-round metrics, checkpoints and the HTML report.

OUT/run.json                 settings of the run
OUT/metrics.jsonl            one line per round: held-out metrics, what each site did
OUT/checkpoints/last.pt      global weights after the latest round
OUT/checkpoints/best.pt      global weights with the best held-out overall Dice
OUT/report.html              see common.report
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

from common import report
from common.config import RunSettings


class RunOutputs:
    """Writes a run's outputs as rounds complete (safe to read at any time)."""

    def __init__(self, out_dir: str | Path, run: RunSettings, run_id: int | None = None) -> None:
        self.dir = Path(out_dir).resolve()
        (self.dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        (self.dir / report.METRICS_FILE).unlink(missing_ok=True)
        self.best_dice = -math.inf
        (self.dir / report.RUN_FILE).write_text(
            json.dumps(
                {
                    "run-id": run_id,
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    **{k.replace("_", "-"): v for k, v in asdict(run).items()},
                },
                indent=2,
            )
        )

    def record_warm_start(self, record: dict | None) -> None:
        """Add what the initial model was pretrained on to ``run.json`` (the report says it)."""
        if record is None:
            return
        path = self.dir / report.RUN_FILE
        run = json.loads(path.read_text())
        run["warm-start-record"] = record
        path.write_text(json.dumps(run, indent=2))

    def record_round(
        self,
        server_round: int,
        heldout: dict | None,
        sites: dict | None,
        state_dict: dict | None,
        eval_seconds: float = 0.0,
    ) -> None:
        """Append a round to metrics.jsonl, save checkpoints, refresh the report.

        Args:
            server_round: the round (0: the initial model).
            heldout: held-out metrics per vendor (None without an eval-dir).
            sites: what each site did (:class:`server.strategies.RoundRecord` as JSON).
            state_dict: the global weights after the round.
            eval_seconds: time the server spent evaluating.
        """
        import torch

        line = {
            "round": server_round,
            "time": time.time(),
            "heldout": heldout or {},
            "sites": sites or {},
            "eval-seconds": eval_seconds,
        }
        with open(self.dir / report.METRICS_FILE, "a") as f:
            f.write(json.dumps(line) + "\n")
        if state_dict is not None and server_round > 0:
            torch.save(state_dict, self.dir / "checkpoints" / "last.pt")
            dice = (heldout or {}).get("overall", {}).get("dice", -math.inf)
            if dice > self.best_dice:
                self.best_dice = dice
                torch.save(state_dict, self.dir / "checkpoints" / "best.pt")
        report.render(self.dir)
