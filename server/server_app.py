"""FedSynth ServerApp: rounds of federated training with server-side held-out evaluation.

The handler reads the run settings, builds the strategy and the evaluator, and lets the
strategy run; every round the global model is evaluated on the held-out set kept here
and the run folder (metrics.jsonl, checkpoints, report.html) is updated.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp

from common import keys
from common.config import RunSettings
from common.report import CASES_FILE

logger = logging.getLogger(__name__)
app = ServerApp()


def _flatten(summary: dict) -> MetricRecord:
    return MetricRecord(
        {
            f"{m}/{group}": float(v)
            for group, ms in summary.items()
            for m, v in ms.items()
            if m != "n"
        }
    )


def _channels(run: RunSettings, evaluator) -> str:
    """The run's ``channels``, resolved once for every site: ``auto`` follows the
    held-out set (rgb if it is in colour, else grey)."""
    from common.data.channels import resolve

    if run.channels == "auto" and evaluator is None:
        logger.warning(
            "channels=auto without a held-out set: training on grey images; set "
            'channels="rgb" for colour data'
        )
    colour = evaluator is not None and evaluator.data.channels == 3
    mode = resolve(run.channels, colour)
    logger.info(
        "channels: %s (%s)", mode, "from the run config" if run.channels != "auto" else "auto"
    )
    return mode


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run ``num-server-rounds`` rounds; see pyproject.toml for every setting."""
    import torch

    from common.data.channels import in_channels
    from common.seg.networks import create_network
    from server.evaluation import HeldOutEvaluator
    from server.grid import PromptGrid
    from server.outputs import RunOutputs
    from server.releases import ReleaseVerifier
    from server.strategies import create_strategy
    from server.warm_start import warm_start

    run = RunSettings.from_config(context.run_config)
    logger.info("FedSynth run writing to %s", Path(run.out_dir).resolve())
    evaluator = None
    if run.eval_dir:
        evaluator = HeldOutEvaluator(
            run.eval_dir, Path(run.out_dir).resolve() / "heldout-state", run.image_size, run.network
        )
    else:
        logger.warning("eval-dir is empty: no server-side held-out evaluation this run")
    run = replace(run, channels=_channels(run, evaluator))
    outputs = RunOutputs(run.out_dir, run, getattr(context, "run_id", None))  # channels resolved
    if evaluator is not None:
        evaluator.use_channels(run.channels)
    torch.manual_seed(run.seed)
    model = create_network(run.network, in_channels(run.channels))
    outputs.record_warm_start(warm_start(model, run, in_channels(run.channels)))
    initial = model.state_dict()
    strategy = create_strategy(run, outputs.dir)
    strategy.verifier = ReleaseVerifier(outputs.dir, run.registry, getattr(context, "run_id", ""))
    if run.share != "weights" and evaluator is not None:
        strategy.reference = evaluator.data  # synthetic quality is measured against it

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        start = time.perf_counter()
        state = arrays.to_torch_state_dict()
        summary = evaluator(state) if evaluator and run.eval_due(server_round) else None
        if summary and server_round == run.num_server_rounds:  # the final model's cases
            evaluator.contact_sheet(outputs.dir / CASES_FILE)
        record = strategy.rounds.get(server_round)
        outputs.record_round(
            server_round,
            summary,
            record.to_json() if record else {},
            state,
            eval_seconds=time.perf_counter() - start,
        )
        return _flatten(summary) if summary else None

    strategy.start(
        grid=PromptGrid(grid, run.reply_poll_interval),
        initial_arrays=ArrayRecord(initial),
        num_rounds=run.num_server_rounds,
        timeout=run.round_timeout,
        train_config=ConfigRecord({keys.CHANNELS: run.channels}),
        evaluate_config=ConfigRecord({keys.CHANNELS: run.channels}),
        evaluate_fn=evaluate_fn,
    )
    logger.info("FedSynth run finished: report at %s", outputs.dir / "report.html")
