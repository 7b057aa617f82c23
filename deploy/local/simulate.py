"""``fedsynth simulate``: the same ServerApp and ClientApp on Flower's Simulation Engine.

Many virtual sites on one machine, for trying strategies and settings at a scale no
laptop could host as real SuperNodes. The sample consortium is generated with one folder
per virtual site and written as a consortium file with ``engine = "simulation"``
(``WORKDIR/consortium.toml``), then run like any consortium file
(:func:`deploy.local.runner.run_consortium`); virtual site ``i`` is the file's ``i``-th
site. Needs the ``simulation`` extra (Ray): ``pip install -e '.[simulation]'``.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from deploy.local.demo import _ensure_data, write_consortium_file
from deploy.local.phases import Phases
from deploy.local.runner import parse_overrides, run_consortium
from deploy.local.spec import load


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
    phases = Phases(console)
    data = workdir / "data"
    with phases("sample-data", resume="a re-run generates the sample data again"):
        manifest = _ensure_data(data, n_sites, cases_per_site, console)
    if len(manifest["sites"]) != n_sites:
        raise ValueError(
            f"{data} holds {len(manifest['sites'])} sites, not {n_sites}; use another --workdir"
        )
    run_config = {"num-server-rounds": rounds, **parse_overrides(extra), "min-sites": n_sites}
    path = write_consortium_file(
        workdir, manifest, run_config, baselines=False, trainers=False, engine="simulation"
    )
    return run_consortium(load(path), console, phases)
