"""`fedsynth privacy plan` and `fedsynth privacy attack`: a site's own privacy checks.

`plan` says what the site's ε will buy, before a run spends it; `attack` tests a released
model with a membership-inference attack on the site's own patients.

Also :func:`plan_line`, the one line `fedsynth site prepare` prints for the
consortium's default settings.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

console = Console()
privacy_app = typer.Typer(
    no_args_is_help=True, help="A site's privacy: plan it before a run (DP-SGD)."
)


def training_patients(state_dir: Path, val_fraction: float) -> int:
    """Training patients of a prepared site: its patients less the validation split."""
    from common.data.arrays import validation_count

    report = Path(state_dir) / "intake_report.json"
    if not report.exists():
        raise FileNotFoundError(
            f"{report} not found: prepare the site first (fedsynth site prepare "
            f"--data-dir D --state-dir {state_dir}) or give --patients N"
        )
    saved = json.loads(report.read_text())
    patients = int(saved.get("patients") or saved["cases"])  # older reports: one per case
    return patients - validation_count(patients, val_fraction)


def _defaults() -> dict:
    from deploy.local.runner import default_run_config

    return default_run_config()


def plan_line(units: int, state_dir: Path | None = None) -> str:
    """``site prepare``'s line: the plan at the consortium's default DP settings."""
    from common.privacy.planner import plan

    run = _defaults()
    p = plan(
        units,
        float(run["dp-epsilon"]),
        float(run["dp-delta"]),
        int(run["num-server-rounds"]),
        int(run["local-epochs"]),
        int(run["batch-size"]),
        str(run["dp-accountant"]),
        state_dir=state_dir,
    )
    return f'privacy, if the run uses dp="local": {p.verdict} ({p.describe()})'


@privacy_app.command("plan")
def plan_command(
    patients: int = typer.Option(0, help="Training patients at the site (0: read --state-dir)."),
    state_dir: Path | None = typer.Option(None, help="A prepared site's state folder."),
    val_fraction: float = typer.Option(0.2, help="As the site's node_config val-fraction."),
    epsilon: float | None = typer.Option(
        None, help="The run's dp-epsilon (default: its run config)."
    ),
    delta: float | None = typer.Option(None, help="The run's dp-delta."),
    rounds: int | None = typer.Option(None, help="The run's num-server-rounds."),
    epochs: int | None = typer.Option(None, help="The run's local-epochs."),
    batch_size: int | None = typer.Option(None, help="The run's batch-size (logical batch)."),
    accountant: str | None = typer.Option(None, help="prv | rdp."),
    others: str = typer.Option(
        "",
        help="The other sites' training patients, comma-separated (e.g. 362,158): adds "
        "the forecast for the consortium's model, which averages all sites.",
    ),
) -> None:
    """For the site's patients and the run's ε, δ, rounds, epochs and batch: the noise
    multiplier, the noise against the clipped signal, a verdict, and what would change it.

    Nothing is spent: no data is read beyond the count in the site's intake report.
    """
    from common.errors import ConfigError
    from common.privacy.planner import alternatives, plan

    run = _defaults()
    try:
        units = patients
        if not units and state_dir is not None:
            units = training_patients(state_dir, val_fraction)
        if units < 1:
            raise ConfigError("give --patients N or --state-dir of a prepared site with cases")
        base = plan(
            units,
            epsilon if epsilon is not None else float(run["dp-epsilon"]),
            delta if delta is not None else float(run["dp-delta"]),
            rounds if rounds is not None else int(run["num-server-rounds"]),
            epochs if epochs is not None else int(run["local-epochs"]),
            batch_size if batch_size is not None else int(run["batch-size"]),
            accountant or str(run["dp-accountant"]),
            state_dir=state_dir,
        )
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    colour = {"no learning": "red", "learns, at a cost": "yellow"}.get(base.verdict, "green")
    console.print(f"[bold {colour}]{base.verdict}[/]: {base.describe()}")
    if others:
        try:
            whole = _consortium_line(base, others, state_dir)
        except (ConfigError, ValueError) as exc:
            console.print(f"[red]error:[/] --others {others!r}: {exc}")
            raise typer.Exit(2) from None
        console.print(whole)
    options = alternatives(base, state_dir)
    if not options:
        if base.verdict != "close to non-DP":
            console.print(
                "Neither fewer rounds nor a larger ε (up to 4×) lifts the verdict: "
                'share synthetic data instead (share="synthetic"), or join without DP.'
            )
        return
    table = Table("change", "noise multiplier", "signal/noise over the run", "verdict")
    for label, p in options:
        table.add_row(label, f"{p.noise_multiplier:.2f}", f"{p.run_signal_to_noise:.0f}", p.verdict)
    console.print("What would change it:")
    console.print(table)


def _consortium_line(base, others: str, state_dir) -> str:
    """The forecast for the global model of this site and ``others`` (patient counts)."""
    from common.privacy.planner import consortium_signal_to_noise, plan, verdict_of

    counts = [int(x) for x in others.split(",") if x.strip()]
    fields = {k: v for k, v in base.__dict__.items() if k not in ("noise_multiplier", "unit")}
    plans = [base] + [plan(**{**fields, "units": n}, state_dir=state_dir) for n in counts]
    snr = consortium_signal_to_noise([(p.units, p.run_signal_to_noise) for p in plans])
    sizes = ", ".join(str(p.units) for p in plans)
    return (
        f"the consortium's model ({len(plans)} sites: {sizes} patients, averaged by FedAvg): "
        f"signal {snr:.0f}× the noise over the run: {verdict_of(snr)}"
    )


@privacy_app.command("attack")
def attack_command(
    state_dir: Path = typer.Option(..., help="The site's state folder (prepared)."),
    data_dir: Path = typer.Option(..., help="The site's data folder, as prepared."),
    weights: Path | None = typer.Option(
        None, help="A released model: a state dict (e.g. the run's OUT/checkpoints/best.pt)."
    ),
    synthetic: Path | None = typer.Option(
        None, help="Released synthetic pairs: an .npz with `images` (e.g. synth sample's)."
    ),
    image_size: int = typer.Option(128, help="The run's image-size."),
    network: str | None = typer.Option(None, help="The run's network (default: run config)."),
    channels: str = typer.Option("auto", help="The run's channels (auto | rgb | grey | green)."),
    val_fraction: float = typer.Option(0.2, help="As the site's node_config val-fraction."),
    seed: int = typer.Option(0, help="The run's seed (the validation split follows it)."),
    site_name: str = typer.Option("site", help="The site's name in its ledger."),
    record: bool = typer.Option(True, help="Record each result in the site's ledger."),
) -> None:
    """Membership inference on what a site released: can it tell the site's training
    patients from its held-back ones? On a model, by its loss; on synthetic pairs, by how
    close the nearest released image comes to each patient. AUC with a 95% bootstrap
    interval (0.5: no); each recorded in the site's ledger (kind metrics) and shown by
    `fedsynth audit report`. Runs at the site, on the site's data; nothing leaves.
    """
    import hashlib

    import numpy as np

    from client.task import Declined, load_site
    from common.config import RunSettings, SiteSettings
    from common.errors import ConfigError
    from common.privacy import ledger
    from common.privacy.attack import membership_auc

    if weights is None and synthetic is None:
        console.print("[red]error:[/] give --weights (a released model), --synthetic, or both")
        raise typer.Exit(2)
    config = {**_defaults(), "image-size": image_size, "channels": channels, "seed": seed}
    if network:
        config["network"] = network
    results = []
    try:
        run = RunSettings.from_config(config)
        site = SiteSettings(str(data_dir), str(state_dir), site_name, val_fraction=val_fraction)
        train_data, val_data = load_site(site, run)
        if weights is not None:
            members, others = _model_scores(run, train_data, val_data, weights)
            results.append((weights, membership_auc(members, others)))
        if synthetic is not None:
            from common.synth.memorisation import closest_synthetic

            with np.load(synthetic) as pairs:
                images = pairs["images"]
                if "released" in pairs:
                    images = images[pairs["released"]]
            scores = []
            for data in (train_data, val_data):  # nearer a released image: member-like
                dcr = closest_synthetic(data.images, images)
                scores.append([-dcr[g].min() for g in data.patient_images()])
            results.append((synthetic, membership_auc(*scores, statistic="synthetic distance")))
    except (ConfigError, Declined, FileNotFoundError, KeyError, ValueError, RuntimeError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    for source, result in results:
        console.print(result.describe())
        if record:
            entry = ledger.append(
                state_dir,
                site=site_name,
                run="attack",
                server_round=0,
                kind="metrics",
                release={
                    "attack": result.to_json(),
                    "target_sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
                },
            )
            console.print(f"recorded in {state_dir / ledger.LEDGER_FILE} (seq {entry['seq']})")


def _model_scores(run, train_data, val_data, weights: Path):
    """Minus each patient's loss under the released model, members then non-members."""
    import torch

    from common.seg.networks import create_network
    from common.seg.training import patient_losses

    model = create_network(run.network, train_data.channels)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return -patient_losses(model, train_data), -patient_losses(model, val_data)
