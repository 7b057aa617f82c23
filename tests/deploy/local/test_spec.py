"""The consortium file: read once, checked, and every error names what to fix."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from common.errors import ConfigError
from deploy.local.spec import check_heldout_apart, load, template


def _folders(root: Path, *names: str) -> None:
    for name in names:
        (root / name).mkdir(parents=True, exist_ok=True)


def test_the_template_reads_back_with_paths_relative_to_the_file(tmp_path):
    _folders(tmp_path, "data/north", "data/south", "data/heldout")
    path = tmp_path / "pilot.toml"
    path.write_text(
        template(path, [("north", "data/north"), ("south", "data/south")], "data/heldout")
    )
    spec = load(path, overrides={"num-server-rounds": 3})
    assert [s.name for s in spec.sites] == ["north", "south"]
    assert spec.sites[0].data_dir == (tmp_path / "data/north").resolve()
    assert spec.heldout == (tmp_path / "data/heldout").resolve()
    assert spec.workdir == (tmp_path / "fedsynth-work").resolve()
    assert spec.run_config == {"num-server-rounds": 3, "image-size": 128}
    assert spec.engine == "deployment" and spec.baselines and spec.trainers
    assert load(path, engine="simulation").engine == "simulation"
    assert spec.state_dir(spec.sites[1]) == spec.workdir / "state" / "south"


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(body)
    return path


SITES = '[[sites]]\nname = "a"\ndata-dir = "a"\n[[sites]]\nname = "b"\ndata-dir = "b"\n'


@pytest.mark.parametrize(
    "body, message",
    [
        (SITES + '[heldout]\ndata-dir = "nowhere"\n', r"data-dir .*nowhere does not exist"),
        ('[heldout]\ndata-dir = "h"\n', r"no \[\[sites\]\]"),
        (SITES, r"no \[heldout\]"),
        (
            SITES.replace('"b"\ndata-dir', '"a"\ndata-dir') + '[heldout]\ndata-dir = "h"\n',
            "two sites are named 'a'",
        ),
        (
            SITES.replace('data-dir = "b"', 'data-dir = "a"') + '[heldout]\ndata-dir = "h"\n',
            "b and a read the same folder",
        ),
        (SITES + '[heldout]\ndata-dir = "a"\n', "held-out set is a's own folder"),
        (
            'engine = "cloud"\n' + SITES + '[heldout]\ndata-dir = "h"\n',
            "engine 'cloud' is not one of",
        ),
        (
            'colour = "rgb"\n' + SITES + '[heldout]\ndata-dir = "h"\n',
            r"unknown key\(s\) \['colour'\]",
        ),
        (
            SITES + 'node-config = { data-dir = "x" }\n[heldout]\ndata-dir = "h"\n',
            "sets \\['data-dir'\\]; the consortium file sets them itself",
        ),
        (SITES + "[heldout]\ndata-dir = 3\n", "`data-dir` = 3 is not a str"),
        ("[[sites]\n", "not valid TOML"),
    ],
)
def test_a_bad_file_is_refused_with_what_to_fix(tmp_path, body, message):
    _folders(tmp_path, "a", "b", "h")
    with pytest.raises(ConfigError, match=message):
        load(_write(tmp_path, body))


def test_a_missing_file_says_how_to_make_one(tmp_path):
    with pytest.raises(ConfigError, match="fedsynth consortium init"):
        load(tmp_path / "absent.toml")


def test_a_heldout_set_sharing_a_file_with_a_site_is_refused(tiny_consortium, tmp_path):
    data, _ = tiny_consortium
    shutil.copytree(data / "site-1", tmp_path / "north")
    shutil.copytree(data / "heldout", tmp_path / "heldout")
    path = _write(
        tmp_path, '[[sites]]\nname = "north"\ndata-dir = "north"\n[heldout]\ndata-dir = "heldout"\n'
    )
    check_heldout_apart(load(path))  # apart: nothing raised
    leaked = next(p for p in (tmp_path / "north").rglob("*.dcm"))
    shutil.copy(leaked, tmp_path / "heldout" / "copied.dcm")
    with pytest.raises(ConfigError, match="shares 1 file\\(s\\) with site north"):
        check_heldout_apart(load(path))
