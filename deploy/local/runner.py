"""Run a consortium file on this machine: intake, generators, federated rounds, baselines.

``fedsynth consortium run FILE`` and ``fedsynth demo`` (which first writes the sample
data and its consortium file) both come here. In order, each a named phase (a stop says
which, and what a re-run does):

1. **intake**: the held-out set is checked apart from every site (no file in both);
   every site is prepared as its hospital would (``fedsynth site prepare``: de-identify,
   check, cache), and so is the held-out set; a site with nothing usable stops the run
   with its counts; each site's ledger key is registered with the coordinator;
2. **generators** (``share`` not ``weights``): each site trains its generator;
3. **federated**: ``deployment`` starts a SuperLink and one SuperNode (and a warm trainer)
   per site on localhost (:mod:`deploy.local.consortium`); ``simulation`` runs the same
   apps on Flower's Simulation Engine, where virtual site *i* is the *i*-th site of the
   file (its ledger names it ``site-i``);
4. **baselines**: local-only and centralised models on the same data and epochs.

The report (``RUN_DIR/report.html``) holds the per-vendor results of all of them.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import time
import tomllib
from pathlib import Path

from rich.console import Console

from common.config import RunSettings, SiteSettings
from common.data.arrays import SiteArrays
from common.data.intake import prepare_site
from common.data.prepared import load_cached
from common.deid.pseudonyms import SECRET_FILE
from common.errors import ConfigError
from common.privacy import site_keys
from common.report import BASELINES_FILE, METRICS_FILE, render
from deploy.cli.views import print_intake, print_results, progress_bar
from deploy.local.consortium import LocalConsortium, SiteNode, app_dir
from deploy.local.phases import Phases
from deploy.local.spec import ConsortiumSpec, check_heldout_apart


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


def generator_sites(nodes, run: RunSettings, console: Console) -> list[SiteSettings]:
    """The sites that train a generator before the run: every one but those whose own
    node_config says ``share-synthetic = false`` (they would decline every release)."""
    out = []
    for node in nodes:
        site = SiteSettings.from_config(node.node_config, run)
        if site.share_synthetic:
            out.append(site)
        else:
            console.print(f"{node.name}: shares no synthetic pairs (its node_config); no generator")
    return out


def pretrain_generator(site: SiteSettings, run: RunSettings, console: Console) -> float:
    """Train a site's generator before the run, as a hospital does with ``fedsynth synth
    train`` (a round then only samples from it); returns the training seconds (0: reused)."""
    from client.synthesis import ensure_generator

    with progress_bar(console) as bar:
        task = bar.add_task(f"{site.site_name}: diffusion model", total=None)
        generator = ensure_generator(
            site, run, progress=lambda step, total: bar.update(task, completed=step, total=total)
        )
    if generator.trained_now:
        console.print(f"{site.site_name}: generator {generator.describe()}")
    return generator.seconds


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


def _usable(report, label: str, folder: Path, state: Path) -> None:
    if report.cases == 0:
        counts = report.counts()
        raise ConfigError(
            f"{label}: nothing usable in {folder} ({counts.get('rejected', 0)} rejected, "
            f"{counts.get('quarantined', 0)} quarantined of {counts.get('total', 0)} files); "
            f"the reasons are in {state / 'intake_report.json'}"
        )


def run_consortium(
    spec: ConsortiumSpec, console: Console | None = None, phases: Phases | None = None
) -> Path:
    """Run a consortium file's sites, held-out set and run; return the report's path.

    Args:
        spec: the checked consortium file (:func:`deploy.local.spec.load`).
        console: where to print.
        phases: the phases so far (the demo's sample data); a new record when None.

    Raises:
        ConfigError: a bad run-config or node-config value, a held-out set that shares a
            file with a site, a site or held-out set with nothing usable.
        RuntimeError: the federated run did not complete (the message names its log).
    """
    console = console or Console()
    phases = phases or Phases(console)
    workdir = spec.workdir
    run_dir = workdir / "runs" / time.strftime("%Y%m%d-%H%M%S")
    config = {**default_run_config(), **spec.run_config}
    config["out-dir"] = str(run_dir)
    config["eval-dir"] = str(spec.heldout)
    config.setdefault("registry", str(workdir / "registry"))
    run = RunSettings.from_config(config)
    nodes = []
    for site in spec.sites:
        node_config = {
            "site-name": site.name,
            "data-dir": str(site.data_dir),
            "state-dir": str(spec.state_dir(site)),
            **site.node_config,
        }
        SiteSettings.from_config(node_config, run)  # a bad value stops here, named
        nodes.append(SiteNode(site.name, node_config, trainer=spec.trainers))
    if spec.engine == "simulation" and importlib.util.find_spec("ray") is None:
        raise RuntimeError("the Simulation Engine needs Ray: pip install -e '.[simulation]'")

    with phases("intake", resume="prepared sites keep their cache; a re-run goes on"):
        check_heldout_apart(spec)
        for index, site in enumerate(spec.sites, start=1):
            state = spec.state_dir(site)
            _, report = _prepare(site.data_dir, state, site.name, run.image_size, console)
            _usable(report, f"site {site.name}", site.data_dir, state)
            if run.registry:  # the coordinator registers each site's ledger key
                name = f"site-{index}" if spec.engine == "simulation" else site.name
                site_keys.register(run.registry, name, site_keys.load_or_create(state)[1])
        # The coordinator prepares its held-out set once per workdir; each run gets its own
        # copy (the server reads it from the run folder and finds it prepared).
        held = workdir / "heldout-state"
        _, report = _prepare(
            spec.heldout, held, "coordinator's held-out set", run.image_size, console
        )
        _usable(report, "the held-out set", spec.heldout, held)
        shutil.copytree(
            held, run_dir / "heldout-state", ignore=shutil.ignore_patterns("quarantine")
        )
    if run.share != "weights":  # each hospital trains its generator before the run
        with phases("generators", resume="trained generators are kept; a re-run goes on"):
            for site in generator_sites(nodes, run, console):
                pretrain_generator(site, run, console)

    with phases("federated", resume="a re-run starts a new run"):
        if spec.engine == "simulation":
            status, run_id = _simulate(spec, config, run, run_dir, console)
        else:
            status, run_id = _deploy(spec, nodes, config, run, run_dir, console)
    if status.get("status") != "finished:completed":
        raise RuntimeError(
            f"run {run_id} ended as {status.get('status')}: "
            f"{status.get('status-details', '')}; see "
            f"{workdir / 'flwr' / 'logs' / f'run-{run_id}.log'}"
        )
    if spec.baselines:
        resume = f"the federated run is kept: `fedsynth baselines {run_dir} ...` adds them"
        # torch's import runs C++ code that a signal arriving mid-import aborts (no clean
        # stop, no message): import it before the phase begins, where a stop is handled
        import torch  # noqa: F401

        with phases("baselines", resume=resume):
            add_baselines(run_dir, [spec.state_dir(s) for s in spec.sites], console, run)
    timings = {**phases.timings, "total": phases.total()}
    (run_dir / "timings.json").write_text(json.dumps(timings, indent=2))
    print_results(console, run_dir)
    console.print("wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    return render(run_dir)


def _deploy(spec, nodes, config, run, run_dir, console):
    console.print(
        f"starting a SuperLink and {len(nodes)} SuperNodes on localhost; "
        f"logs in {spec.workdir / 'flwr' / 'logs'}"
    )
    with LocalConsortium(spec.workdir / "flwr", nodes) as consortium:
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
    return status, run_id


def _link(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        if link.resolve() == target.resolve():
            return
        link.unlink()
    link.symlink_to(target, target_is_directory=True)


def _simulate(spec, config, run, run_dir, console):
    """Virtual site i reads SIM-DATA-ROOT/site-i: links to the file's i-th site."""
    data_root, state_root = spec.workdir / "sim" / "data", spec.workdir / "sim" / "state"
    for index, site in enumerate(spec.sites, start=1):
        _link(data_root / f"site-{index}", site.data_dir)
        _link(state_root / f"site-{index}", spec.state_dir(site))
    config = {**config, "sim-data-root": str(data_root), "sim-state-root": str(state_root)}
    own = {f"site-{i}": s.node_config for i, s in enumerate(spec.sites, start=1) if s.node_config}
    if own:  # a virtual SuperNode has no node_config of its own: carry each site's here
        config["sim-node-config"] = json.dumps(own, sort_keys=True)
    n = len(spec.sites)
    with LocalConsortium(spec.workdir / "flwr", [], simulation=True) as engine:
        run_id = engine.submit(config, federation_config={"num-supernodes": n})
        console.print(f"simulation run {run_id}: {n} virtual sites, {run.num_server_rounds} rounds")
        bar, tick = _follow(run_dir, run.num_server_rounds, console)
        with bar:
            status = engine.wait(
                run_id, timeout=run.num_server_rounds * run.round_timeout + 600, on_tick=tick
            )
    return status, run_id
