"""FedSynth ClientApp: one hospital's side of a round. Thin handlers over client.task.

Flower starts a fresh process for every message, so this module imports only Flower and
light project modules. The work goes to the site's warm trainer when one runs
(:mod:`client.trainer`), else it runs here; torch and MONAI are imported only then.
A site that cannot train replies with a ``declined`` reason instead of failing, so the
coordinator can report it and carry on with the other sites.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, replace

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from client import trainer
from common import keys
from common.config import RunSettings, SiteSettings
from common.errors import ConfigError
from common.privacy import ledger

app = ClientApp()


def _process_age() -> float:
    """Seconds since this process started (0 where /proc is unavailable)."""
    try:
        ticks = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])
        uptime = float(open("/proc/uptime").read().split()[0])
        return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def _record(context: Context, msg: Message, site: tuple, kind: str, release: dict, dp=None):
    """Append the release to the site's privacy ledger; the signed entry, as a record.

    Nothing leaves the site without this entry. Without a usable state dir (a broken
    node_config) there is no ledger to write, and only the configuration error leaves.
    """
    site_name, state_dir = site
    entry = ledger.append(
        state_dir,
        site=site_name,
        run=str(context.run_id),
        server_round=int(msg.content[keys.CONFIG].get(keys.SERVER_ROUND, 0))
        if keys.CONFIG in msg.content
        else 0,
        kind=kind,
        release=release,
        dp=dp,
    )
    return ConfigRecord({keys.LEDGER_ENTRY: json.dumps(entry, sort_keys=True)})


def _decline(msg: Message, context: Context, site: tuple, reason: str) -> Message:
    content = RecordDict(
        {keys.SITE: ConfigRecord({keys.SITE_NAME: site[0], keys.DECLINED: reason})}
    )
    if site[1]:  # a state dir, hence a ledger
        content[keys.LEDGER] = _record(
            context, msg, site, "decline", ledger.release_digest(text=reason)
        )
    return Message(content, reply_to=msg)


def _work(msg: Message, context: Context, op: str, **extra) -> tuple[tuple, dict]:
    """Run ``op`` on the site's trainer, or in this process.

    Returns:
        ``((site name, state dir or ""), reply)``.
    """
    try:
        run = RunSettings.from_config(context.run_config)
        config = msg.content.config_records.get(keys.CONFIG, ConfigRecord())
        if keys.CHANNELS in config:  # the server resolved channels=auto for everyone
            run = replace(run, channels=str(config[keys.CHANNELS]))
        site = SiteSettings.from_config(context.node_config, run)
    except ConfigError as exc:
        name = str(context.node_config.get("site-name", "site"))
        return (name, ""), {"status": "declined", "reason": str(exc)}
    arrays = msg.content.array_records.get(keys.ARRAYS, ArrayRecord())
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
    return (site.site_name, site.state_dir), reply


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the received global model on local data; reply with weights and metrics."""
    startup, start = _process_age(), time.perf_counter()
    config = msg.content[keys.CONFIG]
    received = _received(msg)
    site, reply = _work(
        msg,
        context,
        "train",
        round=int(config[keys.SERVER_ROUND]),
        proximal_mu=float(config.get(keys.PROXIMAL_MU, 0.0)),
        received=received,
    )
    if reply["status"] == "declined":
        return _decline(msg, context, site, reply["reason"])
    result = reply["result"]
    values = {
        keys.NUM_EXAMPLES: result["num_examples"],
        keys.TRAIN_LOSS: result["train_loss"],
        keys.VAL_DICE: result["val_dice"],
        keys.VAL_EXAMPLES: result["val_examples"],
        keys.TRAIN_SECONDS: result["train_seconds"],
        keys.HANDLER_SECONDS: time.perf_counter() - start,
        keys.STARTUP_SECONDS: startup,
    }
    values = {k: v for k, v in values.items() if not math.isnan(v)}  # not disclosed (DP)
    release = ledger.release_digest(result["weights"], values)
    if received is not None:  # what these weights also learnt from (share=exchange)
        release["received"] = received_summary(received)
    entry = _record(context, msg, site, "weights", release, dp=result.get("dp"))
    content = RecordDict(
        {
            keys.ARRAYS: ArrayRecord({k: Array(v) for k, v in result["weights"].items()}),
            keys.METRICS: MetricRecord(values),
            keys.SITE: ConfigRecord({keys.SITE_NAME: site[0]}),
            keys.LEDGER: entry,
        }
    )
    return Message(content=content, reply_to=msg)


def _received(msg: Message) -> dict | None:
    """The other sites' synthetic pairs a ``share=exchange`` training message carries."""
    if keys.RECEIVED not in msg.content.array_records:
        return None
    arrays = msg.content.array_records[keys.RECEIVED]
    origin = msg.content.config_records.get(keys.RECEIVED_FROM, ConfigRecord())
    return {
        "images": arrays[keys.SYNTH_IMAGES].numpy(),
        "masks": arrays[keys.SYNTH_MASKS].numpy(),
        "sites": [str(s) for s in origin.get(keys.RECEIVED_SITES, [])],
        "counts": [int(c) for c in origin.get(keys.RECEIVED_COUNTS, [])],
    }


def received_summary(received: dict) -> dict:
    """The ledger's account of received pairs: how many, from whom, and their digest."""
    digest = ledger.release_digest(
        {keys.SYNTH_IMAGES: received["images"], keys.SYNTH_MASKS: received["masks"]}
    )
    return {
        "pairs": int(len(received["images"])),
        "from": dict(zip(received["sites"], received["counts"])),
        "sha256": digest["sha256"],
    }


@app.train(keys.SYNTHESIZE)
def synthesize(msg: Message, context: Context) -> Message:
    """Release synthetic image+mask pairs that passed the site's mask check and memorisation
    gate."""
    start = time.perf_counter()
    config = msg.content[keys.CONFIG]
    site, reply = _work(msg, context, "synthesize", round=int(config[keys.SERVER_ROUND]))
    if reply["status"] == "declined":
        return _decline(msg, context, site, reply["reason"])
    result = reply["result"]
    arrays = {keys.SYNTH_IMAGES: result["images"], keys.SYNTH_MASKS: result["masks"]}
    gate = result["gate"]
    values = {
        keys.SYNTH_GENERATED: gate["generated"],
        keys.SYNTH_DROPPED: gate["dropped"],
        keys.SYNTH_IMPLAUSIBLE: gate.get("implausible", 0),
        keys.SYNTH_RELEASED: gate["released"],
        keys.TRAIN_SECONDS: result["train_seconds"],
        keys.SAMPLE_SECONDS: result["sample_seconds"],
        keys.HANDLER_SECONDS: time.perf_counter() - start,
        **{f"{keys.SYNTH_QUALITY}{k}": v for k, v in (result.get("quality") or {}).items()},
    }
    release = {**ledger.release_digest(arrays, values), "gate": gate}
    entry = _record(context, msg, site, "synthetic", release, dp=result.get("dp"))
    content = RecordDict(
        {
            keys.ARRAYS: ArrayRecord({k: Array(v) for k, v in arrays.items()}),
            keys.METRICS: MetricRecord(values),
            keys.SITE: ConfigRecord({keys.SITE_NAME: site[0]}),
            keys.LEDGER: entry,
        }
    )
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Dice of the received global model on the site's local validation split."""
    site, reply = _work(msg, context, "evaluate")
    if reply["status"] == "declined":
        return _decline(msg, context, site, reply["reason"])
    values = {keys.NUM_EXAMPLES: reply["result"]["n"], keys.VAL_DICE: reply["result"]["dice"]}
    entry = _record(context, msg, site, "metrics", ledger.release_digest(metrics=values))
    content = RecordDict(
        {
            keys.METRICS: MetricRecord(values),
            keys.SITE: ConfigRecord({keys.SITE_NAME: site[0]}),
            keys.LEDGER: entry,
        }
    )
    return Message(content=content, reply_to=msg)
