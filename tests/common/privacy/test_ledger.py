"""The privacy ledger: every kind of tampering is caught, and the first bad entry named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from common.privacy import audit, ledger, site_keys

WEIGHTS = {"conv.weight": np.arange(12, dtype=np.float32).reshape(3, 4)}


def _dp(total: float) -> dict:
    return {
        "mechanism": "dp-sgd",
        "noise_multiplier": 1.0,
        "sample_rate": 0.25,
        "steps": 4,
        "max_grad_norm": 1.0,
        "accountant": "rdp",
        "delta": 1e-5,
        "epsilon_round": 0.5,
        "epsilon_total": total,
        "budget": None,
    }


@pytest.fixture
def books(tmp_path):
    """A site ledger of four releases, the consortium ledger that received them, a registry."""
    state = tmp_path / "site-a"
    consortium = tmp_path / "run" / "ledger" / "consortium.jsonl"
    for r in range(1, 5):
        entry = ledger.append(
            state,
            site="site-a",
            run="7",
            server_round=r,
            kind="weights",
            release=ledger.release_digest(WEIGHTS, {"num-examples": 10}),
            dp=_dp(0.5 * r),
        )
        ledger.consortium_append(consortium, entry)
    registry = {"site-a": (state / site_keys.PUB_FILE).read_text().strip()}
    return state / ledger.LEDGER_FILE, consortium, registry


def _rewrite(path: Path, lines: list[dict]) -> None:
    path.write_text("".join(json.dumps(x, sort_keys=True) + "\n" for x in lines))


def _first(paths, registry) -> str:
    problems, _ = audit.verify(paths, registry)
    assert problems, "tampering went unnoticed"
    return str(problems[0])


def test_untouched_ledgers_verify(books):
    site, consortium, registry = books
    assert audit.verify([site, consortium], registry) == ([], [])


def test_edited_entry_is_named(books):
    site, consortium, registry = books
    lines = ledger.read_lines(site)
    lines[1]["dp"]["epsilon_total"] = 0.01  # understate the spend
    _rewrite(site, lines)
    assert _first([site], registry).startswith(f"{site} line 2 (seq 1): its hash does not match")


def test_edited_and_rehashed_entry_fails_its_signature(books):
    site, _, registry = books
    lines = ledger.read_lines(site)
    lines[2]["round"] = 99
    lines[2]["hash"] = ledger.entry_hash(lines[2])
    _rewrite(site, lines)
    assert "line 3 (seq 2): its signature is not valid" in _first([site], registry)


def test_deleted_entry_breaks_the_sequence(books):
    site, _, registry = books
    lines = ledger.read_lines(site)
    _rewrite(site, lines[:1] + lines[2:])
    assert "line 2 (seq 2): sequence jumps from 0 to 2" in _first([site], registry)


def test_deleted_last_entry_shows_against_the_consortium_ledger(books):
    site, consortium, registry = books
    _rewrite(site, ledger.read_lines(site)[:-1])
    assert audit.verify([site], registry) == ([], [])  # alone, a shorter chain is a chain
    assert "not in" in _first([site, consortium], registry)


def test_reordered_entries_are_caught(books):
    site, _, registry = books
    lines = ledger.read_lines(site)
    lines[1], lines[2] = lines[2], lines[1]
    _rewrite(site, lines)
    assert "line 2 (seq 2): sequence jumps" in _first([site], registry)


def test_forged_entry_signed_by_another_key(books, tmp_path):
    site, _, registry = books
    forger = tmp_path / "forger"
    forged = ledger.append(
        forger, site="site-a", run="7", server_round=5, kind="weights",
        release=ledger.release_digest(WEIGHTS), dp=_dp(0.1),
    )  # fmt: skip
    lines = ledger.read_lines(site)
    forged.update(seq=4, prev=lines[-1]["hash"])  # splice it onto the real chain...
    forged["hash"] = ledger.entry_hash(forged)
    key, _ = site_keys.load_or_create(forger)
    forged["signature"] = site_keys.sign(key, bytes.fromhex(forged["hash"]))  # ...and re-sign
    _rewrite(site, [*lines, forged])
    assert "line 5 (seq 4): signed by a key that is not the one registered" in _first(
        [site], registry
    )
    assert "different site or key" in _first([site], None)  # even without the registry


def test_unregistered_site_is_refused(books):
    site, _, _ = books
    assert "unregistered key" in _first([site], {"site-b": "00" * 32})


def test_consortium_ledger_edits_and_deletions_are_caught(books):
    site, consortium, registry = books
    records = ledger.read_lines(consortium)
    _rewrite(consortium, records[:1] + records[2:])
    assert "line 2: does not chain" in _first([consortium], registry)
    records[0]["received"] = "2000-01-01T00:00:00+00:00"
    _rewrite(consortium, records)
    assert "line 1: its hash does not match" in _first([consortium], registry)


def test_released_content_is_bound_to_the_entry():
    a = ledger.release_digest(WEIGHTS, {"num-examples": 10})
    changed = {"conv.weight": WEIGHTS["conv.weight"] + 1e-6}
    assert ledger.release_digest(changed, {"num-examples": 10})["sha256"] != a["sha256"]
    assert ledger.release_digest(WEIGHTS, {"num-examples": 11})["sha256"] != a["sha256"]
    assert a["tensors"] == 1 and a["bytes"] == 48


def test_site_key_is_private_and_reused(tmp_path):
    _, public = site_keys.load_or_create(tmp_path)
    assert (tmp_path / site_keys.KEY_FILE).stat().st_mode & 0o777 == 0o600
    assert site_keys.load_or_create(tmp_path)[1] == public


def test_registry_refuses_a_silent_rekey(tmp_path):
    site_keys.register(tmp_path, "site-a", "ab" * 32)
    site_keys.register(tmp_path, "site-a", "ab" * 32)  # the same key again is fine
    with pytest.raises(ValueError, match="already registered with another key"):
        site_keys.register(tmp_path, "site-a", "cd" * 32)
