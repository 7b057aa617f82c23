"""Patient-level DP-SGD: the privacy unit is the patient, not the image.

A patient with k images (follow-ups, views) must move a step's clipped gradient sum by
at most C, as a patient with one image does: each step samples patients (Poisson, at the
rate the accountant is given for the site's patient count) and takes one image of each,
whose gradient Opacus clips to C. The accountant must count patients.
"""

from __future__ import annotations

import numpy as np
import torch

from common.data.arrays import SiteArrays
from common.privacy.dp import DPSettings, make_private, plan_round
from common.seg.training import _OneImagePerPatient


def _site(patients: list[str], size: int = 8) -> SiteArrays:
    """Image i is filled with the value i, so a batch says which images it holds."""
    n = len(patients)
    images = np.stack([np.full((1, size, size), i, np.float16) for i in range(n)])
    return SiteArrays(
        images=images,
        masks=np.zeros((n, size, size), np.uint8),
        vendors=np.array(["v"] * n),
        cases=np.array(patients),
        masks2=np.zeros((n, size, size), np.uint8),
        has_mask2=np.zeros(n, bool),
        fov=np.ones((n, size, size), np.uint8),
    )


def test_a_patient_with_many_images_is_one_unit_and_never_split():
    data = _site(["a"] * 6 + [f"p{i}" for i in range(14)])
    assert len(data) == 20 and data.patients == 15
    groups = data.patient_images()
    assert sorted(len(g) for g in groups) == [1] * 14 + [6]
    train, val = data.split(0.2, seed=1)
    assert train.patients + val.patients == 15 and val.patients == 3
    assert not set(train.cases) & set(val.cases)  # a patient's images on one side only


def test_each_step_samples_patients_and_takes_one_image_of_each():
    """Through Opacus's Poisson loader: no step ever holds two images of one patient,
    and over the steps every image of the many-image patient is used."""
    from torch.utils.data import DataLoader

    patients = ["a"] * 6 + [f"p{i}" for i in range(10)]
    data = _site(patients)
    dataset = _OneImagePerPatient(data, None, seed=0)
    assert len(dataset) == 11  # patients, not images
    dp = DPSettings("local", noise_multiplier=1.0, rounds=1)
    plan = plan_round(dp, data.patients, batch_size=4, epochs=60)
    assert plan.step.sample_rate == 1 / 3  # ceil(11 patients / 4)
    model = torch.nn.Conv2d(1, 2, 1)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    _, _, loader = make_private(model, optimiser, DataLoader(dataset, batch_size=4), plan)
    seen_a = set()
    for _ in range(60):
        for images, _ in loader:
            index = [int(x) for x in images[:, 0, 0, 0]]
            owners = [patients[i] for i in index]
            assert len(owners) == len(set(owners)), owners  # one image per patient a step
            seen_a |= {i for i in index if patients[i] == "a"}
    assert seen_a == set(range(6))


def test_patches_of_one_patient_stay_one_patient():
    from common.seg.patches import random_patches

    data = _site(["a", "a", "b", "c"], size=16)
    patches = random_patches(data, 8, 3, seed=0)
    assert len(patches) == 12 and patches.patients == 3
    assert sorted(len(g) for g in patches.patient_images()) == [3, 3, 6]


def test_bias_only_training_moves_biases_and_the_output_layer_alone():
    from common.seg.networks import create_network
    from common.seg.training import TrainSettings, train

    data = _site([f"p{i}" for i in range(8)], size=32)
    data.masks[:, 8:20, 8:20] = 1
    torch.manual_seed(0)
    model = create_network("unet", 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    dp = DPSettings("local", noise_multiplier=0.5, rounds=1)
    plan = plan_round(dp, data.patients, batch_size=4, epochs=1)
    train(model, data, TrainSettings(epochs=1, batch_size=4, trainable="bias"), dp=plan)
    names = [k for k, _ in model.named_parameters()]
    moved = {k for k in names if not torch.equal(before[k], model.state_dict()[k])}
    assert moved and all(k.endswith("bias") or k in names[-2:] for k in moved), moved
    assert any(k.endswith("bias") for k in moved) and not any(
        k.endswith("weight") for k in moved - set(names[-2:])
    )
    assert all(p.requires_grad for p in model.parameters())  # left as it was found
