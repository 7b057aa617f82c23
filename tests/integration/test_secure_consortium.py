"""A consortium as deployed, with TLS and SuperNode authentication: dropouts, restarts.

(Refusing unregistered keys and foreign CAs is tested with the compose consortium,
``test_compose_natively.py``.)

The SuperLink and SuperNodes are started by the container entrypoint scripts
(``deploy/entrypoints/``), natively, since no container engine runs here.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from deploy.local.consortium import LocalConsortium, SiteNode
from deploy.local.processes import _alive, descendants

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RUN = {"local-epochs": 1, "image-size": 32, "min-sites": 2}


def _site(data, tmp_path, i, **kw):
    cfg = {
        "site-name": f"site-{i}",
        "data-dir": str(data / f"site-{i}"),
        "state-dir": str(tmp_path / f"state-{i}"),
    }
    return SiteNode(f"site-{i}", cfg, env={"FEDSYNTH_IMAGE_SIZE": 32}, **kw)


def _rounds(out):
    path = out / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _online(consortium) -> int:
    res = consortium.flwr("supernode", "list", "fedsynth-local", "--format", "json")
    nodes = json.loads(res.stdout).get("nodes", [])
    return sum(n.get("status") == "online" for n in nodes)


def _wait_until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _kill(proc) -> None:
    """SIGKILL a SuperNode and everything it started, as a crash or a pulled cable would."""
    for pid in [proc.pid, *descendants(proc.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _activations(log) -> int:
    return log.read_text().count("SuperNode ID:") if log.exists() else 0


def test_dropout_rejoin_and_superlink_restart(tiny_consortium, tmp_path):
    """A SuperNode killed mid-round: the round ends at its timeout with the others; the
    restarted node rejoins (Flower lets a crashed node's ID back in once its last
    heartbeat has expired, up to about a minute); the SuperLink restarted on its database
    keeps the run history, and the SuperNodes reconnect by themselves."""
    data, _ = tiny_consortium
    # Long enough for a healthy site's round on a loaded 2-core machine (three ClientApp
    # processes start at once), short enough that waiting for the dead site is visible.
    timeout = 60.0
    sites = [_site(data, tmp_path, i) for i in (1, 2, 3)]
    out = tmp_path / "run"
    config = {**RUN, "num-server-rounds": 1, "round-timeout": timeout, "out-dir": str(out)}
    site3_log = tmp_path / "flwr" / "logs" / "site-3.log"
    with LocalConsortium(tmp_path / "flwr", sites, secure=True) as consortium:
        run_id = consortium.submit(config)
        site3 = consortium.procs["site-3"]

        def training_now():  # a ClientApp of site-3 is running: it is mid-round
            return any(
                "flwr-clientapp" in open(f"/proc/{p}/cmdline").read()
                for p in descendants(site3.pid)
                if _alive(p)
            )

        _wait_until(training_now, 300, "site-3 to start training in round 1")
        _kill(site3)
        killed_at = time.monotonic()
        _wait_until(lambda: len(_rounds(out)) >= 2, 120, "round 1 to end without site-3")
        waited = time.monotonic() - killed_at
        consortium.procs.pop("site-3")
        consortium.start_node(sites[2])  # the hospital restarts its SuperNode
        status = consortium.wait(run_id, timeout=600)
        assert status["status"] == "finished:completed", status

        # The SuperLink restarts on its database: the run history is still there.
        consortium.stop_node("superlink")
        consortium.start_superlink()
        res = consortium.flwr("ls", "fedsynth-local", "--format", "json")
        runs = {int(r["run-id"]): r for r in json.loads(res.stdout)["runs"]}
        assert runs[run_id]["status"] == "finished:completed"
        # The restarted site-3 activates again once its old session has expired, and every
        # SuperNode finds the restarted SuperLink: all three are online again.
        _wait_until(lambda: _activations(site3_log) >= 2, 240, "site-3 to rejoin")
        _wait_until(lambda: _online(consortium) == 3, 120, "all three SuperNodes online")

    first = _rounds(out)[1]["sites"]
    assert sorted(t["site"] for t in first["trained"]) == ["site-1", "site-2"]
    # site-3 is reported either as missing at the timeout, or earlier as failed when Flower
    # notices its heartbeat stopped ("Node Unavailable"): never waited for beyond the timeout.
    unavailable = [f for f in first["failed"] if "Node Unavailable" in f.get("error", "")]
    assert first["missing"] + len(unavailable) == 1, first
    assert first["seconds"] <= timeout + 5  # the round did not hang past its timeout
    assert waited <= timeout + 30
