"""FedSynth's images, really built and really run: a consortium in containers.

``deploy/docker/build.sh`` builds both images (on Flower's image where it can be pulled,
else on a Debian base made here); ``deploy/docker/consortium.sh`` starts the SuperLink
and three hospital containers with TLS and SuperNode authentication, a run goes through
while one hospital is restarted, and every ledger verifies; ``deploy/k8s/play.sh`` brings
the coordinator up from ``deploy/k8s/`` with ``podman kube play``.

Needs a container engine that runs here (``.ci/run`` installs podman on Debian as root);
without one every test here skips and says so.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from container_engine import engine

from deploy.local.certs import make_certificates
from deploy.local.processes import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "deploy" / "docker"
VERSION = next(
    line.split('"')[1]
    for line in (ROOT / "pyproject.toml").read_text().splitlines()
    if line.startswith("version = ")
)
MAX_IMAGE_BYTES = 3_000_000_000  # the client image a hospital must download and approve


ENGINE = engine()
if ENGINE is None:
    pytestmark.append(
        pytest.mark.skip(
            reason="no container engine runs here (podman or docker with its daemon); "
            "on Debian as root, .ci/run installs podman (deploy/docker/install-podman.sh)"
        )
    )


def _sh(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    res = subprocess.run(
        ["bash", *args],
        env={**os.environ, "FEDSYNTH_ENGINE": ENGINE or "", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    assert res.returncode == 0, f"{args} failed:\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    return res


def _inspect(what: str, template: str) -> str:
    res = subprocess.run(
        [ENGINE, "inspect", "--format", template, what], capture_output=True, text=True
    )
    return res.stdout.strip()


def _in_image(image: str, script: str) -> str:
    res = subprocess.run(
        [ENGINE, "run", "--rm", "--network", "none", "--entrypoint", "bash", image, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return res.stdout + res.stderr


@pytest.fixture(scope="module")
def images(early_build) -> dict[str, str]:
    """Both images, built by the one script a hospital's IT team runs (started in the
    background at collection, see ``container_engine.py``; run again here: from its cache
    when that build succeeded, and its outcome is what counts)."""
    if early_build is not None:
        _, process, _ = early_build
        process.wait(timeout=1800)
    res = _sh(str(DOCKER / "build.sh"), timeout=1800)
    print(res.stdout)
    return {t: f"fedsynth-{t}:{VERSION}" for t in ("client", "server")}


def test_images_are_small_run_as_app_and_keep_no_build_input(images):
    for target, image in images.items():
        size = int(_inspect(image, "{{.Size}}"))
        assert 0 < size <= MAX_IMAGE_BYTES, f"{image}: {size / 1e9:.2f} GB"
        assert _inspect(image, "{{.Config.User}}") == "app"
        out = _in_image(
            image,
            "id -u; ls -A /run/secrets 2>/dev/null | wc -l; pip config list; "
            "touch /app/x /opt/fedsynth/x 2>&1 | grep -c 'Permission denied'; "
            "tesseract --version 2>&1 | head -1; fedsynth --help >/dev/null && echo cli-ok; "
            "echo home-not-app=$(find /home/app ! -user app | wc -l)",
        )
        lines = out.splitlines()
        assert lines[0] == "49999", out  # not root
        assert lines[1] == "0", out  # no pip.conf or CA bundle left from the build
        # the build machine's pip settings (indexes, mirrors, certificates) are not in it
        assert not [x for x in lines if "index-url" in x or "find-links" in x or "cert" in x]
        assert "2" in lines, out  # code and environment are read-only to the user
        assert any(x.startswith("tesseract 5") for x in lines), out
        assert "cli-ok" in lines, out
        assert "home-not-app=0" in lines, out  # the build left nothing of root's in $HOME
        entry = _inspect(image, "{{json .Config.Entrypoint}}")
        script = "supernode.sh" if target == "client" else "superlink.sh"
        assert script in entry, entry


def _metrics(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_three_hospitals_in_containers_tls_node_auth_restart_rejoins(images, tmp_path):
    env = {
        "FEDSYNTH_WORKDIR": str(tmp_path / "consortium"),
        "FEDSYNTH_PROJECT": f"fedsynth-test-{os.getpid()}",
        "FEDSYNTH_PORT": str(free_port()),
        "FEDSYNTH_SAMPLE_CASES": "6",
        "FEDSYNTH_IMAGE_SIZE": "32",
        "FEDSYNTH_REJOIN_DELAY": "5",
    }
    script = str(DOCKER / "consortium.sh")
    work = tmp_path / "consortium"
    site2 = f"{env['FEDSYNTH_PROJECT']}-site-2"
    try:
        up = _sh(script, "up", env=env, timeout=600).stdout
        assert up.count("registered") >= 3, up
        # The hospital's private key and the CA's key are never mounted into the SuperLink.
        mounts = _inspect(f"{env['FEDSYNTH_PROJECT']}-superlink", "{{json .Mounts}}")
        assert "ca.key" not in mounts and "/keys/" not in mounts, mounts

        run = subprocess.Popen(
            [
                "bash",
                script,
                "run",
                "num-server-rounds=4 local-epochs=1 min-sites=3 round-timeout=300",
            ],
            env={**os.environ, "FEDSYNTH_ENGINE": ENGINE, "RUN_NAME": "t", **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
        )
        metrics = work / "runs" / "t" / "metrics.jsonl"
        deadline = time.monotonic() + 600
        while not [r for r in _metrics(metrics) if r["round"] >= 1]:
            assert run.poll() is None, run.stdout.read()[-4000:]
            assert time.monotonic() < deadline, "no round finished in 10 minutes"
            time.sleep(0.5)
        before = _inspect(site2, "{{.State.StartedAt}}")
        restarted_in = max(r["round"] for r in _metrics(metrics))
        _sh(script, "restart", "site-2", env=env)
        out, _ = run.communicate(timeout=900)
        assert run.returncode == 0, out[-4000:]
        assert _inspect(site2, "{{.State.StartedAt}}") != before  # it really restarted

        rounds = _metrics(metrics)
        trained = {
            r["round"]: {t["site"] for t in r["sites"]["trained"]} for r in rounds if r["round"]
        }
        assert trained[4] == {"site-1", "site-2", "site-3"}, trained
        assert any("site-2" in trained[n] for n in trained if n > restarted_in + 1), trained
        assert "overall" in rounds[-1]["heldout"]
        assert (work / "runs" / "t" / "report.html").exists()  # out on the mounted volume

        verified = _sh(script, "verify", env=env).stdout
        assert "OK: 4 ledger(s) verify" in verified, verified  # 3 sites + the consortium's
        for name in ("superlink", "site-1", "site-2", "site-3"):
            log = subprocess.run(
                [ENGINE, "logs", f"{env['FEDSYNTH_PROJECT']}-{name}"],
                capture_output=True,
                text=True,
            )
            text = log.stdout + log.stderr
            assert "FEDSYNTH_INSECURE" not in text and "FEDSYNTH_NODE_AUTH" not in text, name
    finally:
        _sh(script, "down", env=env)
    left = subprocess.run(
        [ENGINE, "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True
    ).stdout
    assert env["FEDSYNTH_PROJECT"] not in left


@pytest.mark.skipif(ENGINE != "podman", reason="podman kube play needs podman")
def test_kube_play_brings_up_the_coordinator_from_deploy_k8s(images, tmp_path):
    taken = subprocess.run(
        ["podman", "volume", "ls", "--format", "{{.Name}}"], capture_output=True, text=True
    ).stdout.split()
    if {"fedsynth-heldout", "fedsynth-superlink-state", "fedsynth-runs"} & set(taken):
        pytest.skip("this machine already has a played coordinator's volumes; not touching them")
    certs = tmp_path / "certs"
    make_certificates(certs, ["localhost", "127.0.0.1"])
    heldout = tmp_path / "heldout"
    heldout.mkdir()
    (heldout / "README").write_text("held-out set placeholder\n")
    port = free_port()
    play = str(ROOT / "deploy" / "k8s" / "play.sh")
    try:
        _sh(play, "up", str(certs), str(heldout), env={"FEDSYNTH_PORT": str(port)}, timeout=300)
        ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                assert tls.version() in ("TLSv1.2", "TLSv1.3")  # the consortium CA's certificate
        state = subprocess.run(
            ["podman", "exec", "superlink-pod-0-superlink", "ls", "/state"],
            capture_output=True,
            text=True,
        ).stdout
        assert "superlink.db" in state  # its database on the claim's volume
    finally:
        _sh(play, "down", "--volumes", env={"FEDSYNTH_PORT": str(port)})
