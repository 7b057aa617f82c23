"""The server's pool of synthetic pairs keeps the scale the sites generated them at."""

from __future__ import annotations

import numpy as np

from common.config import RunSettings
from server.synthetic_pool import SyntheticPool, pool_side


def _pool(tmp_path, side: int) -> SyntheticPool:
    pool = SyntheticPool(tmp_path)
    rng = np.random.default_rng(0)
    masks = np.zeros((3, side, side), np.uint8)
    masks[:, :, side // 2] = 1  # a vessel one pixel wide
    pool.add("site-1", rng.random((3, side, side)).astype(np.float32), masks)
    return pool


def test_whole_synthetic_images_are_resized_to_image_size(tmp_path):
    run = RunSettings.from_config({"image-size": 64, "share": "synthetic", "synth-config": "tiny"})
    arrays = _pool(tmp_path, 16).site_arrays(pool_side(run))
    assert arrays.images.shape == (3, 1, 64, 64)
    assert list(arrays.vendors) == ["synthetic (site-1)"] * 3


def test_synthetic_patches_keep_their_scale(tmp_path):
    """With synth-patch a released pair is a patch at image-size scale: resizing it to
    image-size would make a one-pixel vessel four pixels wide."""
    run = RunSettings.from_config(
        {"image-size": 64, "share": "synthetic", "synth-config": "tiny", "synth-patch": True}
    )
    assert pool_side(run) == 16
    arrays = _pool(tmp_path, 16).site_arrays(pool_side(run))
    assert arrays.images.shape == (3, 1, 16, 16)
    assert arrays.masks.sum(axis=(1, 2)).tolist() == [16, 16, 16]


def test_exchange_sends_a_site_every_release_but_its_own(tmp_path):
    pool = SyntheticPool(tmp_path)
    pair = (np.zeros((2, 1, 8, 8), np.float32), np.zeros((2, 8, 8), np.uint8))
    pool.add("site-1", *pair, node=11)
    pool.add("site-2", *pair, node=22)
    pool.add("site-3", pair[0][:1], pair[1][:1], node=33)
    assert pool.nodes == {11: "site-1", 22: "site-2", 33: "site-3"}
    assert list(pool.others("site-2")) == ["site-1", "site-3"]
    assert len(pool.others("site-9")) == 3  # a site that released nothing gets all


class _TwoSites:
    def get_node_ids(self):
        return [1, 2]


def test_both_trains_on_the_pool_before_the_sites_do(tmp_path, monkeypatch):
    """share=both: the server trains the global model on the pool and sends *that* to the
    sites, so their average of real-data training is the round's model (real data are the
    last thing it learns from); the round's record says so."""
    import torch
    from flwr.app import ArrayRecord, ConfigRecord
    from flwr.supercore.task_identity import TaskIdentity

    from common import keys
    from common.seg.networks import create_network
    from server.strategies import create_strategy

    run = RunSettings.from_config(
        {"share": "both", "server-epochs": 1, "image-size": 32, "min-sites": 2}
    )
    strategy = create_strategy(run, tmp_path)
    for name, value in (("_run_id", 1), ("_node_id", 0), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, name, value)  # what the ServerApp process sets
    rng = np.random.default_rng(0)
    masks = (rng.random((6, 32, 32)) > 0.7).astype(np.uint8)
    strategy.pool.add("site-1", rng.random((6, 1, 32, 32)).astype(np.float32), masks, node=1)
    torch.manual_seed(0)
    start = ArrayRecord(create_network(run.network).state_dict())
    # round 2: no release is due (synth-every=0), the pool from round 1 is there
    messages = list(strategy.configure_train(2, start, ConfigRecord(), _TwoSites()))
    assert sorted(m.metadata.dst_node_id for m in messages) == [1, 2]
    sent = messages[0].content[keys.ARRAYS].to_torch_state_dict()
    before = start.to_torch_state_dict()
    assert any(not torch.equal(sent[k], before[k]) for k in before), "not trained on the pool"
    training = strategy.rounds[2].to_json()["server-training"]
    assert training["before-sites"] is True and training["examples"] == 6
