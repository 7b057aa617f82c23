"""The server's check of every site reply against its signed ledger entry.

A reply is used only if it carries a ledger entry that is signed by the key registered
for its site (or, with no registry configured, by a key that verifies), belongs to this
run and round, and whose SHA-256 matches the weights and metrics actually received.
Accepted entries are appended to the consortium ledger (``OUT/ledger/consortium.jsonl``).
A reply that fails is left out of aggregation and reported as failed, with the reason.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from flwr.app import ConfigRecord, Message, MetricRecord

from common import keys
from common.privacy import ledger, site_keys

logger = logging.getLogger(__name__)


class ReleaseVerifier:
    """Checks replies and keeps the consortium ledger.

    Args:
        out_dir: the run's output folder (the ledger goes to ``ledger/consortium.jsonl``).
        registry: folder of registered site keys (``""``: accept any valid signature,
            and say so in the log).
        run_id: the Flower run id entries must name.
    """

    def __init__(self, out_dir: str | Path, registry: str, run_id: int | str) -> None:
        self.path = Path(out_dir) / "ledger" / "consortium.jsonl"
        self.registry = site_keys.load_registry(registry) if registry else None
        self.run_id = str(run_id)
        if self.registry is None:
            logger.warning(
                "no site registry (run_config registry=''): releases are checked for a valid "
                "signature and content hash, but any site key is accepted"
            )

    def check(self, msg: Message, server_round: int, site_name: str) -> str | None:
        """Why ``msg`` must not be used, or ``None`` (then its entry is recorded)."""
        record = msg.content.config_records.get(keys.LEDGER)
        if record is None or keys.LEDGER_ENTRY not in record:
            return "no privacy-ledger entry with the release"
        try:
            entry = json.loads(str(record[keys.LEDGER_ENTRY]))
        except json.JSONDecodeError:
            return "unreadable privacy-ledger entry"
        bad = ledger.check_entry(entry, self.registry)
        if bad:
            return f"ledger entry rejected: {bad}"
        if entry["site"] != site_name or entry["run"] != self.run_id:
            return "ledger entry names another site or run"
        if entry["round"] != server_round:
            return f"ledger entry is for round {entry['round']}, not {server_round}"
        site = msg.content.config_records.get(keys.SITE, ConfigRecord())
        if keys.DECLINED in site:
            expected = ledger.release_digest(text=str(site[keys.DECLINED]))
        else:
            arrays = msg.content.array_records.get(keys.ARRAYS)
            metrics = msg.content.metric_records.get(keys.METRICS, MetricRecord())
            expected = ledger.release_digest(
                {k: arrays[k].numpy() for k in arrays.keys()} if arrays else None,
                {k: float(v) for k, v in metrics.items()},
            )
        if expected["sha256"] != entry["release"]["sha256"]:
            return "what arrived does not match the SHA-256 the site signed"
        ledger.consortium_append(self.path, entry)
        return None
