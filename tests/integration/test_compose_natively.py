"""The docker-compose consortium, played natively: no container engine runs here.

Each service of ``deploy/docker/compose.yaml`` is started in ``depends_on`` order with
the command its image runs (the service's ``entrypoint``, else the Dockerfile target's
``ENTRYPOINT``) and the environment compose gives it. Named volumes become folders, so
paths in the environment are mapped from the container's mount points to those
folders, ``/app`` to the repository, and ``superlink:9092`` to a free local port. Only
sizes change (fewer cases, smaller images, one round) so that it runs in a minute.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from deploy.local.certs import make_certificates, make_node_key
from deploy.local.processes import free_port, stop_tree

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "deploy" / "docker"
COMPOSE = yaml.safe_load((DOCKER / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]


def _entrypoint(service: dict) -> list[str]:
    """The service's command: its own entrypoint, else its Dockerfile target's."""
    if "entrypoint" in service:
        return list(service["entrypoint"])
    target = service["build"]["target"]
    text = (DOCKER / "Dockerfile").read_text()
    stage = text.split(f" AS {target}\n", 1)[1].split("\nFROM ", 1)[0]
    return json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", stage, re.M).group(1))


class ComposeHere:
    """Start compose services as local processes, volumes as folders under ``root``."""

    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.procs: dict[str, subprocess.Popen] = {}

    def mounts(self, service: dict) -> dict[str, Path]:
        out = {"/app": ROOT}
        for spec in service.get("volumes", []):
            volume, target = spec.split(":")[:2]
            out[target] = self.root / "volumes" / volume
            out[target].mkdir(parents=True, exist_ok=True)
        return out

    def environment(self, name: str, extra: dict) -> dict[str, str]:
        service = SERVICES[name]
        mounts = self.mounts(service)
        if "FEDSYNTH_RUN_CONFIG" in service.get("environment", {}):
            # run_config paths (eval-dir, out-dir) are paths where the ServerApp runs.
            mounts = {**self.mounts(SERVICES["superlink"]), **mounts}
        env = {}
        for key, value in {**service.get("environment", {}), **extra}.items():
            value = str(value).replace("superlink:9092", f"127.0.0.1:{self.port}")
            for target, folder in sorted(mounts.items(), key=lambda m: -len(m[0])):
                value = re.sub(rf"(?<![\w/]){re.escape(target)}(?=/|\"|$|\s)", str(folder), value)
            env[key] = value
            # a container path left unmapped would silently touch this machine's root
            unmapped = value.startswith("/") and not value.startswith((str(self.root), str(ROOT)))
            assert not unmapped, f"{name}: {key}={value} is not under a mounted volume"
        home = self.root / "homes" / name
        home.mkdir(parents=True, exist_ok=True)
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
        return {**os.environ, "PATH": path, "FLWR_HOME": str(home), **env}

    def command(self, name: str) -> list[str]:
        mounts = self.mounts(SERVICES[name])
        return [
            str(mounts["/app"]) + arg[len("/app") :] if arg.startswith("/app/") else arg
            for arg in _entrypoint(SERVICES[name])
        ]

    def run(self, name: str, timeout: float, **extra) -> subprocess.CompletedProcess:
        """A one-shot service; it must succeed."""
        res = subprocess.run(
            self.command(name),
            env=self.environment(name, extra),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert res.returncode == 0, f"{name} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
        return res

    def start(self, name: str, **extra) -> subprocess.Popen:
        """A long-running service, its log in ``root/logs``."""
        return self.start_as(name, name, **extra)

    def start_as(self, name: str, service: str, **extra) -> subprocess.Popen:
        """Another instance of ``service`` (its command and environment) named ``name``."""
        (self.root / "logs").mkdir(exist_ok=True)
        log = open(self.root / "logs" / f"{name}.log", "ab")
        env = self.environment(service, extra)
        env["FLWR_HOME"] = str(self.root / "homes" / name)
        proc = subprocess.Popen(
            self.command(service),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        path = self.root / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            stop_tree(proc.pid)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _running_with(text: str) -> list[int]:
    """PIDs of live processes whose command line contains ``text``."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text in cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                pids.append(int(cmdline.parent.name))
        except OSError:
            continue
    return pids


def test_compose_consortium_runs_here(tmp_path):
    """init → superlink → register → three hospitals → coordinator: one TLS round."""
    compose = ComposeHere(tmp_path)
    small = {"FEDSYNTH_IMAGE_SIZE": "32"}
    try:
        compose.run("init", timeout=300, FEDSYNTH_SAMPLE_CASES="5")
        pki = tmp_path / "volumes" / "pki"
        assert {p.name for p in (pki / "keys").iterdir()} >= {"site-1.key", "site-1.pub"}
        assert (pki / "keys" / "site-1.key").stat().st_mode & 0o077 == 0

        compose.start("superlink", FEDSYNTH_HOST="127.0.0.1", FEDSYNTH_PORT=str(compose.port))
        deadline = time.monotonic() + 60
        while not _listening(compose.port):
            assert time.monotonic() < deadline, compose.log("superlink")[-2000:]
            time.sleep(0.5)
        first = compose.run("register", timeout=120).stdout
        again = compose.run("register", timeout=120).stdout  # compose up twice: idempotent
        assert first.count("registered") >= 3 and "already registered" in again

        for site in ("site-1", "site-2", "site-3"):
            compose.start(site, FEDSYNTH_CLIENTAPPIO_PORT=str(free_port()), **small)
        # Two strangers run the same client entrypoint: a key nobody registered, and a
        # registered key with a CA other than the consortium's. Neither may join.
        rogue = make_node_key(tmp_path / "rogue" / "node")
        make_certificates(tmp_path / "other-ca", ["localhost", "127.0.0.1"])
        give_up = {**small, "FEDSYNTH_MAX_RETRIES": "1", "FEDSYNTH_REJOIN_DELAY": "1"}
        strangers = {
            "rogue": {"FEDSYNTH_NODE_KEY": str(rogue)},
            "other-ca": {"FEDSYNTH_CA_CERT": str(tmp_path / "other-ca" / "ca.crt")},
        }
        for name, env in strangers.items():
            env["FEDSYNTH_STATE_DIR"] = str(tmp_path / "stranger-state" / name)
        for name, env in strangers.items():
            compose.start_as(
                name,
                "site-3",
                FEDSYNTH_CLIENTAPPIO_PORT=str(free_port()),
                FEDSYNTH_SITE_NAME=name,
                **give_up,
                **env,
            )

        run_config = SERVICES["coordinator"]["environment"]["FEDSYNTH_RUN_CONFIG"]
        run_config = re.sub(r"num-server-rounds=\d+", "num-server-rounds=1", run_config)
        run_config += " local-epochs=1 image-size=32 min-sites=3 round-timeout=300"
        res = compose.run("coordinator", timeout=600, FEDSYNTH_RUN_CONFIG=run_config)
        for name in strangers:
            deadline = time.monotonic() + 120
            while compose.procs[name].poll() is None:  # they give up after their retries
                assert time.monotonic() < deadline, f"{name} still running"
                time.sleep(1)
            # and take their warm trainers with them
            assert _running_with(f"stranger-state/{name}") == [], f"{name}'s trainer left behind"
    finally:
        compose.stop()
    assert "Failed to activate SuperNode" in compose.log("rogue")
    assert "CERTIFICATE_VERIFY_FAILED" in compose.log("other-ca")
    assert compose.procs["rogue"].returncode != 0 and compose.procs["other-ca"].returncode != 0
    out_dir = shlex.split(run_config.split("out-dir=", 1)[1])[0]
    out = tmp_path / "volumes" / "runs" / Path(out_dir).relative_to("/srv/runs")
    rounds = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    trained = [r for r in rounds if r["round"] == 1][0]["sites"]["trained"]
    assert sorted(t["site"] for t in trained) == ["site-1", "site-2", "site-3"], res.stdout[-3000:]
    assert "overall" in rounds[-1]["heldout"]  # evaluated on the held-out set at the server
    for name in ("superlink", "site-1", "site-2", "site-3"):  # TLS and node auth on: no warning
        assert "FEDSYNTH_INSECURE" not in compose.log(name)
        assert "FEDSYNTH_NODE_AUTH" not in compose.log(name)
