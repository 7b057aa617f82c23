"""``fedsynth consortium init | run``: a pilot consortium from your own folders."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

consortium_app = typer.Typer(
    no_args_is_help=True,
    help="A consortium from your own folders, on this machine: write its file, run it.",
)
console = Console(soft_wrap=not sys.stdout.isatty())


def _site(text: str) -> tuple[str, str]:
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise typer.BadParameter(f"{text!r} is not NAME=FOLDER (e.g. kvasir=data/kvasir)")
    return name, folder


@consortium_app.command("init")
def init(
    path: Path = typer.Argument(Path("consortium.toml"), help="The file to write."),
    site: list[str] = typer.Option(
        [], help="A site as NAME=FOLDER (relative to the file); repeat per site."
    ),
    heldout: str = typer.Option("", help="The coordinator's held-out folder."),
) -> None:
    """Write a commented consortium file to edit (never over an existing one)."""
    from deploy.local.spec import template

    if path.exists():
        console.print(f"[red]error:[/] {path} exists; edit it, or name another file")
        raise typer.Exit(2)
    sites = [_site(s) for s in site]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(template(path, sites, heldout))
    console.print(f"wrote {path}; edit it, then: fedsynth consortium run {path}")


@consortium_app.command("run")
def run(
    path: Path = typer.Argument(..., help="The consortium file."),
    engine: str = typer.Option(
        None,
        help="deployment (SuperLink + SuperNodes on localhost) or simulation; default: the file's.",
    ),
    run_config: str = typer.Option("", help="run-config overrides on top of the file's, 'k=v'."),
) -> None:
    """Prepare every site and the held-out set, run the federation, add the baselines."""
    from common.errors import ConfigError, IntakeError
    from deploy.local.runner import parse_overrides, run_consortium
    from deploy.local.spec import load

    try:
        spec = load(path, engine=engine, overrides=parse_overrides(run_config))
        report = run_consortium(spec, console)
    except (ConfigError, IntakeError, ValueError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    console.print(f"[bold green]report:[/] {report}")
