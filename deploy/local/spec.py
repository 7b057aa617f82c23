"""The consortium file: who takes part, what the coordinator tests on, and the run.

One TOML file describes a pilot consortium on this machine (``fedsynth consortium init``
writes a commented one; ``fedsynth consortium run FILE`` runs it)::

    workdir = "fedsynth-work"       # site states, Flower's homes and logs, runs
    engine = "deployment"           # deployment | simulation
    baselines = true                # also local-only and centralised models
    trainers = true                 # a warm trainer beside each SuperNode

    [[sites]]
    name = "hospital-a"
    data-dir = "data/hospital-a"
    node-config = { max-epsilon = 8.0 }   # optional: this site's own settings

    [heldout]
    data-dir = "data/heldout"       # kept at the coordinator

    [run-config]                    # overrides of the app's defaults
    num-server-rounds = 12

Paths are relative to the file. :func:`load` reads and checks it once, at the edge:
every error names the file, the key and what to do.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from common.errors import ConfigError

ENGINES = ("deployment", "simulation")
#: Node-config keys the consortium file sets itself for each site.
RESERVED_NODE_KEYS = ("site-name", "data-dir", "state-dir")

TEMPLATE = """\
# A FedSynth consortium on this machine: who takes part, what the coordinator tests on,
# and the run. Paths are relative to this file. Run it with:
#
#     fedsynth consortium run {name}
#
# Each site's folder is read in place and never changed: DICOM (images and SEG masks) or
# image folders (images/, masks/, optional masks2/ and fov/, an optional dataset.json with
# the camera's manufacturer and model). See the README's "Site data".

workdir = "fedsynth-work"   # site states (caches, secrets, ledgers), Flower's homes and logs, runs
engine = "deployment"       # deployment: a SuperLink and one SuperNode per site on localhost
                            # simulation: the same apps on Flower's Simulation Engine
baselines = true            # also train local-only and centralised models on the same data
trainers = true             # a warm trainer beside each SuperNode (deployment only)
{sites}
# What the coordinator tests the global model on, per vendor. Never a site's files: a
# file found in a site and here is an error.
[heldout]
data-dir = "{heldout}"

# Overrides of the app's defaults ([tool.flwr.app.config] in pyproject.toml; the README's
# "Settings" lists them all).
[run-config]
num-server-rounds = 12
image-size = 128
"""

SITE_TEMPLATE = """
[[sites]]
name = "{name}"
data-dir = "{data_dir}"
# node-config = {{ max-epsilon = 8.0 }}   # this site's own settings (its privacy budget...)
"""


@dataclass(frozen=True)
class SiteSpec:
    """One hospital: its name, its data folder, and its own node_config settings."""

    name: str
    data_dir: Path
    node_config: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ConsortiumSpec:
    """A consortium file, read and checked (:func:`load`)."""

    path: Path
    workdir: Path
    sites: tuple[SiteSpec, ...]
    heldout: Path
    run_config: dict
    engine: str = "deployment"
    baselines: bool = True
    trainers: bool = True

    def state_dir(self, site: SiteSpec) -> Path:
        """Where ``site`` keeps its state (prepared cache, secret, ledger)."""
        return self.workdir / "state" / site.name


def template(path: Path, sites: list[tuple[str, str]], heldout: str) -> str:
    """The text of a commented consortium file.

    Args:
        path: where it will be written (named in the comment that says how to run it).
        sites: ``(name, data dir)`` per site; two placeholders when empty.
        heldout: the held-out folder.
    """
    sites = sites or [("hospital-a", "data/hospital-a"), ("hospital-b", "data/hospital-b")]
    text = "".join(SITE_TEMPLATE.format(name=n, data_dir=d) for n, d in sites)
    return TEMPLATE.format(name=Path(path).name, sites=text, heldout=heldout or "data/heldout")


def _key(table: dict, key: str, kind, where: str, default=None):
    if key not in table:
        if default is None:
            raise ConfigError(f"{where}: `{key}` is missing")
        return default
    value = table[key]
    if not isinstance(value, kind):
        raise ConfigError(f"{where}: `{key}` = {value!r} is not a {kind.__name__}")
    return value


def _folder(base: Path, value: str, where: str) -> Path:
    path = (base / value).resolve()
    if not path.is_dir():
        raise ConfigError(
            f"{where}: data-dir {path} does not exist or is not a folder; fix the path "
            "(relative to the consortium file)"
        )
    return path


def load(path: Path, engine: str | None = None, overrides: dict | None = None) -> ConsortiumSpec:
    """Read and check a consortium file.

    Args:
        path: the TOML file.
        engine: overrides the file's ``engine``.
        overrides: run-config overrides on top of the file's ``[run-config]``.

    Raises:
        ConfigError: the file cannot be read, a key is missing or of the wrong type, a
            folder does not exist, two sites share a name or a folder, an engine is
            unknown; the message names the file and the key.
    """
    path = Path(path).resolve()
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"consortium file {path} not found; `fedsynth consortium init {path}` writes one"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"consortium file {path} is not valid TOML: {exc}") from None
    base = path.parent
    where = f"consortium file {path}"
    known = {"workdir", "engine", "baselines", "trainers", "sites", "heldout", "run-config"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    engine = engine or _key(raw, "engine", str, where, "deployment")
    if engine not in ENGINES:
        raise ConfigError(f"{where}: engine {engine!r} is not one of {list(ENGINES)}")
    tables = raw.get("sites")
    if not isinstance(tables, list) or not tables:
        raise ConfigError(f"{where}: no [[sites]]; add one [[sites]] table per hospital")
    sites, names, dirs = [], set(), {}
    for index, table in enumerate(tables, start=1):
        here = f"{where}, site {index}"
        name = _key(table, "name", str, here)
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise ConfigError(f"{here}: name {name!r} must be letters, digits, '-', '_' or '.'")
        if name in names:
            raise ConfigError(f"{here}: two sites are named {name!r}")
        data_dir = _folder(base, _key(table, "data-dir", str, here), f"{here} ({name})")
        if data_dir in dirs:
            raise ConfigError(f"{here}: {name} and {dirs[data_dir]} read the same folder")
        node_config = dict(_key(table, "node-config", dict, here, {}))
        clash = sorted(set(node_config) & set(RESERVED_NODE_KEYS))
        if clash:
            raise ConfigError(
                f"{here}: node-config sets {clash}; the consortium file sets them itself"
            )
        names.add(name)
        dirs[data_dir] = name
        sites.append(SiteSpec(name, data_dir, node_config))
    heldout_table = raw.get("heldout")
    if not isinstance(heldout_table, dict):
        raise ConfigError(f"{where}: no [heldout] table with the coordinator's data-dir")
    heldout = _folder(base, _key(heldout_table, "data-dir", str, f"{where}, [heldout]"), where)
    if heldout in dirs:
        raise ConfigError(f"{where}: the held-out set is {dirs[heldout]}'s own folder")
    run_config = {**dict(raw.get("run-config", {})), **(overrides or {})}
    return ConsortiumSpec(
        path=path,
        workdir=(base / _key(raw, "workdir", str, where, "fedsynth-work")).resolve(),
        sites=tuple(sites),
        heldout=heldout,
        run_config=run_config,
        engine=engine,
        baselines=_key(raw, "baselines", bool, where, True),
        trainers=_key(raw, "trainers", bool, where, True),
    )


def _hashes(folder: Path) -> dict[str, Path]:
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != "dataset.json":
            digest = hashlib.sha256()
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
            out.setdefault(digest.hexdigest(), p)
    return out


def check_heldout_apart(spec: ConsortiumSpec) -> None:
    """Refuse a held-out set that shares a file (same bytes) with a site.

    A held-out image a site also trains on makes every held-out score a lie.

    Raises:
        ConfigError: naming the site, how many files are shared and one of them.
    """
    heldout = _hashes(spec.heldout)
    for site in spec.sites:
        shared = [p for h, p in _hashes(site.data_dir).items() if h in heldout]
        if shared:
            raise ConfigError(
                f"the held-out set {spec.heldout} shares {len(shared)} file(s) with site "
                f"{site.name} (same bytes; e.g. {shared[0].relative_to(site.data_dir)}): "
                "held-out scores would count images the site trains on. Take them out of "
                "one of the two folders"
            )
