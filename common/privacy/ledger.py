"""The privacy ledger: an append-only, hash-chained, signed record of what left a site.

Before anything leaves a site (weights, metrics, synthetic samples, even a decline
reason) the site appends one entry to ``STATE/privacy/ledger.jsonl``: what was released
(kind, tensor count, bytes, SHA-256 of the exact content), the DP mechanism and its
parameters, ε spent in the round and in total, δ, and the budget. Each entry holds the
hash of the one before it and is signed with the site's Ed25519 key, so an edit, a
deletion, a reordering or a forgery shows (:func:`check_chain`). The signed entry travels
with the release; the server checks it against the bytes it received and the site's
registered key, and appends it to the consortium ledger (one JSON object per line,
``{"received": ..., "prev": ..., "hash": ..., "entry": {...}}``, itself hash-chained).

Entries are JSON; ε is ``null`` for a release no DP mechanism covers (ε = ∞).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.privacy import site_keys

LEDGER_FILE = Path("privacy") / "ledger.jsonl"
GENESIS = "0" * 64
KINDS = ("weights", "metrics", "synthetic", "decline")


def canonical(obj) -> bytes:
    """The bytes that are hashed: JSON with sorted keys and no spaces."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def entry_hash(entry: Mapping) -> str:
    """SHA-256 of an entry without its ``hash`` and ``signature`` fields."""
    body = {k: v for k, v in entry.items() if k not in ("hash", "signature")}
    return hashlib.sha256(canonical(body)).hexdigest()


def release_digest(
    arrays: Mapping[str, np.ndarray] | None = None,
    metrics: Mapping[str, float] | None = None,
    text: str | None = None,
) -> dict:
    """Size and SHA-256 of a release, computed the same way at the site and the server.

    Args:
        arrays: tensors by name (hashed in name order: name, dtype, shape, bytes).
        metrics: numbers by name.
        text: a message (a decline reason).

    Returns:
        ``{"tensors", "bytes", "metrics", "sha256"}``.
    """
    h = hashlib.sha256()
    n_bytes = 0
    for name in sorted(arrays or {}):
        a = np.ascontiguousarray(arrays[name])
        h.update(canonical([name, a.dtype.str, list(a.shape)]))
        h.update(a.tobytes())
        n_bytes += a.nbytes
    metric_items = {k: float(v) for k, v in sorted((metrics or {}).items())}
    h.update(canonical({k: repr(v) for k, v in metric_items.items()}))
    if text is not None:
        h.update(text.encode())
    return {
        "tensors": len(arrays or {}),
        "bytes": n_bytes,
        "metrics": sorted(metric_items),
        "sha256": h.hexdigest(),
    }


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def read_lines(path: str | Path) -> list[dict]:
    """Every JSON line of a ledger file (an unreadable line becomes ``{"_bad": text}``)."""
    out = []
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            out.append({"_bad": line[:80]})
    return out


def append(
    state_dir: str | Path,
    *,
    site: str,
    run: str,
    server_round: int,
    kind: str,
    release: dict,
    dp: dict | None = None,
) -> dict:
    """Append a signed entry to the site's ledger and return it (to send with the release).

    Args:
        state_dir: the site's state folder (holds the key and the ledger).
        site: the site's name.
        run: the Flower run id.
        server_round: the round the release belongs to.
        kind: one of :data:`KINDS`.
        release: :func:`release_digest` of what is released.
        dp: mechanism, parameters and ε of the round, or ``None`` (no DP: ε = ∞).
    """
    if kind not in KINDS:
        raise ValueError(f"ledger kind must be one of {KINDS}, got {kind!r}")
    key, public = site_keys.load_or_create(state_dir)
    path = Path(state_dir) / LEDGER_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # one writer at a time, even across processes
        fh.seek(0)
        lines = [json.loads(x) for x in fh.read().splitlines() if x.strip()]
        last = lines[-1] if lines else None
        entry = {
            "seq": last["seq"] + 1 if last else 0,
            "prev": last["hash"] if last else GENESIS,
            "site": site,
            "run": run,
            "round": int(server_round),
            "time": _now(),
            "kind": kind,
            "release": release,
            "dp": dp,
            "key": public,
        }
        entry["hash"] = entry_hash(entry)
        entry["signature"] = site_keys.sign(key, bytes.fromhex(entry["hash"]))
        fh.write(json.dumps(entry, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return entry


@dataclass(frozen=True)
class Problem:
    """A finding about one ledger line: ``where`` names the file, line and entry."""

    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


def check_entry(entry: Mapping, registry: Mapping[str, str] | None = None) -> str | None:
    """Why ``entry`` cannot be trusted on its own, or ``None``.

    Checks its hash against its content, its signature against its key, and, with a
    registry, that the key is the one registered for its site.
    """
    if "_bad" in entry:
        return "not a JSON object (the line was altered)"
    missing = {"seq", "prev", "site", "hash", "signature", "key"} - set(entry)
    if missing:
        return f"missing fields {sorted(missing)}"
    if entry_hash(entry) != entry["hash"]:
        return "its hash does not match its content (edited after signing)"
    if not site_keys.verify(entry["key"], bytes.fromhex(entry["hash"]), entry["signature"]):
        return "its signature is not valid for its key (forged)"
    if registry is not None and registry.get(entry["site"]) != entry["key"]:
        if entry["site"] not in registry:
            return f"signed by an unregistered key (site {entry['site']!r} is not registered)"
        return f"signed by a key that is not the one registered for {entry['site']!r} (forged)"
    return None


def check_chain(
    entries: list[dict], name: str, registry: Mapping[str, str] | None = None
) -> list[Problem]:
    """Problems in a site ledger, first one first (an empty list: the chain holds).

    Args:
        entries: the ledger's lines, in file order.
        name: how to name the file in messages.
        registry: ``{site: public key}``, or ``None`` to skip the registration check.
    """
    problems: list[Problem] = []
    prev_hash, prev_seq, first = GENESIS, -1, None
    for line, entry in enumerate(entries, 1):
        where = f"{name} line {line}" + (f" (seq {entry['seq']})" if "seq" in entry else "")
        bad = check_entry(entry, registry)
        if bad:
            problems.append(Problem(where, bad))
            prev_hash, prev_seq = entry.get("hash", ""), entry.get("seq", prev_seq + 1)
            continue
        first = first or entry
        if entry["site"] != first["site"] or entry["key"] != first["key"]:
            problems.append(
                Problem(where, "signed by a different site or key than the ledger's first entry")
            )
        if entry["seq"] != prev_seq + 1:
            problems.append(
                Problem(
                    where,
                    f"sequence jumps from {prev_seq} to {entry['seq']} "
                    "(an entry was deleted, inserted or moved)",
                )
            )
        elif entry["prev"] != prev_hash:
            problems.append(
                Problem(where, "does not chain to the entry before it (deleted or reordered)")
            )
        prev_hash, prev_seq = entry["hash"], entry["seq"]
    return problems


def consortium_append(path: str | Path, entry: dict) -> dict:
    """Append a site's verified entry to the server's consortium ledger (hash-chained)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        lines = [json.loads(x) for x in fh.read().splitlines() if x.strip()]
        record = {
            "received": _now(),
            "prev": lines[-1]["hash"] if lines else GENESIS,
            "entry": entry,
        }
        record["hash"] = hashlib.sha256(canonical(record)).hexdigest()
        fh.write(json.dumps(record, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return record


def check_consortium(
    records: list[dict], name: str, registry: Mapping[str, str] | None = None
) -> list[Problem]:
    """Problems in a consortium ledger: its own chain and every site entry in it."""
    problems: list[Problem] = []
    prev = GENESIS
    for line, record in enumerate(records, 1):
        where = f"{name} line {line}"
        if "_bad" in record or "entry" not in record or "hash" not in record:
            problems.append(Problem(where, "not a consortium record (the line was altered)"))
            continue
        body = {k: v for k, v in record.items() if k != "hash"}
        if hashlib.sha256(canonical(body)).hexdigest() != record["hash"]:
            problems.append(Problem(where, "its hash does not match its content (edited)"))
        elif record["prev"] != prev:
            problems.append(
                Problem(where, "does not chain to the record before it (deleted or reordered)")
            )
        bad = check_entry(record["entry"], registry)
        if bad:
            entry = record["entry"]
            problems.append(Problem(f"{where} ({entry.get('site')} seq {entry.get('seq')})", bad))
        prev = record["hash"]
    return problems
