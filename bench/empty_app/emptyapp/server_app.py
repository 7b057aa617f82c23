"""FedAvg over empty work; writes the time of each round to OUT-DIR/rounds.json."""

import json
import time
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

app = ServerApp()


class _Prompt:
    """Polls for replies every `interval` s (same as FedSynth's server/grid.py)."""

    def __init__(self, grid: Grid, interval: float) -> None:
        self.grid, self.interval = grid, interval

    def __getattr__(self, name):
        return getattr(self.grid, name)

    def send_and_receive(self, messages, *, timeout=None):
        pending, replies = set(self.grid.push_messages(messages)), []
        end = time.monotonic() + (timeout or 3600)
        while pending and time.monotonic() < end:
            got = list(self.grid.pull_messages(pending))
            replies += got
            pending -= {m.metadata.reply_to_message_id for m in got}
            time.sleep(self.interval if pending else 0)
        return replies


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    n = int(cfg["min-sites"])
    times = []
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=n, min_available_nodes=n)
    strategy.start(
        grid=_Prompt(grid, float(cfg["reply-poll-interval"])),
        initial_arrays=ArrayRecord({"w": Array(np.zeros(10, np.float32))}),
        num_rounds=int(cfg["num-server-rounds"]),
        timeout=600,
        evaluate_fn=lambda rnd, arrays: times.append(time.time()),
    )
    Path(cfg["out-dir"]).mkdir(parents=True, exist_ok=True)
    Path(cfg["out-dir"], "rounds.json").write_text(json.dumps(times))
