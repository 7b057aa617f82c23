"""`fedsynth audit ...`, `fedsynth site keygen` and `fedsynth server register-site`.

The commands of the privacy ledger's three parties: the site makes its signing key, the
coordinator registers it, the auditor verifies, summarises and recomputes.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

console = Console()
audit_app = typer.Typer(no_args_is_help=True, help="Check privacy ledgers (for auditors).")
server_app = typer.Typer(no_args_is_help=True, help="What the coordinator runs.")

LEDGERS = typer.Argument(
    ...,
    help="Site ledgers (STATE/privacy/ledger.jsonl) and consortium ledgers "
    "(OUT/ledger/consortium.jsonl).",
)
REGISTRY = typer.Option(None, help="The coordinator's folder of registered site keys.")


def keygen(state_dir: Path = typer.Option(..., help="The site's private state folder.")) -> None:
    """Make the site's secret and its Ed25519 ledger key (once); print the key to register.

    The site secret (``STATE/site.secret``) is what every pseudonym of the site comes from:
    it is made here, once, and never replaced; back it up.
    """
    from common.deid.pseudonyms import SECRET_FILE, SiteSecret
    from common.privacy import site_keys

    secret = state_dir / SECRET_FILE
    if not secret.exists():
        SiteSecret.create(secret)
        console.print(f"site secret made: {secret} (mode 0600; back it up, never replace it)")
    _, public = site_keys.load_or_create(state_dir)
    console.print(f"public key ({state_dir / site_keys.PUB_FILE}):")
    print(public)
    console.print("give it to the coordinator: fedsynth server register-site NAME KEY")


@server_app.command("register-site")
def register_site(
    name: str = typer.Argument(..., help="The site's name (its node_config site-name)."),
    public_key: str = typer.Argument(..., help="The site's public key, or the site.pub file."),
    registry: Path = typer.Option(Path("registry"), help="The registry folder."),
) -> None:
    """Register a site's ledger key; the server then accepts only releases it signed."""
    from common.errors import ConfigError
    from common.privacy import site_keys

    key = Path(public_key).read_text() if Path(public_key).is_file() else public_key
    try:
        path = site_keys.register(registry, name, key)
    except ConfigError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    console.print(f"registered {name}: {path}  (run with --run-config 'registry=\"{registry}\"')")


def _registry(path: Path | None):
    from common.privacy import site_keys

    if path is None:
        return None
    if not path.is_dir():
        console.print(f"[red]error:[/] registry {path} is not a folder")
        raise typer.Exit(2)
    return site_keys.load_registry(path)


@audit_app.command("verify")
def verify(ledgers: list[Path] = LEDGERS, registry: Path | None = REGISTRY) -> None:
    """Check chains, signatures and registration, and that site and server agree.

    Exits 1 and names the first bad entry when anything was edited, deleted, reordered,
    forged or signed by an unregistered key.
    """
    from common.privacy.audit import verify as run_verify

    problems, warnings = run_verify(ledgers, _registry(registry))
    for w in warnings:
        console.print(f"[yellow]warning:[/] {w}")
    if problems:
        console.print(f"[red]FAILED[/]: first bad entry: {problems[0]}")
        for p in problems[1:]:
            console.print(f"  also: {p}")
        raise typer.Exit(1)
    console.print(f"[green]OK[/]: {len(ledgers)} ledger(s) verify")


@audit_app.command("report")
def report(
    ledgers: list[Path] = LEDGERS,
    html: Path | None = typer.Option(None, help="Also write an HTML report with a plot."),
    registry: Path | None = REGISTRY,
) -> None:
    """Per site: what left and when, ε spent, δ, the budget and what is left of it."""
    from common.privacy.audit import verify as run_verify
    from common.privacy.audit_report import render_html, summarise, table

    summaries = summarise(ledgers)
    rows = table(summaries)
    t = Table(title="Privacy ledger per site")
    for col in rows[0] if rows else ["site"]:
        t.add_column(col, no_wrap=col == "site")
    for r in rows:
        t.add_row(*[str(v) for v in r.values()])
    console.print(t)
    if html:
        problems, warnings = run_verify(ledgers, _registry(registry))
        findings = [f"problem: {p}" for p in problems] + [f"warning: {w}" for w in warnings]
        console.print(f"report: {render_html(summaries, html, findings)}")


@audit_app.command("recompute")
def recompute(ledgers: list[Path] = LEDGERS) -> None:
    """Recompute every site's ε with an independent accountant; exit 1 if any claim is low."""
    from common.privacy.audit import TOLERANCE
    from common.privacy.audit import recompute as run_recompute

    results = run_recompute(ledgers)
    t = Table(title="ε claimed vs recomputed (Google dp-accounting)")
    for col in ("site", "seq", "round", "claimed", "recomputed", "verdict"):
        t.add_column(col)
    for r in results:
        verdict = "[red]TOO LOW[/]" if r.too_low else "ok"
        t.add_row(
            r.site, str(r.seq), str(r.round), f"{r.claimed:.4f}", f"{r.recomputed:.4f}", verdict
        )
    console.print(t)
    low = [r for r in results if r.too_low]
    if low:
        first = low[0]
        console.print(
            f"[red]FAILED[/]: {first.site} seq {first.seq} claims ε={first.claimed:.4f}, "
            f"recomputed {first.recomputed:.4f} (tolerance {TOLERANCE:.0%})"
        )
        raise typer.Exit(1)
    console.print(f"[green]OK[/]: {len(results)} DP entries; no claim below the recomputed ε")
