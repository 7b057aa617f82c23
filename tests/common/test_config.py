from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from common.config import RunSettings, SiteSettings
from common.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_pyproject_defaults_match_the_dataclass():
    """Every [tool.flwr.app.config] key is a RunSettings field with the same default."""
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    settings = RunSettings.from_config(cfg)
    defaults = RunSettings()
    fields = {f.replace("_", "-") for f in RunSettings.__dataclass_fields__}
    assert set(cfg) == fields
    assert settings == defaults


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"num-server-rounds": 0}, "num-server-rounds"),
        ({"min-sites": 0}, "min-sites"),
        ({"image-size": 100}, "image-size"),
        ({"fraction-evaluate": 2.0}, "fraction-evaluate"),
        ({"local-epochs": "many"}, "'local-epochs' must be int"),
        ({"synth-mask-size-bins": 0}, "synth-mask-size-bins must be >= 1"),
    ],
)
def test_bad_run_config_names_key_and_value(config, match):
    with pytest.raises(ConfigError, match=match):
        RunSettings.from_config(config)


def test_site_settings_need_data_and_state_dirs():
    with pytest.raises(ConfigError, match="data-dir"):
        SiteSettings.from_config({"state-dir": "/s"})
    with pytest.raises(ConfigError, match="state-dir"):
        SiteSettings.from_config({"data-dir": "/d"})
    s = SiteSettings.from_config(
        {"data-dir": "/d", "state-dir": "/s", "site-name": "A", "val-fraction": "0.3"}
    )
    assert s.val_fraction == 0.3 and s.site_name == "A"


def test_train_settings_carry_fedprox_mu_and_seed_by_round():
    run = RunSettings(local_epochs=3)
    a, b = run.train_settings(1, 7, 0.1), run.train_settings(2, 7)
    assert a.epochs == 3 and a.proximal_mu == 0.1 and b.proximal_mu == 0.0
    assert a.seed != b.seed


def test_eval_every_evaluates_every_nth_round_and_always_the_last():
    run = RunSettings.from_config({"num-server-rounds": 10, "eval-every": 4})
    assert [r for r in range(11) if run.eval_due(r)] == [0, 4, 8, 10]
    every = RunSettings.from_config({"num-server-rounds": 3})
    assert [r for r in range(4) if every.eval_due(r)] == [0, 1, 2, 3]
    with pytest.raises(ConfigError, match="eval-every must be >= 1"):
        RunSettings.from_config({"eval-every": 0})


def test_a_virtual_site_reads_its_own_settings_from_sim_node_config():
    import json

    from common.config import RunSettings, SiteSettings

    own = {"site-2": {"share-weights": False, "max-epsilon": 8.0}}
    run = RunSettings(
        sim_data_root="/data", sim_state_root="/state", sim_node_config=json.dumps(own)
    )
    two = SiteSettings.from_config({"partition-id": 1}, run)
    assert (two.site_name, two.data_dir, two.state_dir) == (
        "site-2",
        "/data/site-2",
        "/state/site-2",
    )
    assert two.share_weights is False and two.max_epsilon == 8.0
    one = SiteSettings.from_config({"partition-id": 0}, run)
    assert one.share_weights is True and one.max_epsilon == 0.0


def test_a_malformed_sim_node_config_is_refused_with_an_example():
    import pytest

    from common.config import RunSettings
    from common.errors import ConfigError

    with pytest.raises(ConfigError, match="must be JSON"):
        RunSettings(sim_node_config="{site-1: x}")
    with pytest.raises(ConfigError, match='"share-weights": false'):
        RunSettings(sim_node_config='{"site-1": 3}')
