"""``fedsynth demo``: sample sites -> intake -> federated rounds -> per-vendor report.

1. Generate the sample consortium in ``WORKDIR/data`` unless it is already there.
2. Prepare every site ahead of the run (de-identify, check, cache) and show what was
   rejected or quarantined; prepare the coordinator's held-out set the same way.
3. Start a SuperLink and one SuperNode per site (:mod:`deploy.local.consortium`), submit the run
   with ``flwr run``, show progress per round, stop every process.
4. Train the local-only and centralised baselines on the same data and epochs, add them
   to the run's report, and print the results table.
"""

from __future__ import annotations

import json
import time
import tomllib
from pathlib import Path

from rich.console import Console

from common.config import RunSettings, SiteSettings
from common.data.arrays import SiteArrays
from common.data.intake import prepare_site
from common.data.prepared import load_cached
from common.deid.pseudonyms import SECRET_FILE
from common.privacy import site_keys
from common.report import BASELINES_FILE, METRICS_FILE, render
from deploy.cli.views import print_intake, print_results, progress_bar
from deploy.local.consortium import LocalConsortium, SiteNode, app_dir
from deploy.local.phases import Phases


def default_run_config() -> dict:
    """``[tool.flwr.app.config]`` from the app's pyproject.toml."""
    with open(app_dir() / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["flwr"]["app"]["config"]


def parse_overrides(text: str) -> dict:
    """``'a=1 b="x"'`` -> ``{"a": 1, "b": "x"}`` (TOML values, as ``flwr run --run-config``)."""
    if not text.strip():
        return {}
    import shlex

    out = {}
    for pair in shlex.split(text, posix=False):
        if "=" not in pair:
            raise ValueError(f"run-config override {pair!r} is not key=value")
        try:
            out.update(tomllib.loads(pair.replace("=", " = ", 1)))
        except tomllib.TOMLDecodeError:
            key, value = pair.split("=", 1)
            raise ValueError(
                f"run-config override {pair!r}: {value!r} is not a TOML value; "
                f'quote strings, as in {key}="{value}"'
            ) from None
    return out


def _ensure_data(data: Path, n_sites: int, cases_per_site: int, console: Console) -> dict:
    from common.data.sampledata import count_cases, write_consortium

    manifest = data / "manifest.json"
    if manifest.exists():
        console.print(f"sample consortium: {data} (already there)")
        return json.loads(manifest.read_text())
    with progress_bar(console) as bar:
        task = bar.add_task(
            "generating sample DICOM", total=count_cases(n_sites, cases_per_site, 16)
        )
        return write_consortium(
            data, n_sites, cases_per_site, 16, progress=lambda n: bar.advance(task, n)
        )


def pretrain_generator(site: SiteSettings, run: RunSettings, console: Console) -> float:
    """Train a site's generator before the run, as a hospital does with ``fedsynth synth
    train`` (a round then only samples from it); returns the training seconds (0: reused)."""
    from client.synthesis import ensure_generator

    with progress_bar(console) as bar:
        task = bar.add_task(f"{site.site_name}: diffusion model", total=None)
        _, settings, _, seconds, trained = ensure_generator(
            site, run, progress=lambda step, total: bar.update(task, completed=step, total=total)
        )
    if trained:
        console.print(
            f"{site.site_name}: generator trained, {settings.train_steps} steps in {seconds:.0f} s"
        )
    return seconds


def _prepare(data: Path, state: Path, label: str, image_size: int, console: Console):
    with progress_bar(console) as bar:
        task = bar.add_task(f"intake {label}", total=None)

        def progress(total=None, advance=0):
            if total is not None:
                bar.update(task, total=total)
            bar.advance(task, advance)

        # The demo's work folder holds its own new sites: their secrets are made here.
        new = not (Path(state) / SECRET_FILE).exists()
        arrays, report = prepare_site(data, state, image_size, progress=progress, new_secret=new)
    print_intake(console, report, label)
    return arrays, report


def _follow(run_dir: Path, rounds: int, console: Console):
    """A progress bar over rounds, fed by the run's metrics.jsonl."""
    bar = progress_bar(console)
    task = bar.add_task("federated rounds", total=rounds)

    def tick() -> None:
        path = run_dir / METRICS_FILE
        if not path.exists():
            return
        lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        done = [x for x in lines if x["round"] > 0]
        desc = "federated rounds"
        if done and done[-1].get("heldout"):
            desc += f" (held-out Dice {done[-1]['heldout']['overall']['dice']:.3f})"
        bar.update(task, completed=len(done), description=desc)

    return bar, tick


def run_demo(
    workdir: Path,
    overrides: dict,
    extra: str = "",
    n_sites: int = 3,
    cases_per_site: int = 40,
    baselines: bool = True,
    trainers: bool = True,
    console: Console | None = None,
) -> Path:
    """Run the whole demo; return the path of the report.

    Args:
        workdir: folder for data, site states, Flower processes and runs.
        overrides: run_config overrides (e.g. ``{"num-server-rounds": 5}``).
        extra: more overrides as ``'k=v k2=v2'``.
        n_sites: hospitals, when the sample consortium is generated.
        cases_per_site: patients per hospital, when generated.
        baselines: also train and report local-only and centralised models.
        trainers: start a warm site trainer (:mod:`client.trainer`) beside each SuperNode.
        console: where to print.

    Returns:
        Path of ``report.html``.
    """
    console = console or Console()
    phases = Phases(console)
    config = {**default_run_config(), **overrides, **parse_overrides(extra)}
    run_dir = workdir / "runs" / time.strftime("%Y%m%d-%H%M%S")
    config["out-dir"] = str(run_dir)
    config["eval-dir"] = str(workdir / "data" / "heldout")
    config.setdefault("registry", str(workdir / "registry"))
    run = RunSettings.from_config(config)

    with phases("sample-data", resume="a re-run generates the sample data again"):
        manifest = _ensure_data(workdir / "data", n_sites, cases_per_site, console)
    with phases("intake", resume="prepared sites keep their cache; a re-run goes on"):
        nodes = []
        for site in manifest["sites"]:
            state = workdir / "state" / site["name"]
            _prepare(workdir / "data" / site["dir"], state, site["name"], run.image_size, console)
            if run.registry:  # the coordinator registers each site's ledger key
                site_keys.register(run.registry, site["name"], site_keys.load_or_create(state)[1])
            nodes.append(
                SiteNode(
                    site["name"],
                    {
                        "site-name": site["name"],
                        "data-dir": str(workdir / "data" / site["dir"]),
                        "state-dir": str(state),
                    },
                    trainer=trainers,
                )
            )
        _prepare(
            Path(run.eval_dir),
            run_dir / "heldout-state",
            "coordinator's held-out set",
            run.image_size,
            console,
        )
    if run.share != "weights":  # each hospital trains its generator before the run
        with phases("generators", resume="trained generators are kept; a re-run goes on"):
            for node in nodes:
                cfg = node.node_config
                site = SiteSettings(cfg["data-dir"], cfg["state-dir"], node.name)
                pretrain_generator(site, run, console)

    with phases("federated", resume="a re-run starts a new run"):
        console.print(
            f"starting a SuperLink and {len(nodes)} SuperNodes on localhost; "
            f"logs in {workdir / 'flwr' / 'logs'}"
        )
        with LocalConsortium(workdir / "flwr", nodes) as consortium:
            run_id = consortium.submit(config)
            console.print(
                f"run {run_id} submitted: {run.num_server_rounds} rounds of "
                f"{run.strategy}, {run.local_epochs} local epoch(s) per round"
            )
            bar, tick = _follow(run_dir, run.num_server_rounds, console)
            with bar:
                status = consortium.wait(
                    run_id, timeout=run.num_server_rounds * run.round_timeout + 300, on_tick=tick
                )
    if status.get("status") != "finished:completed":
        raise RuntimeError(
            f"run {run_id} ended as {status.get('status')}: "
            f"{status.get('status-details', '')}; see "
            f"{workdir / 'flwr' / 'logs' / f'run-{run_id}.log'}"
        )
    if baselines:
        resume = f"the federated run is kept: `fedsynth baselines {run_dir} ...` adds them"
        with phases("baselines", resume=resume):
            add_baselines(
                run_dir, [workdir / "state" / s["name"] for s in manifest["sites"]], console, run
            )
    timings = {**phases.timings, "total": phases.total()}
    (run_dir / "timings.json").write_text(json.dumps(timings, indent=2))
    print_results(console, run_dir)
    console.print("wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    return render(run_dir)


def _site_train_arrays(
    state_dir: Path, run: RunSettings, val_fraction: float = SiteSettings.val_fraction
) -> SiteArrays:
    cache = Path(state_dir) / "cache" / f"site-{run.image_size}.npz"
    if not cache.exists():
        raise FileNotFoundError(f"no prepared cache at {cache}; run `fedsynth site prepare` first")
    return load_cached(cache).split(val_fraction, seed=run.seed)[0]


def add_baselines(
    run_dir: Path, site_states: list[Path], console: Console, run: RunSettings | None = None
) -> Path:
    """Train local-only and centralised baselines for a finished run; update its report.

    Args:
        run_dir: the run's output folder (holds run.json and heldout-state/).
        site_states: each site's state dir (holding its prepared cache).
        console: where to print progress.
        run: the run's settings (read from ``run.json`` when omitted).

    Returns:
        Path of the re-rendered report.
    """
    from common.baselines import run_baselines

    run_dir = Path(run_dir)
    if run is None:
        saved = json.loads((run_dir / "run.json").read_text())
        run = RunSettings.from_config(
            {
                k: v
                for k, v in saved.items()
                if k.replace("-", "_") in RunSettings.__dataclass_fields__
            }
        )
    heldout = load_cached(run_dir / "heldout-state" / "cache" / f"site-{run.image_size}.npz")
    sites = {Path(s).name: _site_train_arrays(Path(s), run) for s in site_states}
    with progress_bar(console) as bar:
        task = bar.add_task("baselines", total=len(sites) + 1)
        first = [True]

        def step(label: str) -> None:
            if not first[0]:
                bar.advance(task)
            first[0] = False
            bar.update(task, description=f"baseline: {label}")

        result = run_baselines(sites, heldout, run, progress=step)
        bar.update(task, completed=len(sites) + 1)
    (run_dir / BASELINES_FILE).write_text(json.dumps(result, indent=2))
    return render(run_dir)
