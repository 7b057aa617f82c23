"""A real Flower consortium on this machine: one SuperLink, one SuperNode per site.

Used by ``fedsynth demo``, the integration tests and the benchmarks. The processes are
the same ones a coordinator and the hospitals run (``flower-superlink``,
``flower-supernode``) on localhost ports, with runtime dependency installation disabled,
and each with its own ``FLWR_HOME``. By default without TLS (the local demo is the one
place where that is the default); with ``secure=True`` with TLS and SuperNode
authentication, started by the same entrypoint scripts as the containers. Runs are
submitted with Flower's own ``flwr run``.

Everything started is stopped on exit, Ctrl-C or failure: SuperNodes first (so they
unregister), then the SuperLink, each with all its descendants (SuperExec, ServerApp and
ClientApp processes).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from deploy.local.processes import (
    _alive,
    _uninterrupted,
    descendants,
    free_port,
    stop_tree,
    stop_trees,
)

logger = logging.getLogger(__name__)

CONNECTION = "fedsynth-local"
ENTRYPOINTS = Path(__file__).resolve().parents[1] / "entrypoints"


@dataclass(frozen=True)
class SiteNode:
    """One SuperNode to start: its name, node_config, and whether a site trainer runs too.

    With a secure consortium (TLS and node authentication), also: the site's private
    key (``None``: the consortium makes one and registers it), whether the coordinator
    registers its public key, the CA certificate the site trusts (``None``: the
    consortium's), and more environment for the entrypoint script.
    """

    name: str
    node_config: dict
    trainer: bool = False
    node_key: Path | None = None
    register: bool = True
    ca_cert: Path | None = None
    env: dict = field(default_factory=dict)


def app_dir() -> Path:
    """The Flower App folder (the project root holding pyproject.toml with [tool.flwr.app])."""
    root = Path(__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    if not pyproject.exists() or "[tool.flwr.app]" not in pyproject.read_text():
        raise FileNotFoundError(
            f"no Flower App at {root}: run FedSynth from a source checkout installed with "
            "`pip install -e .`"
        )
    return root


def toml_value(value) -> str:
    """A Python value as TOML: ``True`` -> ``true``, ``3`` -> ``3``, ``"x"`` -> ``"x"``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if '"' in text:
        # Flower splits --run-config with a pattern in which a double-quoted value holds
        # no '"' at all, escaped or not: such text goes as a TOML literal string instead.
        if "'" in text or "\n" in text:
            raise ValueError(
                f"cannot pass {text!r} to Flower: it holds both quote kinds or a line break"
            )
        return f"'{text}'"
    return json.dumps(text)  # a TOML basic string


def toml_pairs(config: dict) -> str:
    """``{"a": 1, "b": "x"}`` -> ``'a=1 b="x"'`` for --node-config / --run-config."""
    return " ".join(f"{key}={toml_value(value)}" for key, value in config.items())


def _bin(name: str) -> str:
    """A console script of the running interpreter's environment."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def _env(**extra: str) -> dict[str, str]:
    """This environment, with the interpreter's bin folder first on PATH.

    Flower's processes start further Flower executables by name (the SuperLink starts
    ``flower-superexec``, which starts ``flwr-serverapp``); they must come from the same
    environment even when it is not activated (``.venv/bin/fedsynth demo``).
    """
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, "PATH": path, **extra}


class LocalConsortium:
    """Start a SuperLink and SuperNodes on localhost; submit and follow runs.

    Args:
        workdir: folder for Flower homes, logs and the SuperLink database.
        sites: the SuperNodes to start.
        poll_interval: SuperExec task poll interval handed to the SuperNodes (seconds).
        database: keep the SuperLink's state in ``workdir/superlink.db`` (else in memory).
        simulation: start the SuperLink with Flower's Simulation Engine (virtual
            SuperNodes inside it; ``sites`` should then be empty).
        secure: TLS and SuperNode authentication, as in a real consortium: a CA and a
            SuperLink certificate for localhost are made in ``workdir/pki``, every site
            gets a node key registered with ``flwr supernode register``, and the
            SuperLink and SuperNodes are started by the container entrypoint scripts
            (``deploy/entrypoints/``).

    Example:
        with LocalConsortium(workdir, sites) as consortium:
            run_id = consortium.submit({"num-server-rounds": 2})
            status = consortium.wait(run_id, timeout=600)
    """

    def __init__(
        self,
        workdir: Path,
        sites: list[SiteNode],
        poll_interval: float = 0.1,
        database: bool = True,
        simulation: bool = False,
        secure: bool = False,
    ) -> None:
        self.workdir = Path(workdir)
        self.sites = sites
        self.poll_interval = poll_interval
        self.database = database
        self.simulation = simulation
        self.secure = secure
        self.pki = self.workdir / "pki"
        self.registered: set[str] = set()
        self.port = 0
        self.procs: dict[str, subprocess.Popen] = {}
        self.cli_home = self.workdir / "flwr-cli"

    # ------------------------------------------------------------------ processes
    def _spawn(self, name: str, args: list[str], home: Path, **extra: str) -> subprocess.Popen:
        home.mkdir(parents=True, exist_ok=True)
        logs = self.workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        env = _env(
            FLWR_HOME=str(home),
            FLWR_SUPEREXEC_TASK_POLL_INTERVAL=str(self.poll_interval),
            FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
            **extra,
        )
        log = open(logs / f"{name}.log", "ab")
        proc = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=self.workdir,
            start_new_session=True,
        )
        log.close()
        self.procs[name] = proc
        return proc

    def start(self) -> LocalConsortium:
        """Start the SuperLink, wait until it listens, then start every SuperNode."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        self.start_superlink()
        for site in self.sites:
            self.start_node(site)
        return self

    def start_superlink(self) -> subprocess.Popen:
        """Start (or restart, on the same port and database) the SuperLink."""
        home = self.workdir / "flwr-homes" / "superlink"
        if self.secure:
            from deploy.local.certs import make_certificates

            if not (self.pki / "certs" / "ca.crt").exists():
                make_certificates(self.pki / "certs", ["localhost", "127.0.0.1"])
            proc = self._spawn(
                "superlink",
                ["bash", str(ENTRYPOINTS / "superlink.sh")],
                home,
                FEDSYNTH_CERT_DIR=str(self.pki / "certs"),
                FEDSYNTH_DATABASE=str(self.workdir / "superlink.db"),
                FEDSYNTH_HOST="127.0.0.1",
                FEDSYNTH_PORT=str(self.port),
            )
        else:
            args = [
                _bin("flower-superlink"),
                "--insecure",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--disable-runtime-dependency-installation",
            ]
            if self.database:
                args += ["--database", str(self.workdir / "superlink.db")]
            if self.simulation:
                args.append("--simulation")
            proc = self._spawn("superlink", args, home)
        self._wait_for(lambda: self._listening(self.port), "superlink")
        self.cli_home.mkdir(parents=True, exist_ok=True)
        security = (
            f'root-certificates = "{self.pki / "certs" / "ca.crt"}"\n'
            if self.secure
            else "insecure = true\n"
        )
        (self.cli_home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
            f'address = "127.0.0.1:{self.port}"\n{security}'
        )
        return proc

    def node_key(self, site: SiteNode) -> Path:
        """The site's SuperNode private key (made under ``workdir/pki/nodes`` if not given)."""
        if site.node_key is not None:
            return Path(site.node_key)
        from deploy.local.certs import make_node_key

        key = self.pki / "nodes" / f"{site.name}.key"
        return key if key.exists() else make_node_key(key.with_suffix(""))

    def register_node(self, public_key: Path, name: str) -> None:
        """The coordinator's step: register a SuperNode's public key with the SuperLink."""
        res = self.flwr("supernode", "register", str(public_key), CONNECTION, "--name", name)
        if res.returncode != 0 or "registered" not in res.stdout:
            raise RuntimeError(f"could not register {name}'s key: {res.stdout}{res.stderr}")

    def start_node(self, site: SiteNode) -> subprocess.Popen:
        """Start (or restart) one site's SuperNode, after its trainer if it has one."""
        if site.trainer:
            state = Path(site.node_config["state-dir"])
            (state / "trainer.sock").unlink(missing_ok=True)
            self._spawn(
                f"{site.name}-trainer",
                [
                    sys.executable,
                    "-m",
                    "deploy.cli.main",
                    "site",
                    "serve",
                    "--state-dir",
                    str(state),
                ],
                self.workdir / "flwr-homes" / site.name,
            )
            self._wait_for(lambda: (state / "trainer.sock").exists(), f"{site.name}-trainer")
        home = self.workdir / "flwr-homes" / site.name
        if self.secure:
            key = self.node_key(site)
            if site.register and site.name not in self.registered:
                self.register_node(key.with_suffix(".pub"), site.name)
                self.registered.add(site.name)
            cfg = dict(site.node_config)
            env = {
                "FEDSYNTH_SUPERLINK": f"127.0.0.1:{self.port}",
                "FEDSYNTH_SITE_NAME": str(cfg.pop("site-name", site.name)),
                "FEDSYNTH_DATA_DIR": str(cfg.pop("data-dir")),
                "FEDSYNTH_STATE_DIR": str(cfg.pop("state-dir")),
                "FEDSYNTH_CA_CERT": str(site.ca_cert or self.pki / "certs" / "ca.crt"),
                "FEDSYNTH_NODE_KEY": str(key),
                "FEDSYNTH_NODE_CONFIG": toml_pairs(cfg),
                "FEDSYNTH_CLIENTAPPIO_PORT": str(free_port()),
                "FEDSYNTH_TRAINER": "0",  # started above, so that its socket is awaited
                **{k: str(v) for k, v in site.env.items()},
            }
            return self._spawn(site.name, ["bash", str(ENTRYPOINTS / "supernode.sh")], home, **env)
        args = [
            _bin("flower-supernode"),
            "--insecure",
            "--superlink",
            f"127.0.0.1:{self.port}",
            "--port",
            str(free_port()),
            "--node-config",
            toml_pairs(site.node_config),
        ]
        return self._spawn(site.name, args, home)

    def stop_node(self, name: str) -> None:
        """Stop one SuperNode and everything it started."""
        self._stop([name], grace=10.0)

    def _stop(self, names: list[str], grace: float) -> None:
        procs = [p for p in (self.procs.pop(n, None) for n in names) if p is not None]
        if procs:
            stop_trees([p.pid for p in procs], grace)
            for proc in procs:
                proc.wait(timeout=5)

    def _wait_for(self, ready, name: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs[name].poll() is not None:
                raise RuntimeError(
                    f"{name} exited with code {self.procs[name].returncode}; "
                    f"see {self.workdir / 'logs' / (name + '.log')}"
                )
            if ready():
                return
            time.sleep(0.2)
        raise TimeoutError(
            f"{name} was not ready within {timeout:.0f} s; see "
            f"{self.workdir / 'logs' / (name + '.log')}"
        )

    @staticmethod
    def _listening(port: int) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    def stop(self) -> None:
        """Stop every process this consortium started: the SuperNodes and site trainers
        together first (so that the nodes leave the SuperLink), then the SuperLink.

        Each group has a few seconds to end before it is killed; Ctrl-C and SIGTERM wait
        until everything is stopped.
        """
        with _uninterrupted():
            self._stop([n for n in self.procs if n != "superlink"], grace=5.0)
            self._stop(["superlink"], grace=5.0)

    def pids(self) -> list[int]:
        """PIDs of every live process this consortium started, descendants included."""
        out = []
        for proc in self.procs.values():
            if _alive(proc.pid):
                out += [proc.pid] + descendants(proc.pid)
        return out

    def __enter__(self) -> LocalConsortium:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------------ runs
    def flwr(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
        """Run the ``flwr`` CLI against this consortium's SuperLink."""
        env = _env(FLWR_HOME=str(self.cli_home))
        return subprocess.run(
            [_bin("flwr"), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            cwd=self.workdir,
        )

    def submit(
        self, run_config: dict, app: Path | None = None, federation_config: dict | None = None
    ) -> int:
        """Submit a run with ``flwr run``; return its run ID.

        Args:
            run_config: run_config overrides.
            app: the Flower App folder (default: this project).
            federation_config: e.g. ``{"num-supernodes": 20}`` for the Simulation Engine.
        """
        args = ["run", str(app or app_dir()), CONNECTION, "--format", "json"]
        if run_config:
            args += ["--run-config", toml_pairs(run_config)]
        if federation_config:
            args += ["--federation-config", toml_pairs(federation_config)]
        res = self.flwr(*args)
        try:
            out = json.loads(res.stdout)
        except json.JSONDecodeError:
            out = {}
        if res.returncode != 0 or not out.get("success"):
            raise RuntimeError(
                f"flwr run failed ({res.returncode}): {res.stdout[-2000:]}{res.stderr[-2000:]}"
            )
        return int(out["run-id"])

    def status(self, run_id: int) -> dict:
        """The run's entry from ``flwr ls --run-id`` (``status`` like ``finished:completed``)."""
        res = self.flwr("ls", CONNECTION, "--run-id", str(run_id), "--format", "json")
        try:
            return json.loads(res.stdout)["runs"][0]
        except (json.JSONDecodeError, KeyError, IndexError):
            return {"status": "unknown", "status-details": (res.stdout + res.stderr)[-500:]}

    def wait(
        self,
        run_id: int,
        timeout: float,
        on_tick=None,
        tick: float = 1.0,
        check_every: float = 10.0,
    ) -> dict:
        """Follow a run until it finishes; stream its ServerApp log to ``logs/run-ID.log``.

        Args:
            run_id: the run.
            timeout: give up (and stop the run) after this many seconds.
            on_tick: optional callable run every ``tick`` seconds (progress display).
            tick: seconds between ``on_tick`` calls.
            check_every: seconds between status checks while the log stream is open.

        Returns:
            The final status entry (see :meth:`status`).
        """
        log = open(self.workdir / "logs" / f"run-{run_id}.log", "ab")
        env = _env(FLWR_HOME=str(self.cli_home))
        stream = subprocess.Popen(
            [_bin("flwr"), "log", str(run_id), CONNECTION, "--stream"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.workdir,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        last_check = time.monotonic()
        try:
            while time.monotonic() < deadline:
                if on_tick:
                    on_tick()
                time.sleep(tick)
                if stream.poll() is not None or time.monotonic() - last_check > check_every:
                    last_check = time.monotonic()
                    state = self.status(run_id)
                    if str(state.get("status", "")).startswith("finished"):
                        return state
            self.flwr("stop", str(run_id), CONNECTION)
            raise TimeoutError(f"run {run_id} did not finish within {timeout:.0f} s; stopped it")
        finally:
            stop_tree(stream.pid, grace=2.0)
            if on_tick:
                on_tick()
