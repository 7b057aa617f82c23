"""``fedsynth demo``: generate the sample data, write its consortium file, run it.

1. Generate the sample consortium in ``WORKDIR/data`` unless it is already there.
2. Write ``WORKDIR/consortium.toml`` for it, as a coordinator writes one for their own
   folders (``fedsynth consortium init``).
3. Run it (:func:`deploy.local.runner.run_consortium`): intake of every site and of the
   held-out set, a SuperLink and one SuperNode per site on localhost, the federated run,
   local-only and centralised baselines, the per-vendor report.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from deploy.cli.views import progress_bar
from deploy.local.consortium import toml_value
from deploy.local.phases import Phases
from deploy.local.runner import parse_overrides, run_consortium
from deploy.local.spec import load


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


def write_consortium_file(
    workdir: Path,
    manifest: dict,
    run_config: dict,
    baselines: bool = True,
    trainers: bool = True,
    engine: str = "deployment",
) -> Path:
    """The sample consortium's file (``WORKDIR/consortium.toml``), as a coordinator would
    write one for their own folders; returns its path."""
    lines = [
        "# The built-in sample consortium, written by `fedsynth demo` or `fedsynth simulate`.",
        'workdir = "."',
        f'engine = "{engine}"',
        f"baselines = {str(baselines).lower()}",
        f"trainers = {str(trainers).lower()}",
    ]
    for site in manifest["sites"]:
        lines += ["", "[[sites]]", f'name = "{site["name"]}"', f'data-dir = "data/{site["dir"]}"']
    lines += ["", "[heldout]", 'data-dir = "data/heldout"', "", "[run-config]"]
    lines += [f"{key} = {toml_value(value)}" for key, value in run_config.items()]
    path = workdir / "consortium.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


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
    """Generate the sample data, write its consortium file, run it; return the report.

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
    with phases("sample-data", resume="a re-run generates the sample data again"):
        manifest = _ensure_data(workdir / "data", n_sites, cases_per_site, console)
    run_config = {**overrides, **parse_overrides(extra)}
    path = write_consortium_file(workdir, manifest, run_config, baselines, trainers)
    return run_consortium(load(path), console, phases)
