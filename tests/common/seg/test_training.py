from __future__ import annotations

import numpy as np
import pytest
import torch

from common.data.intake import prepare_site
from common.seg.networks import NETWORKS, create_network
from common.seg.training import TrainSettings, evaluate, predict, train


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_networks_are_dp_ready_and_segment_two_classes(name):
    from opacus.validators import ModuleValidator

    net = create_network(name)
    assert ModuleValidator.validate(net, strict=False) == []
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())
    assert net(torch.zeros(2, 1, 64, 64)).shape == (2, 2, 64, 64)


def test_unknown_network_is_a_config_error():
    from common.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown network 'vit'"):
        create_network("vit")


def test_training_changes_weights_reduces_loss_and_is_seeded(tiny_consortium, tmp_path):
    out, _ = tiny_consortium
    data, _ = prepare_site(out / "site-1", tmp_path / "s", 64, new_secret=True)
    torch.manual_seed(0)
    a = create_network("unet")
    init = {k: v.clone() for k, v in a.state_dict().items()}
    b = create_network("unet")
    b.load_state_dict(init)
    first = train(a, data, TrainSettings(epochs=1, seed=3))
    later = train(a, data, TrainSettings(epochs=6, seed=4))
    assert later.loss < first.loss
    assert any(not torch.equal(init[k], v) for k, v in a.state_dict().items())
    train(b, data, TrainSettings(epochs=1, seed=3))
    c = create_network("unet")
    c.load_state_dict(init)
    train(c, data, TrainSettings(epochs=1, seed=3))
    for k in init:
        assert torch.allclose(b.state_dict()[k], c.state_dict()[k]), k
    masks = predict(a, data.images)
    assert masks.shape == data.masks.shape and masks.dtype == np.uint8
    summary = evaluate(a, data)
    assert set(summary) == {"overall", *set(data.vendors)}


def test_fedprox_term_keeps_weights_closer_to_the_start(tiny_consortium, tmp_path):
    out, _ = tiny_consortium
    data, _ = prepare_site(out / "site-2", tmp_path / "s", 64, new_secret=True)
    torch.manual_seed(0)
    init = create_network("unet").state_dict()

    def drift(mu):
        net = create_network("unet")
        net.load_state_dict(init)
        train(net, data, TrainSettings(epochs=2, seed=1, proximal_mu=mu, learning_rate=0.01))
        return sum(float(((net.state_dict()[k] - init[k]) ** 2).sum()) for k in init)

    assert drift(10.0) < drift(0.0)


def test_patch_training_sees_patches_and_predicts_whole_images(tiny_consortium, tmp_path):
    from common.seg.transforms import train_transforms

    data, _ = tiny_consortium
    arrays, _ = prepare_site(data / "site-1", tmp_path / "s1", 64, new_secret=True)
    crop = train_transforms(0, "standard", patch_size=32)
    sample = {"image": arrays.images[0].astype(np.float32), "label": arrays.masks[:1]}
    assert tuple(crop(sample)["image"].shape) == (1, 32, 32)
    settings = TrainSettings(epochs=1, batch_size=4, patch_size=32, patches_per_image=3)
    torch.manual_seed(0)
    model = create_network("unet")
    stats = train(model, arrays, settings)
    assert stats.steps == (3 * len(arrays)) // 4  # three patches per image and epoch
    assert predict(model, arrays.images[:2]).shape == (2, 64, 64)


def test_dp_refuses_several_patches_per_image(tiny_consortium, tmp_path):
    from common.config import RunSettings
    from common.errors import ConfigError

    with pytest.raises(ConfigError, match="patches-per-image=1"):
        RunSettings.from_config({"dp": "local", "patch-size": 32, "patches-per-image": 4})
    with pytest.raises(ConfigError, match="patch-size"):
        RunSettings.from_config({"image-size": 64, "patch-size": 100})
    with pytest.raises(ConfigError, match="label-fusion"):
        RunSettings.from_config({"label-fusion": "vote"})


def test_patch_crop_alone_is_seeded_and_keeps_image_and_label_aligned():
    from common.seg.transforms import patch_crop

    image = np.arange(64 * 64, dtype=np.float32).reshape(1, 64, 64)
    sample = {"image": image, "label": image.copy()}
    first = [patch_crop(3, 16)(dict(sample)) for _ in range(2)]
    other = patch_crop(4, 16)(dict(sample))
    assert np.asarray(first[0]["image"]).shape == (1, 16, 16)
    assert np.array_equal(np.asarray(first[0]["image"]), np.asarray(first[1]["image"]))
    assert np.array_equal(np.asarray(first[0]["image"]), np.asarray(first[0]["label"]))
    assert not np.array_equal(np.asarray(first[0]["image"]), np.asarray(other["image"]))
