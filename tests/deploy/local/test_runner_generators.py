"""The consortium runner's generators phase respects each site's own sharing choice."""

from __future__ import annotations

from rich.console import Console

from common.config import RunSettings
from deploy.local.consortium import SiteNode
from deploy.local.runner import generator_sites


def test_a_site_that_shares_no_synthetic_pairs_trains_no_generator(tmp_path):
    run = RunSettings.from_config({"share": "exchange"})

    def node(name, **own):
        cfg = {"site-name": name, "data-dir": str(tmp_path / name), "state-dir": str(tmp_path)}
        return SiteNode(name, {**cfg, **own})

    nodes = [node("north", **{"share-weights": False}), node("south", **{"share-synthetic": False})]
    console = Console(record=True, width=200)
    sites = generator_sites(nodes, run, console)
    assert [s.site_name for s in sites] == ["north"]
    assert "south: shares no synthetic pairs" in console.export_text()


def test_a_sites_node_config_survives_flowers_run_config_parser():
    """sim-node-config is JSON (double quotes): it must reach the run as it was written
    (Flower's --run-config pattern allows no '"' inside a double-quoted value)."""
    import json

    from flwr.common.config import parse_config_args

    from deploy.local.consortium import toml_pairs

    own = json.dumps({"site-1": {"share-weights": False}, "site-2": {"share-synthetic": False}})
    config = {"sim-node-config": own, "out-dir": "/tmp/a b", "min-sites": 2, "dp": "off"}
    assert parse_config_args([toml_pairs(config)]) == config
