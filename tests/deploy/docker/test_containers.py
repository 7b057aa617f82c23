"""The container and cluster files ask for what the entrypoints and tests rely on:
Flower's image of the pinned version, TLS and SuperNode authentication on, the ports,
paths and settings the entrypoint scripts read. (The images are built and the consortium
run in containers by tests/integration/test_container_images.py where an engine runs; the
compose consortium is also played natively in tests/integration.)"""

from __future__ import annotations

import re
from pathlib import Path

import flwr
import yaml

ROOT = Path(__file__).resolve().parents[3]
DOCKER = ROOT / "deploy" / "docker"
K8S = ROOT / "deploy" / "k8s"
ENTRYPOINTS = ROOT / "deploy" / "entrypoints"
SERVICES = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]


def _documented(script: str) -> set[str]:
    """The FEDSYNTH_* settings an entrypoint documents in its header."""
    header = (ENTRYPOINTS / script).read_text().split("set -euo pipefail")[0]
    return set(re.findall(r"#\s+(FEDSYNTH_\w+)", header))


def _order() -> list[str]:
    done: list[str] = []

    def visit(name: str) -> None:
        for dep in SERVICES[name].get("depends_on", {}):
            visit(dep)
        if name not in done:
            done.append(name)

    for name in SERVICES:
        visit(name)
    return done


def test_images_build_on_flowers_supernode_image_of_the_pinned_version():
    text = (DOCKER / "Dockerfile").read_text()
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, re.M).group(1)
    assert base.startswith(f"docker.io/flwr/supernode:{flwr.__version__}-"), base
    assert f"flwr.__version__ == '{flwr.__version__}'" in text
    for target, script in (("client", "supernode.sh"), ("server", "superlink.sh")):
        stage = text.split(f" AS {target}\n", 1)[1].split("\nFROM ", 1)[0]
        assert f"/app/deploy/entrypoints/{script}" in stage
    assert "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1" in text


def test_compose_consortium_has_tls_node_auth_and_registers_before_joining():
    order = _order()
    assert order.index("init") < order.index("superlink") < order.index("register")
    sites = [n for n in SERVICES if n.startswith("site-")]
    assert len(sites) == 3
    for name, service in SERVICES.items():
        env = {k: str(v) for k, v in service.get("environment", {}).items()}
        assert env.get("FEDSYNTH_INSECURE", "0") == "0", name
        assert env.get("FEDSYNTH_NODE_AUTH", "1") == "1", name
    known = _documented("supernode.sh")
    for site in sites:
        assert order.index("register") < order.index(site)
        env = SERVICES[site]["environment"]
        assert set(env) <= known, set(env) - known
        # every path explicit, so a native run of the service maps them all
        assert env["FEDSYNTH_STATE_DIR"] == "/state" and env["FEDSYNTH_DATA_DIR"]
        assert env["FEDSYNTH_NODE_KEY"].endswith(f"{site}.key")
        assert env["FEDSYNTH_CA_CERT"].endswith("ca.crt")
        assert any(v.endswith(":/state") for v in SERVICES[site]["volumes"])
        assert any(v.endswith(":ro") and ":/sample" in v for v in SERVICES[site]["volumes"])


def test_kubernetes_superlink_runs_the_entrypoint_with_its_certificates_and_state():
    docs = [d for d in yaml.safe_load_all((K8S / "superlink.yaml").read_text()) if d]
    sts = next(d for d in docs if d["kind"] == "Deployment")
    assert sts["spec"]["replicas"] == 1 and sts["spec"]["strategy"]["type"] == "Recreate"
    service = next(d for d in docs if d["kind"] == "Service")
    pod = sts["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert "command" not in container and "args" not in container  # the image's entrypoint
    env = {e["name"]: e["value"] for e in container["env"]}
    assert set(env) - {"FLWR_HOME"} <= _documented("superlink.sh")
    assert "FEDSYNTH_INSECURE" not in env and "FEDSYNTH_NODE_AUTH" not in env
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts[env["FEDSYNTH_CERT_DIR"]] == "tls"
    assert str(Path(env["FEDSYNTH_DATABASE"]).parent) in mounts  # on a persistent volume
    claims = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for path in ("/state", "/srv/runs"):  # kept across restarts: claims this file makes
        assert volumes[mounts[path]]["persistentVolumeClaim"]["claimName"] in claims
    port = int(env["FEDSYNTH_PORT"])
    assert container["ports"][0]["containerPort"] == port
    assert service["spec"]["ports"][0]["port"] == port
    assert pod["securityContext"]["runAsNonRoot"] is True
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    (secret,) = kustomization["secretGenerator"]
    assert secret["name"] == next(
        v["secret"]["secretName"] for v in pod["volumes"] if v["name"] == "tls"
    )
    assert {Path(f).name for f in secret["files"]} == {"ca.crt", "server.pem", "server.key"}
    assert set(kustomization["resources"]) <= {p.name for p in K8S.glob("*.yaml")}


def test_the_client_entrypoint_never_makes_a_secret_over_pseudonymised_state(tmp_path):
    """State with pseudonyms but no secret (lost, or the wrong volume): stop, make none."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[3] / "deploy" / "entrypoints" / "supernode.sh"
    state = tmp_path / "state"
    state.mkdir()
    (state / "intake_report.json").write_text("{}")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "FEDSYNTH_SUPERLINK": "127.0.0.1:1",
        "FEDSYNTH_SITE_NAME": "hospital-a",
        "FEDSYNTH_DATA_DIR": str(tmp_path / "data"),
        "FEDSYNTH_STATE_DIR": str(state),
        "FEDSYNTH_INSECURE": "1",
        "FEDSYNTH_NODE_AUTH": "0",
        "FEDSYNTH_TRAINER": "0",
    }
    res = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2, res.stderr
    assert "no site.secret" in res.stderr and "intake_report.json" in res.stderr
    assert not (state / "site.secret").exists()
