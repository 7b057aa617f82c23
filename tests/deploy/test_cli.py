from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from deploy import cli
from deploy.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console():
    """Rich wraps at the terminal width; a wide console keeps table cells on one line."""
    width = cli.console.width
    cli.console.width = 250
    yield
    cli.console.width = width


def test_sample_data_then_site_prepare(tmp_path):
    out = tmp_path / "data"
    res = runner.invoke(
        app,
        [
            "sample-data",
            str(out),
            "--sites",
            "2",
            "--cases-per-site",
            "4",
            "--heldout-per-vendor",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "no site has it" in res.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["cases"] for s in manifest["sites"]] == [4, 4]

    res = runner.invoke(
        app,
        [
            "site",
            "prepare",
            "--data-dir",
            str(out / "site-2"),
            "--state-dir",
            str(tmp_path / "state"),
            "--image-size",
            "64",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "4 usable cases" in res.output
    assert "README.txt" in res.output and "not a DICOM file" in res.output
    assert (tmp_path / "state" / "intake_report.json").exists()


def test_site_prepare_exit_codes(tmp_path):
    res = runner.invoke(
        app,
        [
            "site",
            "prepare",
            "--data-dir",
            str(tmp_path / "missing"),
            "--state-dir",
            str(tmp_path / "s"),
        ],
    )
    assert res.exit_code == 2 and "does not exist" in res.output
    (tmp_path / "empty").mkdir()
    res = runner.invoke(
        app,
        [
            "site",
            "prepare",
            "--data-dir",
            str(tmp_path / "empty"),
            "--state-dir",
            str(tmp_path / "s"),
        ],
    )
    assert res.exit_code == 1 and "decline" in res.output


def test_run_config_overrides_are_toml_and_unquoted_strings_are_explained():
    import pytest

    from deploy.demo import parse_overrides

    assert parse_overrides('dp="local" dp-epsilon=3.0 num-server-rounds=2') == {
        "dp": "local",
        "dp-epsilon": 3.0,
        "num-server-rounds": 2,
    }
    with pytest.raises(ValueError, match='quote strings, as in dp="local"'):
        parse_overrides("dp=local")
