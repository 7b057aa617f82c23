"""`fedsynth audit` and `fedsynth server register-site`: exit codes and what they print."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from common.privacy import ledger, site_keys
from deploy.cli.main import app

runner = CliRunner()


def _site_ledger(state, rounds=2):
    for r in range(1, rounds + 1):
        dp = {
            "mechanism": "dp-sgd", "noise_multiplier": 1.0, "sample_rate": 0.5, "steps": 2,
            "max_grad_norm": 1.0, "accountant": "rdp", "delta": 1e-5, "epsilon_round": 0.0,
            "epsilon_total": [5.377, 7.41][r - 1], "budget": 8.0,
        }  # fmt: skip
        ledger.append(state, site="site-a", run="1", server_round=r, kind="weights",
                      release=ledger.release_digest(), dp=dp)  # fmt: skip
    return state / ledger.LEDGER_FILE


def test_register_verify_report_recompute(tmp_path):
    path = _site_ledger(tmp_path / "s")
    registry = tmp_path / "registry"
    pub = tmp_path / "s" / site_keys.PUB_FILE
    res = runner.invoke(
        app, ["server", "register-site", "site-a", str(pub), "--registry", str(registry)]
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["audit", "verify", str(path), "--registry", str(registry)])
    assert res.exit_code == 0 and "OK" in res.output
    html = tmp_path / "audit.html"
    res = runner.invoke(
        app, ["audit", "report", str(path), "--html", str(html)], terminal_width=200
    )
    assert res.exit_code == 0 and "site-a" in res.output
    assert "data:image/png;base64" in html.read_text()
    res = runner.invoke(app, ["audit", "recompute", str(path)])
    assert res.exit_code == 0, res.output


def test_verify_fails_and_names_the_first_bad_entry(tmp_path):
    path = _site_ledger(tmp_path / "s")
    lines = ledger.read_lines(path)
    lines[0]["dp"]["epsilon_total"] = 0.5
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    res = runner.invoke(app, ["audit", "verify", str(path)], terminal_width=200)
    assert res.exit_code == 1
    assert "first bad entry" in res.output and "line 1 (seq 0)" in res.output
