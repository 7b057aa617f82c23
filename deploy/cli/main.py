"""``fedsynth``: the one command-line tool in front of everything a person does.

fedsynth sample-data OUT            generate the built-in sample consortium
fedsynth site prepare               de-identify, check and cache a site's data
fedsynth demo                       a whole consortium on this machine, end to end
fedsynth consortium init | run      a consortium from your own folders, on this machine
fedsynth simulate                   the same apps on Flower's Simulation Engine
fedsynth baselines                  local-only and centralised references for a run
fedsynth report RUN_DIR             re-render a run's HTML report
fedsynth synth train | sample       a site's generator of synthetic pairs, and a look at it
fedsynth audit verify | report | recompute    the privacy ledgers
fedsynth deploy certs | node-key | register-node   TLS and SuperNode authentication
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from deploy.cli import privacy
from deploy.cli.consortium import consortium_app
from deploy.cli.credentials import deploy_app
from deploy.cli.site_privacy import plan_line, privacy_app, training_patients
from deploy.cli.synth import synth_app
from deploy.cli.views import print_intake, progress_bar

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="FedSynth: federated medical image segmentation across hospitals.",
)
# `fedsynth --help` lists the commands by who runs them, as the README's command table.
TRY, HOSPITAL, COORDINATOR, AUDITOR, DEPLOY = (
    "Try it on this machine",
    "Hospital (site)",
    "Coordinator (server)",
    "Auditor",
    "Deployment",
)
site_app = typer.Typer(no_args_is_help=True, help="What a hospital runs on its own machine.")
app.add_typer(consortium_app, name="consortium", rich_help_panel=TRY)
app.add_typer(site_app, name="site", rich_help_panel=HOSPITAL)
app.add_typer(synth_app, name="synth", rich_help_panel=HOSPITAL)
app.add_typer(privacy_app, name="privacy", rich_help_panel=HOSPITAL)
app.add_typer(privacy.server_app, name="server", rich_help_panel=COORDINATOR)
app.add_typer(privacy.audit_app, name="audit", rich_help_panel=AUDITOR)
app.add_typer(deploy_app, name="deploy", rich_help_panel=DEPLOY)
site_app.command("keygen")(privacy.keygen)
# Without a terminal (CI, containers, `> log`) lines are not cut at 80 columns.
console = Console(soft_wrap=not sys.stdout.isatty())


def _progress():
    return progress_bar(console)


@app.command("sample-data", rich_help_panel=TRY)
def sample_data(
    out: Path = typer.Argument(..., help="Output folder (must be empty or absent)."),
    sites: int = typer.Option(3, help="Number of hospitals."),
    cases_per_site: int = typer.Option(40, help="Patients per hospital."),
    heldout_per_vendor: int = typer.Option(16, help="Held-out patients per vendor."),
    seed: int = typer.Option(0, help="The whole consortium is a function of this seed."),
    defects: bool = typer.Option(True, help="Plant a few bad files in the last site."),
) -> None:
    """Generate a deterministic sample consortium: DICOM images, DICOM SEG masks, fake PHI."""
    from common.data.sampledata import count_cases, write_consortium

    with _progress() as bar:
        task = bar.add_task(
            "writing DICOM", total=count_cases(sites, cases_per_site, heldout_per_vendor)
        )
        manifest = write_consortium(
            out,
            sites,
            cases_per_site,
            heldout_per_vendor,
            seed,
            defects,
            progress=lambda n: bar.advance(task, n),
        )
    table = Table("site", "vendor", "cases", "planted defects")
    for s in manifest["sites"]:
        table.add_row(
            s["name"], f"{s['manufacturer']} {s['model']}", str(s["cases"]), str(len(s["defects"]))
        )
    for v in manifest["heldout"]["vendors"]:
        table.add_row(
            "heldout",
            f"{v['manufacturer']} {v['model']}"
            + ("" if v["seen_by_sites"] else " (no site has it)"),
            str(v["cases"]),
            "",
        )
    console.print(table)
    console.print(f"manifest: {out / 'manifest.json'}")


@site_app.command("prepare")
def site_prepare(
    data_dir: Path = typer.Option(..., help="The site's raw data (DICOM or image folders)."),
    state_dir: Path = typer.Option(..., help="The site's private working folder."),
    image_size: int = typer.Option(128, help="Training resolution; match the run's image-size."),
    force: bool = typer.Option(False, help="Rebuild the cache even if nothing changed."),
    new_secret: bool = typer.Option(
        False, help="A new site: make its secret (STATE/site.secret); refused if one exists."
    ),
    privacy_plan: bool = typer.Option(
        True, help="Print what DP at the consortium's defaults would give (takes seconds)."
    ),
) -> None:
    """De-identify, check, preprocess and cache a site's data ahead of a run."""
    from common.data.intake import prepare_site
    from common.errors import IntakeError

    with _progress() as bar:
        task = bar.add_task("de-identifying and checking", total=None)

        def progress(total=None, advance=0):
            if total is not None:
                bar.update(task, total=total)
            bar.advance(task, advance)

        try:
            _, report = prepare_site(
                data_dir,
                state_dir,
                image_size,
                force=force,
                progress=progress,
                new_secret=new_secret,
            )
        except IntakeError as exc:
            console.print(f"[red]error:[/] {exc}")
            raise typer.Exit(2) from None
    print_intake(console, report, str(data_dir))
    console.print(f"report: {state_dir / 'intake_report.json'}")
    from common.privacy import site_keys

    _, public = site_keys.load_or_create(state_dir)
    console.print(f"ledger key: {public}  (register it: fedsynth server register-site NAME KEY)")
    if report.cases and privacy_plan:
        units = training_patients(state_dir, 0.2)  # from the report just written
        console.print(plan_line(units, state_dir) + "; details: fedsynth privacy plan")
    if report.cases == 0:
        console.print("[yellow]no usable case: this site would decline every round[/]")
        raise typer.Exit(1)


@app.command(rich_help_panel=HOSPITAL)
def anonymize(
    in_dir: Path = typer.Argument(None, help="Folder of DICOM files (only read)."),
    out_dir: Path = typer.Argument(None, help="Where de-identified files go."),
    site_secret: Path = typer.Option(
        None, help="The site secret file (it must exist, unless --new-secret)."
    ),
    explain: Path = typer.Option(
        None,
        help="Explain the pixel check of one file (DICOM or image) and exit: the recipe "
        "rule that applies and what the check finds. Nothing is written.",
    ),
    new_secret: bool = typer.Option(
        False, help="A new site: make the secret file; refused if one exists."
    ),
    workers: int = typer.Option(1, help="Worker processes."),
    retain_safe_private: bool = typer.Option(False, help="PS3.15 Retain Safe Private Option."),
    retain_uids: bool = typer.Option(False, help="PS3.15 Retain UIDs Option."),
    retain_device_identity: bool = typer.Option(False, help="Retain Device Identity Option."),
    retain_institution_identity: bool = typer.Option(
        False, help="Retain Institution Identity Option."
    ),
    retain_patient_characteristics: bool = typer.Option(
        False, help="Retain Patient Characteristics Option."
    ),
    retain_full_dates: bool = typer.Option(
        False, help="Retain Longitudinal Temporal Information with Full Dates Option."
    ),
    retain_modified_dates: bool = typer.Option(
        False,
        help="Retain Longitudinal Temporal Information with Modified Dates Option "
        "(one keyed shift in days per patient).",
    ),
    clean_descriptors: bool = typer.Option(False, help="Clean Descriptors Option."),
    clean_structured_content: bool = typer.Option(False, help="Clean Structured Content Option."),
    clean_graphics: bool = typer.Option(False, help="Clean Graphics Option."),
    clean_pixel_data: bool = typer.Option(
        True, help="Clean Pixel Data Option: blank burned-in text (off: quarantine suspects)."
    ),
) -> None:
    """De-identify a folder: every input written, quarantined or rejected with a reason."""
    if explain is not None:
        _explain_pixels(explain)
        return
    if in_dir is None or out_dir is None or site_secret is None:
        console.print("[red]error:[/] give IN_DIR, OUT_DIR and --site-secret (or --explain FILE)")
        raise typer.Exit(2)
    from common.deid.anonymize import anonymize_folder
    from common.deid.profile import DeidOptions
    from common.errors import IntakeError

    try:
        options = DeidOptions(
            retain_safe_private=retain_safe_private,
            retain_uids=retain_uids,
            retain_device_identity=retain_device_identity,
            retain_institution_identity=retain_institution_identity,
            retain_patient_characteristics=retain_patient_characteristics,
            retain_longitudinal_full_dates=retain_full_dates,
            retain_longitudinal_modified_dates=retain_modified_dates,
            clean_descriptors=clean_descriptors,
            clean_structured_content=clean_structured_content,
            clean_graphics=clean_graphics,
        )
    except ValueError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None

    total = sum(1 for p in in_dir.rglob("*") if p.is_file()) if in_dir.is_dir() else 0
    try:
        with _progress() as bar:
            task = bar.add_task("de-identifying", total=total)
            report = anonymize_folder(
                in_dir,
                out_dir,
                site_secret,
                workers,
                progress=lambda n: bar.advance(task, n),
                options=options,
                clean_pixels=clean_pixel_data,
                new_secret=new_secret,
            )
    except IntakeError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    c = report.counts
    console.print(
        f"{report.inputs} inputs: {c['written']} written, {c['quarantined']} "
        f"quarantined, {c['rejected']} rejected in {report.seconds:.1f} s "
        f"({report.inputs / max(report.seconds, 1e-9):.0f} files/s, "
        f"{workers} worker(s))"
    )
    bad = [f for f in report.files if f["fate"] != "written"]
    if bad:
        table = Table("input", "fate", "reason")
        for f in bad:
            table.add_row(f["input"], f["fate"], f["reason"])
        console.print(table)
    console.print(
        f"full report (names input files, keep it at the site): "
        f"{site_secret.parent / 'anonymization_report.json'}"
    )


def _explain_pixels(path: Path) -> None:
    """Print which pixel rule applies to ``path`` and what the check finds (no text shown)."""
    import numpy as np

    from common.data.folders import IMAGE_EXTS, read_image
    from common.deid import burned_in
    from common.deid.anonymize import read_dicom
    from common.errors import IntakeError

    rules = burned_in.recipe()
    ds, pixels = None, None
    try:
        if path.suffix.lower() in IMAGE_EXTS:
            pixels = read_image(path)
            pixels = pixels[..., :3] if pixels.ndim == 3 else pixels
        else:
            ds = read_dicom(path)
    except IntakeError as exc:
        console.print(f"[red]error:[/] {path}: {exc}")
        raise typer.Exit(2) from None
    if ds is not None and "PixelData" in ds:
        try:
            pixels = ds.pixel_array
        except Exception as exc:  # the strict check would quarantine it
            console.print(f"pixel data cannot be decoded ({type(exc).__name__})")
    decision = burned_in.policy(ds, rules)
    console.print(f"recipe {rules.version} ({burned_in.RECIPE_FILE})")
    console.print(
        f"rule: {decision.rule}\ncheck: {decision.check}",
        markup=False,
    )
    band, multi = None, False
    if ds is not None:
        key = (str(ds.get("Manufacturer", "")), str(ds.get("ManufacturerModelName", "")))
        band = rules.known_regions.get(key)
        multi = int(ds.get("NumberOfFrames", 1) or 1) > 1
        if band is not None:
            console.print(f"known text band for {key[0]} {key[1]}: top {band:.0%} of rows")
    if decision.check == "none" or pixels is None:
        return
    if decision.check == "fast":
        lines = burned_in.fast_check(np.asarray(pixels), multi)
        if not lines:
            console.print("fast check: no glyph-like lines; pixels kept as they are")
            return
        console.print(f"fast check: {len(lines)} glyph-like line(s); the strict check follows")
    try:
        _, done = burned_in.clean_image(np.asarray(pixels), band=band, multi_frame=multi)
    except IntakeError as exc:
        console.print(f"outcome: quarantined: {exc}")
        return
    console.print(
        f"found: {done.regions} text-like region(s), {done.words} word(s) read "
        f"(not shown)\noutcome: {'cleaned' if done.cleaned else 'nothing to clean'}, "
        f"{len(done.boxes)} box(es) filled; the final check found no text"
    )


@app.command(rich_help_panel=HOSPITAL)
def reidentify(
    pseudonym: list[str] = typer.Argument(..., help="Pseudonyms or 2.25 UIDs to map back."),
    site_secret: Path = typer.Option(..., help="The site secret file."),
) -> None:
    """Map pseudonyms back to original values (authorised site staff only)."""
    from common.deid.pseudonyms import TABLE_FILE, ReidentificationTable, SiteSecret

    if not site_secret.exists():
        console.print(f"[red]error:[/] no site secret at {site_secret}")
        raise typer.Exit(2)
    table = ReidentificationTable(
        site_secret.parent / TABLE_FILE, SiteSecret(site_secret.read_bytes())
    )
    missing = 0
    for p in pseudonym:
        entry = table.lookup(p)
        if entry is None:
            missing += 1
            console.print(f"{p}: not in this site's table")
        else:
            console.print(f"{p}: {entry['kind']} = {entry['value']}")
    if missing:
        raise typer.Exit(1)


@site_app.command("serve")
def site_serve(
    state_dir: Path = typer.Option(..., help="The site's state dir (same as its node_config)."),
) -> None:
    """Run the site trainer: keeps torch, MONAI and the data warm between rounds."""
    from client.trainer import serve

    logging.getLogger("client").setLevel(logging.INFO)
    console.print(f"site trainer on {state_dir / 'trainer.sock'}; Ctrl-C to stop")
    try:
        serve(state_dir)
    except KeyboardInterrupt:
        console.print("site trainer stopped")


@app.command(rich_help_panel=TRY)
def demo(
    workdir: Path = typer.Option(Path("fedsynth-demo"), help="Where data, state and runs go."),
    rounds: int = typer.Option(12, help="Federated rounds."),
    sites: int = typer.Option(3, help="Hospitals (used when generating sample data)."),
    cases_per_site: int = typer.Option(40, help="Patients per hospital (sample data)."),
    local_epochs: int = typer.Option(None, help="Local epochs per round (default: pyproject)."),
    baselines: bool = typer.Option(True, help="Also train local-only and centralised models."),
    trainers: bool = typer.Option(True, help="Start a warm site trainer beside each SuperNode."),
    share: str = typer.Option(
        "weights",
        help="What sites share: weights, synthetic (gated image+mask pairs), both, or "
        "exchange (weights; each site also trains on the others' pairs).",
    ),
    run_config: str = typer.Option("", help="Extra run_config overrides, 'k=v k2=v2'."),
) -> None:
    """Run a whole consortium on this machine: SuperLink, one SuperNode per site, report."""
    from deploy.local.demo import run_demo

    overrides = {"num-server-rounds": rounds, "share": share}
    if local_epochs is not None:
        overrides["local-epochs"] = local_epochs
    report = run_demo(
        workdir.resolve(),
        overrides,
        extra=run_config,
        n_sites=sites,
        cases_per_site=cases_per_site,
        baselines=baselines,
        trainers=trainers,
        console=console,
    )
    console.print(f"[bold green]report:[/] {report}")


@app.command(rich_help_panel=TRY)
def simulate(
    sites: int = typer.Option(10, help="Virtual sites."),
    rounds: int = typer.Option(3, help="Federated rounds."),
    workdir: Path = typer.Option(Path("fedsynth-sim"), help="Where data, state and runs go."),
    cases_per_site: int = typer.Option(12, help="Patients per virtual site."),
    run_config: str = typer.Option("", help="Extra run_config overrides, 'k=v k2=v2'."),
) -> None:
    """Run the same ServerApp and ClientApp on Flower's Simulation Engine with many sites."""
    from deploy.local.simulate import run_simulation

    report = run_simulation(workdir.resolve(), sites, rounds, cases_per_site, run_config, console)
    console.print(f"[bold green]report:[/] {report}")


@app.command("baselines", rich_help_panel=TRY)
def baselines_cmd(
    run_dir: Path = typer.Argument(..., help="A finished run's output folder."),
    site_state: list[Path] = typer.Option(..., help="Each site's state dir (repeat)."),
) -> None:
    """Train local-only and centralised baselines for a run and add them to its report."""
    from deploy.local.runner import add_baselines

    console.print(f"report: {add_baselines(run_dir, site_state, console)}")


@app.command(rich_help_panel=TRY)
def report(run_dir: Path = typer.Argument(..., help="A run's output folder.")) -> None:
    """Re-render a run's report.html from its metrics.jsonl and baselines.json."""
    from common.report import render

    console.print(f"report: {render(run_dir)}")


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Entry point of the ``fedsynth`` script.

    SIGTERM (``kill``, ``docker stop``, a CI timeout) stops a command as Ctrl-C does: every
    command unwinds, stops the processes it started and leaves its folders consistent.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _terminate)
    app()


if __name__ == "__main__":
    main()
