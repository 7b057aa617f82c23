"""The warm site trainer gives the same answers as in-process work, and refuses other code."""

from __future__ import annotations

import threading
from dataclasses import asdict

import numpy as np
import pytest
import torch

from client import trainer
from common.config import RunSettings, SiteSettings
from common.seg.networks import create_network


@pytest.fixture
def site(tiny_consortium, tmp_path, prepare):
    out, _ = tiny_consortium
    prepare(out / "site-1", tmp_path / "state", 64)
    return SiteSettings(
        data_dir=str(out / "site-1"), state_dir=str(tmp_path / "state"), site_name="site-1"
    )


def _request(site, op="train"):
    torch.manual_seed(0)
    weights = {k: v.numpy() for k, v in create_network("unet").state_dict().items()}
    run = RunSettings(image_size=64, local_epochs=1)
    return {"op": op, "site": asdict(site), "run": asdict(run), "weights": weights, "round": 1}


@pytest.fixture
def running_trainer(site):
    ready = threading.Event()
    thread = threading.Thread(target=trainer.serve, args=(site.state_dir, ready.set), daemon=True)
    thread.start()
    assert ready.wait(60), "trainer did not start"
    return site


def test_trainer_and_in_process_agree(running_trainer):
    site = running_trainer
    remote = trainer.request(site.state_dir, _request(site), timeout=120)
    local = trainer.handle(_request(site))
    assert remote["status"] == local["status"] == "ok"
    for k, v in local["result"]["weights"].items():
        assert np.allclose(remote["result"]["weights"][k], v, atol=1e-5), k
    assert remote["result"]["num_examples"] == local["result"]["num_examples"] > 0
    sock = site.state_path / trainer.SOCKET_NAME
    assert sock.stat().st_mode & 0o777 == 0o600


def test_trainer_refuses_other_code(running_trainer, monkeypatch):
    monkeypatch.setattr(trainer, "code_version", lambda: "something-else")
    assert trainer.request(running_trainer.state_dir, _request(running_trainer), timeout=30) is None


def test_no_trainer_means_in_process(site):
    assert trainer.request(site.state_dir, _request(site), timeout=5) is None


def test_site_without_data_declines_with_a_reason(tmp_path, prepare):
    (tmp_path / "empty").mkdir()
    prepare(tmp_path / "empty", tmp_path / "s", 64)
    empty = SiteSettings(data_dir=str(tmp_path / "empty"), state_dir=str(tmp_path / "s"))
    reply = trainer.handle(_request(empty))
    assert reply["status"] == "declined" and "no usable cases" in reply["reason"]


def test_training_never_deidentifies(tiny_consortium, tmp_path, prepare):
    """An unprepared site declines, naming the command; nothing is de-identified."""
    out, _ = tiny_consortium
    state = tmp_path / "s"
    site = SiteSettings(data_dir=str(out / "site-2"), state_dir=str(state))
    reply = trainer.handle(_request(site))
    assert reply["status"] == "declined"
    assert "fedsynth site prepare --image-size 64" in reply["reason"]
    assert str(out) not in reply["reason"]  # the reason leaves the site: no paths
    assert not (state / "intake_report.json").exists() and not (state / "cache").exists()
    # Prepared at another size: still declined, and told which size to prepare.
    prepare(out / "site-2", state, 32)
    reply = trainer.handle(_request(site))
    assert reply["status"] == "declined" and "image-size 64" in reply["reason"]
    # Prepared from another folder than the node's data-dir: declined.
    prepare(out / "site-1", state, 64)
    reply = trainer.handle(_request(site))
    assert reply["status"] == "declined" and "another folder" in reply["reason"]
