"""FedSynth ClientApp: one hospital's side of a round. Thin handlers over client.task.

Flower starts a fresh process for every message, so this module imports only Flower and
light project modules. The work goes to the site's warm trainer when one runs
(:mod:`client.trainer`), else it runs here; torch and MONAI are imported only then.
A site that cannot train replies with a ``declined`` reason instead of failing, so the
coordinator can report it and carry on with the other sites.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from client import trainer
from common import keys
from common.config import RunSettings, SiteSettings
from common.errors import ConfigError

app = ClientApp()


def _process_age() -> float:
    """Seconds since this process started (0 where /proc is unavailable)."""
    try:
        ticks = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])
        uptime = float(open("/proc/uptime").read().split()[0])
        return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def _decline(msg: Message, site_name: str, reason: str) -> Message:
    site = ConfigRecord({keys.SITE_NAME: site_name, keys.DECLINED: reason})
    return Message(RecordDict({keys.SITE: site}), reply_to=msg)


def _work(msg: Message, context: Context, op: str, **extra) -> tuple[str, dict]:
    """Run ``op`` on the site's trainer, or in this process; ``(site name, reply)``."""
    try:
        run = RunSettings.from_config(context.run_config)
        site = SiteSettings.from_config(context.node_config, run)
    except ConfigError as exc:
        return str(context.node_config.get("site-name", "site")), {
            "status": "declined",
            "reason": str(exc),
        }
    arrays = msg.content[keys.ARRAYS]
    req = {
        "op": op,
        "site": asdict(site),
        "run": asdict(run),
        "weights": {name: arrays[name].numpy() for name in arrays.keys()},
        **extra,
    }
    reply = trainer.request(site.state_dir, req, timeout=run.round_timeout)
    if reply is None:
        reply = trainer.handle(req)
    if reply["status"] == "error":
        raise RuntimeError(reply["reason"])
    return site.site_name, reply


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the received global model on local data; reply with weights and metrics."""
    startup, start = _process_age(), time.perf_counter()
    config = msg.content[keys.CONFIG]
    name, reply = _work(
        msg,
        context,
        "train",
        round=int(config[keys.SERVER_ROUND]),
        proximal_mu=float(config.get(keys.PROXIMAL_MU, 0.0)),
    )
    if reply["status"] == "declined":
        return _decline(msg, name, reply["reason"])
    result = reply["result"]
    metrics = MetricRecord(
        {
            keys.NUM_EXAMPLES: result["num_examples"],
            keys.TRAIN_LOSS: result["train_loss"],
            keys.VAL_DICE: result["val_dice"],
            keys.VAL_EXAMPLES: result["val_examples"],
            keys.TRAIN_SECONDS: result["train_seconds"],
            keys.HANDLER_SECONDS: time.perf_counter() - start,
            keys.STARTUP_SECONDS: startup,
        }
    )
    weights = ArrayRecord({k: Array(v) for k, v in result["weights"].items()})
    content = RecordDict(
        {
            keys.ARRAYS: weights,
            keys.METRICS: metrics,
            keys.SITE: ConfigRecord({keys.SITE_NAME: name}),
        }
    )
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Dice of the received global model on the site's local validation split."""
    name, reply = _work(msg, context, "evaluate")
    if reply["status"] == "declined":
        return _decline(msg, name, reply["reason"])
    metrics = MetricRecord(
        {keys.NUM_EXAMPLES: reply["result"]["n"], keys.VAL_DICE: reply["result"]["dice"]}
    )
    content = RecordDict({keys.METRICS: metrics, keys.SITE: ConfigRecord({keys.SITE_NAME: name})})
    return Message(content=content, reply_to=msg)
