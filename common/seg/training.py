"""Local training and inference for the segmentation network (plain PyTorch loop).

One function trains for a number of epochs on a site's arrays (optionally with the
FedProx proximal term towards the global weights); one predicts masks; one evaluates
against references per vendor. Used identically by the ClientApp, the server's
held-out evaluation and the local-only and centralised baselines.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from common.data.arrays import SiteArrays
from common.privacy.dp import physical_batches
from common.seg.metrics import case_metrics, summarise

TRAINABLE = ("all", "bias")


def _freeze(model, trainable: str) -> None:
    """Leave only ``trainable``'s parameters learning (see :class:`TrainSettings`)."""
    if trainable == "all":
        return
    params = list(model.named_parameters())
    head = {id(p) for _, p in params[-2:]}  # the last registered layer: the output's
    for name, p in params:
        p.requires_grad_(name.endswith("bias") or id(p) in head)


@dataclass(frozen=True)
class TrainSettings:
    """How a site trains in one round (from the run_config, read once at the edge).

    Args:
        epochs: local epochs per round.
        batch_size: samples per step.
        learning_rate: Adam learning rate.
        proximal_mu: FedProx proximal weight (0 disables).
        seed: base random seed.
        augmentation: ``"standard"`` or ``"strong"`` (see :mod:`common.seg.transforms`).
        patch_size: train on random square patches of this side (0: whole images); the
            network is fully convolutional, so prediction still runs on whole images.
        patches_per_image: patches drawn from every image in one epoch. Under DP it must
            be 1: the accountant counts one sample per image and epoch.
        trainable: ``"all"`` parameters, or ``"bias"``: only the bias terms and the output
            layer (BitFit; with DP-SGD far fewer noisy coordinates, best from a warm start).
    """

    epochs: int = 2
    batch_size: int = 8
    learning_rate: float = 2e-3
    proximal_mu: float = 0.0
    seed: int = 0
    augmentation: str = "standard"
    patch_size: int = 0
    patches_per_image: int = 1
    trainable: str = "all"

    def __post_init__(self) -> None:
        if self.trainable not in TRAINABLE:
            raise ValueError(f"trainable must be one of {TRAINABLE}, got {self.trainable!r}")
        if self.patch_size < 0 or self.patches_per_image < 1:
            raise ValueError(
                "patch-size must be >= 0 and patches-per-image >= 1, got "
                f"{self.patch_size} and {self.patches_per_image}"
            )
        if self.epochs < 1:
            raise ValueError(f"local-epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch-size must be >= 1, got {self.batch_size}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning-rate must be > 0, got {self.learning_rate}")
        if self.proximal_mu < 0:
            raise ValueError(f"proximal-mu must be >= 0, got {self.proximal_mu}")


@dataclass
class TrainStats:
    """What a training call did: mean loss of the last epoch, steps and wall seconds."""

    loss: float
    steps: int
    seconds: float
    examples: int


class _AugmentedDataset:
    """Every image ``repeats`` times per epoch, each time through ``transforms``."""

    def __init__(self, data: SiteArrays, transforms, repeats: int = 1) -> None:
        self.data, self.transforms, self.repeats = data, transforms, repeats

    def __len__(self) -> int:
        return len(self.data) * self.repeats

    def __getitem__(self, i: int) -> dict:
        i %= len(self.data)
        sample = {
            "image": self.data.images[i].astype(np.float32),
            "label": self.data.masks[i][None].astype(np.float32),
        }
        sample = self.transforms(sample) if self.transforms is not None else sample
        # a (image, label) pair: Opacus's Poisson loader can build empty batches of these
        return np.asarray(sample["image"]), np.asarray(sample["label"])


class _OneImagePerPatient(_AugmentedDataset):
    """Under DP the privacy unit is the patient: item ``p`` is one of patient ``p``'s
    images, drawn at random each time. Poisson sampling over this dataset samples
    patients, and a sampled patient adds one per-sample-clipped gradient to a step, so a
    patient with any number of images moves a step's clipped sum by at most C: the
    accountant's sample rate is that of the site's patients."""

    def __init__(self, data: SiteArrays, transforms, seed: int) -> None:
        super().__init__(data, transforms)
        self.groups = data.patient_images()
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, p: int) -> tuple[np.ndarray, np.ndarray]:
        return super().__getitem__(int(self.rng.choice(self.groups[p])))


def train(
    model, data: SiteArrays, settings: TrainSettings, augment: bool = True, dp=None
) -> TrainStats:
    """Train ``model`` in place on ``data``.

    Args:
        model: the segmentation network (2 output classes).
        data: training cases.
        settings: epochs, batch size, learning rate, FedProx mu, seed.
        augment: apply :func:`common.seg.transforms.train_transforms`.
        dp: a :class:`common.privacy.dp.RoundPlan` to train with DP-SGD (per-sample clipping,
            Gaussian noise, Poisson sampling of patients: one image of each sampled
            patient a step; plan it for ``data.patients``), or ``None``.

    Returns:
        :class:`TrainStats` of the call.
    """
    import torch
    from monai.losses import DiceCELoss
    from torch.utils.data import DataLoader

    from common.seg.transforms import patch_crop, train_transforms

    if len(data) == 0:
        raise ValueError("cannot train on 0 cases")
    torch.manual_seed(settings.seed)
    if dp is not None and settings.patches_per_image > 1:
        raise ValueError(
            "DP-SGD counts one sample per image and epoch: set patches-per-image=1 "
            f"(got {settings.patches_per_image}) when dp is on"
        )
    transforms = None
    if augment:
        transforms = train_transforms(
            settings.seed, settings.augmentation, settings.patch_size, data.channels
        )
    elif settings.patch_size:
        transforms = patch_crop(settings.seed, settings.patch_size)
    dataset = (
        _AugmentedDataset(data, transforms, settings.patches_per_image)
        if dp is None
        else _OneImagePerPatient(data, transforms, settings.seed)
    )
    loader = DataLoader(
        dataset,
        batch_size=settings.batch_size,
        shuffle=True,
        drop_last=dp is None and len(data) > settings.batch_size,
        generator=torch.Generator().manual_seed(settings.seed),
    )
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    _freeze(model, settings.trainable)
    optimiser = torch.optim.Adam(
        [p for p in model.parameters() if p.requires_grad], lr=settings.learning_rate
    )
    anchor = [p.detach().clone() for p in model.parameters()] if settings.proximal_mu > 0 else None
    net = model
    if dp is not None:
        if anchor is not None:
            raise ValueError(
                "FedProx's proximal term is not clipped per sample: use fedavg or "
                "fedadam with DP-SGD"
            )
        from common.privacy.dp import make_private

        net, optimiser, loader = make_private(model, optimiser, loader, dp)
    model.train()
    start, steps, epoch_loss = time.perf_counter(), 0, 0.0
    try:
        for _ in range(settings.epochs):
            total, count = 0.0, 0
            for images, labels in physical_batches(loader, optimiser, dp):
                optimiser.zero_grad()
                if len(images) == 0:  # Poisson sampling drew nobody: a noise-only step
                    for p in net.parameters():
                        if p.requires_grad:
                            p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype)
                    optimiser.step()
                    steps += _stepped(optimiser)
                    continue
                loss = loss_fn(net(torch.as_tensor(images)), torch.as_tensor(labels))
                if anchor is not None:
                    prox = sum(((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchor))
                    loss = loss + 0.5 * settings.proximal_mu * prox
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * len(images)
                count += len(images)
                steps += _stepped(optimiser)
            epoch_loss = total / max(count, 1)
    finally:
        if net is not model:
            net.remove_hooks()
        model.requires_grad_(True)
    return TrainStats(
        loss=epoch_loss, steps=steps, seconds=time.perf_counter() - start, examples=len(data)
    )


def _stepped(optimiser) -> int:
    """1 if the optimiser really stepped (Opacus skips all but a logical batch's last)."""
    return 0 if getattr(optimiser, "_is_last_step_skipped", False) else 1


def predict(model, images: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """Binary masks for ``images`` (``(N, C, S, S)`` in ``[0, 1]``) as uint8 ``(N, S, S)``."""
    import torch

    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            x = torch.as_tensor(images[i : i + batch_size].astype(np.float32))
            out.append(model(x).argmax(dim=1).to(torch.uint8).numpy())
    return np.concatenate(out) if out else np.zeros((0,) + images.shape[2:], np.uint8)


def evaluate_cases(model, data: SiteArrays) -> tuple[np.ndarray, list[dict[str, float]]]:
    """``model``'s masks for ``data`` (outside the field of view cleared) and each case's
    Dice, IoU and HD95 (:func:`common.seg.metrics.case_metrics`), in ``data``'s order."""
    preds = predict(model, data.images) * data.fov
    return preds, [case_metrics(p, m) for p, m in zip(preds, data.masks)]


def patient_losses(model, data: SiteArrays, batch_size: int = 16) -> np.ndarray:
    """The training loss (Dice + cross-entropy) of ``model`` on each patient: the mean
    over its images, one value per patient in :meth:`SiteArrays.patient_images` order."""
    import torch
    from monai.losses import DiceCELoss

    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    model.eval()
    losses = []
    with torch.inference_mode():
        for i in range(0, len(data), batch_size):
            logits = model(torch.as_tensor(data.images[i : i + batch_size].astype(np.float32)))
            y = torch.as_tensor(data.masks[i : i + batch_size][:, None].astype(np.float32))
            losses += [float(loss_fn(logits[j : j + 1], y[j : j + 1])) for j in range(len(y))]
    losses = np.asarray(losses)
    return np.array([losses[g].mean() for g in data.patient_images()])


def evaluate(model, data: SiteArrays) -> dict[str, dict[str, float]]:
    """Dice, IoU and HD95 of ``model`` on ``data``, overall and per vendor.

    Predictions outside the field of view (``data.fov``) are ignored.

    Returns:
        :func:`common.seg.metrics.summarise` output.
    """
    _, per_case = evaluate_cases(model, data)
    return summarise(per_case, list(data.vendors))
