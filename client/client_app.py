"""FedSynth ClientApp: one hospital's side of a round. Thin handlers over client.task.

Flower starts a fresh process for every message, so this module imports only Flower
and light project modules; torch and MONAI are imported by the task when it runs.
A site that cannot train replies with a ``declined`` reason instead of failing, so
the coordinator can report it and carry on with the other sites.
"""

from __future__ import annotations

import time

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from common import keys
from common.config import RunSettings, SiteSettings
from common.errors import ConfigError

app = ClientApp()


def _settings(context: Context) -> tuple[SiteSettings, RunSettings]:
    return SiteSettings.from_config(context.node_config), RunSettings.from_config(context.run_config)


def _decline(msg: Message, site_name: str, reason: str) -> Message:
    site = ConfigRecord({keys.SITE_NAME: site_name, keys.DECLINED: reason})
    return Message(RecordDict({keys.SITE: site}), reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the received global model on local data; reply with weights and metrics."""
    start = time.perf_counter()
    from client.task import Declined, train_round

    try:
        site, run = _settings(context)
    except ConfigError as exc:
        return _decline(msg, str(context.node_config.get("site-name", "site")), str(exc))
    config = msg.content[keys.CONFIG]
    try:
        state = msg.content[keys.ARRAYS].to_torch_state_dict()
        result = train_round(site, run, state, int(config[keys.SERVER_ROUND]),
                             float(config.get(keys.PROXIMAL_MU, 0.0)))
    except Declined as exc:
        return _decline(msg, site.site_name, str(exc))
    metrics = MetricRecord({
        keys.NUM_EXAMPLES: result.num_examples,
        keys.TRAIN_LOSS: result.train_loss,
        keys.VAL_DICE: result.val_dice,
        keys.VAL_EXAMPLES: result.val_examples,
        keys.TRAIN_SECONDS: result.train_seconds,
        keys.HANDLER_SECONDS: time.perf_counter() - start,
    })
    content = RecordDict({
        keys.ARRAYS: ArrayRecord(result.state_dict),
        keys.METRICS: metrics,
        keys.SITE: ConfigRecord({keys.SITE_NAME: site.site_name}),
    })
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Dice of the received global model on the site's local validation split."""
    from client.task import Declined, evaluate_round

    try:
        site, run = _settings(context)
        dice, n = evaluate_round(site, run, msg.content[keys.ARRAYS].to_torch_state_dict())
    except (ConfigError, Declined) as exc:
        return _decline(msg, str(context.node_config.get("site-name", "site")), str(exc))
    metrics = MetricRecord({keys.NUM_EXAMPLES: n, keys.VAL_DICE: dice})
    content = RecordDict({keys.METRICS: metrics,
                          keys.SITE: ConfigRecord({keys.SITE_NAME: site.site_name})})
    return Message(content=content, reply_to=msg)
