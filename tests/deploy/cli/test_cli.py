from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from deploy.cli import main
from deploy.cli.main import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console():
    """Rich wraps at the terminal width; a wide console keeps table cells on one line."""
    width = main.console.width
    main.console.width = 250
    yield
    main.console.width = width


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

    prepare = ["site", "prepare", "--data-dir", str(out / "site-2")]
    prepare += ["--state-dir", str(tmp_path / "state"), "--image-size", "64"]
    # A site secret is never made by accident: a new site says so, once.
    res = runner.invoke(app, prepare)
    assert res.exit_code == 2 and "no site secret at" in res.output, res.output
    assert not (tmp_path / "state").exists() or not list((tmp_path / "state").iterdir())
    res = runner.invoke(app, [*prepare, "--new-secret"])
    assert res.exit_code == 0, res.output
    assert "4 usable cases" in res.output
    # 4 cases, none held back below 5: a DP run would teach nothing, and it says so
    assert 'privacy, if the run uses dp="local": no learning (4 patients' in res.output
    secret = (tmp_path / "state" / "site.secret").read_bytes()
    res = runner.invoke(app, [*prepare, "--new-secret", "--force"])
    assert res.exit_code == 2 and "never replaced" in res.output
    assert (tmp_path / "state" / "site.secret").read_bytes() == secret
    res = runner.invoke(app, [*prepare, "--force"])
    assert res.exit_code == 0, res.output
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
            "--new-secret",
        ],
    )
    assert res.exit_code == 1 and "decline" in res.output


def test_run_config_overrides_are_toml_and_unquoted_strings_are_explained():
    import pytest

    from deploy.local.runner import parse_overrides

    assert parse_overrides('dp="local" dp-epsilon=3.0 num-server-rounds=2') == {
        "dp": "local",
        "dp-epsilon": 3.0,
        "num-server-rounds": 2,
    }
    with pytest.raises(ValueError, match='quote strings, as in dp="local"'):
        parse_overrides("dp=local")


def test_anonymize_explain_names_the_rule_and_shows_no_text(tiny_consortium):
    from common.deid import burned_in

    out, manifest = tiny_consortium
    image = next((out / "site-1").glob("*/image.dcm"))  # Northwind DX, BIA NO
    res = runner.invoke(app, ["anonymize", "--explain", str(image)])
    assert res.exit_code == 0, res.output
    assert (
        "check: fast" in res.output
        and "no glyph-like lines" in res.output
        and f"recipe {burned_in.recipe().version}" in res.output
    )
    burned = [p for p in (out / "site-2").glob("*/image.dcm")]  # Helios: a known band
    res = runner.invoke(app, ["anonymize", "--explain", str(burned[0])])
    assert res.exit_code == 0 and "known text band for Helios Medical" in res.output
    assert "Doe" not in res.output and "MRN" not in res.output
    res = runner.invoke(app, ["anonymize"])
    assert res.exit_code == 2 and "--explain FILE" in res.output
