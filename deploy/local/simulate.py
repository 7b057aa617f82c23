"""``fedsynth simulate``: the same ServerApp and ClientApp on Flower's Simulation Engine.

Many virtual sites on one machine, for trying strategies and settings at a scale no
laptop could host as real SuperNodes. The sample consortium is generated with one folder
per virtual site; virtual site ``i`` finds its data through ``sim-data-root`` (see
``pyproject.toml``). Needs the ``simulation`` extra (Ray): ``pip install -e '.[simulation]'``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from rich.console import Console

from common.config import RunSettings, SiteSettings
from common.privacy import site_keys
from common.report import render
from deploy.local.consortium import LocalConsortium
from deploy.local.demo import (
    _ensure_data,
    _follow,
    _prepare,
    default_run_config,
    parse_overrides,
    pretrain_generator,
)
from deploy.local.phases import Phases


def run_simulation(
    workdir: Path,
    n_sites: int,
    rounds: int,
    cases_per_site: int,
    extra: str = "",
    console: Console | None = None,
) -> Path:
    """Run ``rounds`` rounds with ``n_sites`` virtual sites; return the report path.

    Args:
        workdir: folder for data, virtual site states and runs.
        n_sites: number of virtual sites (SuperNodes inside the Simulation Engine).
        rounds: federated rounds.
        cases_per_site: patients per virtual site (sample data).
        extra: more run_config overrides, ``'k=v k2=v2'``.
        console: where to print.
    """
    console = console or Console()
    if importlib.util.find_spec("ray") is None:
        raise RuntimeError("the Simulation Engine needs Ray: pip install -e '.[simulation]'")
    phases = Phases(console)
    data = workdir / "data"
    with phases("sample-data", resume="a re-run generates the sample data again"):
        manifest = _ensure_data(data, n_sites, cases_per_site, console)
    if len(manifest["sites"]) != n_sites:
        raise ValueError(
            f"{data} holds {len(manifest['sites'])} sites, not {n_sites}; use another --workdir"
        )
    run_dir = workdir / "runs" / f"sim-{n_sites}-sites"
    config = {
        **default_run_config(),
        "num-server-rounds": rounds,
        **parse_overrides(extra),
        "eval-dir": str(data / "heldout"),
        "out-dir": str(run_dir),
        "sim-data-root": str(data),
        "sim-state-root": str(workdir / "state"),
        "min-sites": n_sites,
        "registry": str(workdir / "registry"),
    }
    run = RunSettings.from_config(config)
    with phases("intake", resume="prepared sites keep their cache; a re-run goes on"):
        for site in manifest["sites"]:
            state = workdir / "state" / site["name"]
            _prepare(data / site["dir"], state, site["name"], run.image_size, console)
            site_keys.register(run.registry, site["name"], site_keys.load_or_create(state)[1])
        _prepare(
            data / "heldout", run_dir / "heldout-state", "held-out set", run.image_size, console
        )
    if run.share != "weights":
        with phases("generators", resume="trained generators are kept; a re-run goes on"):
            for site in manifest["sites"]:
                state = workdir / "state" / site["name"]
                virtual = SiteSettings(str(data / site["dir"]), str(state), site["name"])
                pretrain_generator(virtual, run, console)
    with phases("federated", resume="a re-run starts the simulation again"):
        with LocalConsortium(workdir / "flwr", [], simulation=True) as engine:
            run_id = engine.submit(config, federation_config={"num-supernodes": n_sites})
            console.print(f"simulation run {run_id}: {n_sites} virtual sites, {rounds} rounds")
            bar, tick = _follow(run_dir, rounds, console)
            with bar:
                status = engine.wait(run_id, timeout=rounds * run.round_timeout + 600, on_tick=tick)
    if status.get("status") != "finished:completed":
        raise RuntimeError(
            f"simulation run ended as {status.get('status')}: {status.get('status-details', '')}"
        )
    return render(run_dir)
