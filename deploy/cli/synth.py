"""`fedsynth synth ...`: a hospital trains its generator and looks at its samples.

``synth train`` trains the site's diffusion model ahead of a run (a run then only samples
from it); ``synth sample`` draws pairs from it, runs the memorisation gate, and writes a
PNG grid so the site can see what it would share before agreeing to.
Nothing here sends anything anywhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import typer
from rich.console import Console

console = Console()
synth_app = typer.Typer(
    no_args_is_help=True, help="A site's generator of synthetic image+mask pairs."
)

RUN_CONFIG = typer.Option(
    "",
    "--run-config",
    help="The consortium's settings as in `flwr run --run-config` (synth-config, "
    "synth-train-steps, dp, seed, ...): the generator must match the run's.",
)


def _settings(data_dir: Path | None, state_dir: Path, run_config: str, val_fraction: float):
    from common.config import RunSettings, SiteSettings
    from deploy.local.runner import default_run_config, parse_overrides

    run = RunSettings.from_config({**default_run_config(), **parse_overrides(run_config)})
    site = SiteSettings(
        data_dir=str(data_dir or state_dir), state_dir=str(state_dir), val_fraction=val_fraction
    )
    return run, site


@synth_app.command("train")
def train(
    data_dir: Path = typer.Option(..., help="The site's data folder (as for site prepare)."),
    state_dir: Path = typer.Option(..., help="The site's private state folder."),
    run_config: str = RUN_CONFIG,
    val_fraction: float = typer.Option(0.2, help="As the site's node_config val-fraction."),
) -> None:
    """Train (or find already trained) the site's generator on its training split."""
    from client.synthesis import MODEL_FILE, ensure_generator
    from client.task import Declined
    from deploy.cli.views import progress_bar

    run, site = _settings(data_dir, state_dir, run_config, val_fraction)
    bar = progress_bar(console)
    with bar:
        task = bar.add_task("training the diffusion model", total=None)
        try:
            generator = ensure_generator(
                site,
                run,
                progress=lambda step, total: bar.update(task, completed=step, total=total),
            )
        except Declined as exc:
            console.print(f"[red]cannot train: {exc}[/red]")
            raise typer.Exit(1) from None
    where = state_dir / MODEL_FILE
    if not generator.trained_now:
        console.print(f"generator already trained for these data and settings: {where}")
        return
    size, dp = generator.settings.image_size, generator.dp
    console.print(
        f"{generator.describe()} at {size}x{size}: {where}"
        + (f"; DP-SGD, site epsilon now {dp['epsilon_total']:.2f}" if dp else "")
    )


@synth_app.command("sample")
def sample(
    site_state: Path = typer.Option(..., help="The site's state folder (holds the generator)."),
    n: int = typer.Option(64, help="Pairs to draw."),
    out: Path = typer.Option(..., help="Folder for the grid, the pairs and the gate's verdict."),
    seed: int = typer.Option(0, help="Noise seed (same seed, same pairs)."),
    steps: int = typer.Option(0, help="DPM-Solver++ steps (0: the generator's setting)."),
    val_fraction: float = typer.Option(0.2, help="As the site's node_config val-fraction."),
    run_config: str = RUN_CONFIG,
) -> None:
    """Draw pairs from the site's generator, gate them, and write a PNG grid to look at."""
    from client.synthesis import MODEL_FILE, generator_data
    from common.data.prepared import load_cached
    from common.synth import diffusion
    from common.synth.mask_check import MaskRange
    from common.synth.memorisation import gate
    from common.synth.quality import pair_grid_png

    path = site_state / MODEL_FILE
    if not path.exists():
        console.print(f"[red]no generator at {path}: run fedsynth synth train first[/red]")
        raise typer.Exit(1)
    run, site = _settings(None, site_state, run_config, val_fraction)
    model, settings, _ = diffusion.load(path)
    caches = sorted((site_state / "cache").glob("site-*.npz"))
    if not caches:
        console.print(
            f"[red]no prepared data in {site_state}/cache: run fedsynth site prepare[/red]"
        )
        raise typer.Exit(1)
    train_data, val_data = generator_data(
        *load_cached(caches[-1]).split(val_fraction, seed=run.seed), run
    )
    with console.status(f"sampling {n} pairs"):
        images, masks = diffusion.sample(model, settings, n, seed=seed, steps=steps or None)
    plausible, outside = np.ones(len(masks), bool), {}
    if run.synth_mask_quantile:
        mask_range = MaskRange.of(
            train_data.masks, run.synth_mask_quantile, run.synth_mask_size_bins
        )
        plausible, outside = mask_range.check(masks)
    verdict = gate(images, train_data.images, val_data.images, run.synth_gate_quantile)
    out.mkdir(parents=True, exist_ok=True)
    keep = verdict.keep & plausible
    (out / "samples.png").write_bytes(
        pair_grid_png(
            train_data.images[:16].astype(np.float32),
            train_data.masks[:16],
            images[keep][:32],
            masks[keep][:32],
            rows_each=2,
        )
    )
    if (~keep).any():
        (out / "dropped.png").write_bytes(
            pair_grid_png(
                train_data.images[:8].astype(np.float32),
                train_data.masks[:8],
                images[~keep][:8],
                masks[~keep][:8],
                rows_each=1,
            )
        )
    np.savez_compressed(
        out / "samples.npz", images=images, masks=masks, released=keep, plausible=plausible
    )
    summary = {**verdict.summary(), "implausible": int((~plausible).sum()), "outside": outside}
    summary["released"] = int(keep.sum())
    (out / "gate.json").write_text(json.dumps(summary, indent=1))
    console.print(
        f"{summary['generated']} drawn, [bold]{summary['released']} would be released[/bold]: "
        f"{summary['implausible']} with masks unlike yours (structures or foreground outside "
        f"the central {1 - 2 * run.synth_mask_quantile:.0%} of your training masks), "
        f"{summary['dropped']} near-copies by the memorisation gate "
        f"(thresholds from {summary['thresholds_from']} images); "
        f"{summary['closer_than_holdout_median']} of samples are closer to a training image "
        "than the median held-out image is (about 0.5 when the model does not copy)"
    )
    from client.synthesis import release_quality

    quality = release_quality(images[keep], masks[keep], val_data)
    if quality:
        (out / "quality.json").write_text(json.dumps(quality, indent=1))
        console.print(
            f"against your validation images: two-sample accuracy "
            f"{quality['two-sample-accuracy']:.2f} (0.5: a classifier cannot tell them from "
            f"real; 1.0: it always can), mask foreground {quality['foreground-synthetic']:.3f} "
            f"synthetic vs {quality['foreground-real']:.3f} real"
        )
    console.print(f"look at {out / 'samples.png'} (your own images on top, samples below)")
