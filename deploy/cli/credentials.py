"""`fedsynth deploy ...`: certificates, SuperNode keys, and registering a site's key.

fedsynth deploy certs --host NAME...      coordinator: a consortium CA + SuperLink certificate
fedsynth deploy node-key                  hospital: a SuperNode key pair (send the .pub)
fedsynth deploy register-node KEY.pub     coordinator: let that SuperNode join
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import typer
from rich.console import Console

console = Console()
deploy_app = typer.Typer(no_args_is_help=True, help="Certificates and keys for a consortium.")


@deploy_app.command("certs")
def certs(
    host: list[str] = typer.Option(
        ..., help="A name or address SuperNodes use to reach the SuperLink (repeatable)."
    ),
    out: Path = typer.Option(Path("certs"), help="Folder for ca.crt, ca.key, server.pem/.key."),
    days: int = typer.Option(825, help="Validity of the SuperLink certificate, in days."),
) -> None:
    """Make the consortium CA and the SuperLink's TLS certificate."""
    from deploy.local.certs import make_certificates, san_hosts

    try:
        paths = make_certificates(out, host, days)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    console.print(
        f"SuperLink certificate for {', '.join(san_hosts(host))} (the loopback names are "
        "for its own SuperExec), signed by a new consortium CA:"
    )
    for label, path in paths.items():
        console.print(f"  {label:12} {path}")
    console.print(
        f"Give [bold]{paths['ca-cert']}[/bold] to every hospital. Keep ca.key offline; "
        "server.pem and server.key go to the SuperLink (FEDSYNTH_CERT_DIR)."
    )


@deploy_app.command("node-key")
def node_key(
    out: Path = typer.Option(Path("keys/node"), help="Path without suffix: writes .key and .pub."),
) -> None:
    """Make this hospital's SuperNode authentication key pair."""
    from deploy.local.certs import make_node_key

    try:
        private = make_node_key(out)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    public = private.with_suffix(".pub")
    console.print(f"private key {private} (mode 0600: never send it); public key {public}:")
    print(public.read_text().strip())
    console.print("send the public key to the coordinator: fedsynth deploy register-node")


@deploy_app.command("register-node")
def register_node(
    public_key: Path = typer.Argument(..., help="The hospital's SuperNode public key (.pub)."),
    superlink: str = typer.Option(..., help="The SuperLink's address, host:port."),
    ca_cert: Path = typer.Option(Path("certs/ca.crt"), help="The consortium CA certificate."),
    name: str = typer.Option("", help="The site's name, for `flwr supernode list`."),
) -> None:
    """Register a hospital's SuperNode key with the SuperLink (`flwr supernode register`)."""
    if not public_key.is_file() or not public_key.read_text().startswith("ecdsa-"):
        console.print(
            f"[red]{public_key} is not a SuperNode public key (an OpenSSH ecdsa-... line from "
            "fedsynth deploy node-key)[/red]"
        )
        raise typer.Exit(1)
    with tempfile.TemporaryDirectory() as home:
        (Path(home) / "config.toml").write_text(
            '[superlink]\ndefault = "c"\n\n[superlink.c]\n'
            f'address = "{superlink}"\nroot-certificates = "{ca_cert.resolve()}"\n'
        )
        args = ["flwr", "supernode", "register", str(public_key), "c"]
        if name:
            args += ["--name", name]
        res = subprocess.run(args, capture_output=True, text=True, env=_env(home))
    print(res.stdout.strip())
    if "already in use" in res.stdout + res.stderr:
        # Registering is idempotent for the coordinator: the key can already join.
        console.print(
            f"{public_key} is already registered with {superlink} "
            "(`flwr supernode list` shows under which name)"
        )
        return
    if res.returncode != 0 or "registered" not in res.stdout:
        console.print(f"[red]registration failed[/red] {res.stderr.strip()[-500:]}")
        raise typer.Exit(1)


def _env(home: str) -> dict:
    import os
    import sys

    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, "FLWR_HOME": home, "PATH": path}
