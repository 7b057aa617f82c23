"""``fedsynth consortium run``: a consortium file over folders of your own, run for real."""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest
from typer.testing import CliRunner

from common.errors import ConfigError
from deploy.cli.main import app
from deploy.local.runner import run_consortium
from deploy.local.spec import load

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _file(tmp_path, sites: dict[str, str], extra: str = "", rounds: int = 1) -> str:
    body = 'workdir = "work"\nbaselines = true\ntrainers = false\n'
    for name, folder in sites.items():
        body += f'[[sites]]\nname = "{name}"\ndata-dir = "{folder}"\n'
    body += '[heldout]\ndata-dir = "heldout"\n[run-config]\n'
    body += f"num-server-rounds = {rounds}\nlocal-epochs = 1\nimage-size = 32\n" + extra
    path = tmp_path / "pilot.toml"
    path.write_text(body)
    return str(path)


def test_a_consortium_file_runs_on_the_deployment_engine(tiny_consortium, tmp_path):
    """Sites with names of their own, in folders of their own: each trains, the report
    holds the held-out set's vendors and the baselines."""
    data, _ = tiny_consortium
    for src, dst in (("site-1", "north"), ("site-2", "south"), ("heldout", "heldout")):
        shutil.copytree(data / src, tmp_path / dst)
    path = _file(tmp_path, {"north": "north", "south": "south"})
    result = CliRunner().invoke(app, ["consortium", "run", path])
    assert result.exit_code == 0, result.output
    run_dir = next((tmp_path / "work" / "runs").iterdir())
    rounds = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    trained = sorted(t["site"] for t in rounds[-1]["sites"]["trained"])
    assert trained == ["north", "south"]
    vendors = set(rounds[-1]["heldout"]) - {"overall"}
    assert len(vendors) >= 3, vendors  # the held-out set holds every vendor
    baselines = json.loads((run_dir / "baselines.json").read_text())
    assert set(baselines["local-only"]) == {"north", "south"}, baselines.keys()
    assert (run_dir / "report.html").exists()


def test_a_site_with_nothing_usable_stops_the_run_before_any_process(tiny_consortium, tmp_path):
    data, _ = tiny_consortium
    shutil.copytree(data / "site-1", tmp_path / "north")
    shutil.copytree(data / "heldout", tmp_path / "heldout")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README.txt").write_text("no images here")
    spec = load(_file(tmp_path, {"north": "north", "empty": "empty"}))
    with pytest.raises(ConfigError, match=r"site empty: nothing usable .*1 rejected"):
        run_consortium(spec)
    assert not (tmp_path / "work" / "flwr").exists(), "no Flower process should have started"


@pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="Ray missing: pip install -e '.[simulation]'"
)
def test_colour_sites_train_an_rgb_model_with_central_dp_on_the_simulation_engine(
    colour_consortium, tmp_path
):
    """channels=auto on colour folders: the server resolves rgb from its held-out set,
    every virtual site (found by partition-id) trains a three-channel network, the
    baselines read colour too; central DP charges every site each round; the held-out
    set is scored every eval-every rounds."""
    import torch

    from common.privacy.accountant import gaussian_epsilon

    for name in ("site-1", "site-2", "heldout"):
        shutil.copytree(colour_consortium / name, tmp_path / name)
    dp = 'eval-every = 2\ndp = "central"\ndp-noise-multiplier = 2.0\ndp-central-clip = 0.5\n'
    path = _file(tmp_path, {"site-1": "site-1", "site-2": "site-2"}, dp, rounds=2)
    result = CliRunner().invoke(app, ["consortium", "run", path, "--engine", "simulation"])
    assert result.exit_code == 0, result.output
    run_dir = next((tmp_path / "work" / "runs").iterdir())
    assert json.loads((run_dir / "run.json").read_text())["channels"] == "rgb"
    weights = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    first = next(v for v in weights.values() if v.ndim == 4)
    assert first.shape[1] == 3  # the global model reads three channels
    rounds = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rounds] == [0, 1, 2]
    assert [r["round"] for r in rounds if r["heldout"]] == [0, 2]
    assert {"A cam", "B cam"} <= set(rounds[-1]["heldout"])
    for r in rounds[1:]:
        assert sorted(t["site"] for t in r["sites"]["trained"]) == ["site-1", "site-2"]
        central = r["sites"]["central-dp"]
        assert sorted(central["sites"]) == ["site-1", "site-2"]
        assert central["noise_std"] == pytest.approx(2.0 * 0.5 / 2)
        assert central["clipped"] == sum(n > 0.5 for n in central["update_norms"].values())
        expected = gaussian_epsilon([2.0] * r["round"], 1e-5)
        assert central["epsilon"] == {s: pytest.approx(expected) for s in central["sites"]}
    assert "central DP" in (run_dir / "report.html").read_text()
    baselines = json.loads((run_dir / "baselines.json").read_text())
    assert set(baselines["local-only"]) == {"site-1", "site-2"}
