"""The coordinator's warm start: pretrained on freely usable data, recorded, no ε spent."""

from __future__ import annotations

import pytest
import torch

from common.config import RunSettings
from common.errors import ConfigError
from common.report import render
from common.seg.networks import create_network
from common.seg.training import evaluate
from server.outputs import RunOutputs
from server.warm_start import phantom_arrays, warm_start


def test_phantoms_pretrain_a_model_that_segments_unseen_phantoms(tmp_path):
    run = RunSettings.from_config(
        {
            "image-size": 64,
            "warm-start": "phantoms",
            "warm-start-cases": 64,
            "warm-start-epochs": 15,
            # the sites fine-tune biases only under DP; the warm start still trains all
            "dp": "local",
            "dp-noise-multiplier": 1.0,
            "dp-trainable": "bias",
            "out-dir": str(tmp_path / "run"),
        }
    )
    data = phantom_arrays(8, 64, 1, seed=1)
    assert data.images.shape == (8, 1, 64, 64) and data.masks.any(axis=(1, 2)).all()
    assert phantom_arrays(2, 64, 3, seed=1).images.shape[1] == 3  # colour runs: 3 channels
    unseen = phantom_arrays(16, 64, 1, seed=99)
    torch.manual_seed(0)
    model = create_network("unet", 1)
    before = evaluate(model, unseen)["overall"]["dice"]
    record = warm_start(model, run, 1)
    after = evaluate(model, unseen)["overall"]["dice"]
    assert record["kind"] == "phantoms" and record["cases"] == 64 and record["epochs"] == 15
    assert after > before + 0.1, (before, after)

    outputs = RunOutputs(run.out_dir, run)
    outputs.record_warm_start(record)
    html = render(outputs.dir).read_text()
    assert "pretrained by the coordinator on 64 phantoms for 15 epochs" in html


def test_weights_load_or_are_refused_with_the_reason(tmp_path):
    source = create_network("unet", 1)
    path = tmp_path / "public.pt"
    torch.save(source.state_dict(), path)
    model = create_network("unet", 1)
    record = warm_start(model, RunSettings.from_config({"warm-start": str(path)}), 1)
    assert record["kind"] == "weights" and len(record["sha256"]) == 64
    assert all(
        torch.equal(a, b) for a, b in zip(model.state_dict().values(), source.state_dict().values())
    )
    with pytest.raises(ConfigError, match="do not fit network='unet' with 3 input"):
        warm_start(create_network("unet", 3), RunSettings.from_config({"warm-start": str(path)}), 3)
    with pytest.raises(ConfigError, match="warm-start must be"):
        warm_start(model, RunSettings.from_config({"warm-start": "imagenet"}), 1)
    assert warm_start(model, RunSettings.from_config({}), 1) is None
