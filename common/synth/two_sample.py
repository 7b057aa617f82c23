"""Classifier two-sample test: can a small network tell synthetic pairs from real ones?

Lopez-Paz and Oquab (ICLR 2017): train a classifier to separate the two sets on one half
of each, and measure its accuracy on the other halves. If the sets come from the same
distribution no classifier beats chance, so held-out accuracy near 0.5 means
*indistinguishable*; near 1.0 means every synthetic pair gives itself away. Unlike a
Fréchet distance it needs no pretrained feature network (nothing here may download
one), it looks at the image *and* its mask together (a blobby mask on a realistic image
is caught), and its number reads the same on any data set.

The classifier is a four-layer CNN over the pair (image channels + mask) at 64 x 64,
trained for a fixed number of Adam steps on balanced halves; the reported interval is
the Wilson 95% interval of the held-out accuracy.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> real = rng.random((40, 1, 32, 32)).astype(np.float32)
    >>> masks = (rng.random((40, 32, 32)) > 0.5).astype(np.uint8)
    >>> r = classifier_two_sample(real, masks, real * 0 + 0.5, masks, steps=30)
    >>> r["accuracy"] > 0.9  # flat grey images against noise: told apart
    True
"""

from __future__ import annotations

import math

import numpy as np

SIZE = 64


def _pairs(images: np.ndarray, masks: np.ndarray):
    """``(N, C + 1, 64, 64)`` float tensors in ``[-1, 1]``: image channels then the mask."""
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(np.asarray(images, np.float32))
    x = x[:, None] if x.ndim == 3 else x
    m = torch.as_tensor(np.asarray(masks, np.float32))[:, None]
    x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", antialias=True)
    m = F.interpolate((m > 0).float(), size=(SIZE, SIZE), mode="area")
    return torch.cat([x.clamp(0, 1), m], dim=1) * 2 - 1


def _classifier(channels: int):
    import torch.nn as nn

    layers, cin = [], channels
    for cout in (16, 32, 64, 64):
        layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.GroupNorm(8, cout)]
        layers += [nn.LeakyReLU(0.2)]
        cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 1))


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``correct / n`` (95% by default)."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def classifier_two_sample(
    real_images: np.ndarray,
    real_masks: np.ndarray,
    synth_images: np.ndarray,
    synth_masks: np.ndarray,
    steps: int = 300,
    seed: int = 0,
) -> dict:
    """Held-out accuracy of a real-vs-synthetic classifier over image+mask pairs.

    Both sets are cut to the same size (the smaller one's), shuffled and halved; the
    classifier learns on the first halves and is scored on the second.

    Args:
        real_images: ``(N, C, S, S)`` (or ``(N, S, S)``) in ``[0, 1]``.
        real_masks: ``(N, S, S)`` binary.
        synth_images: ``(M, C, S', S')`` in ``[0, 1]``, the same C.
        synth_masks: ``(M, S', S')`` binary.
        steps: Adam steps (batch 32, learning rate 1e-3, random flips).
        seed: shuffling, weights and batches.

    Returns:
        ``{"accuracy", "ci95", "n_test", "n_train", "steps"}``: 0.5 means the classifier
        could not tell them apart, 1.0 that it always could.

    Raises:
        ValueError: fewer than 8 pairs in either set, or different channel counts.
    """
    import torch

    n = min(len(real_images), len(synth_images))
    if n < 8:
        raise ValueError(f"the two-sample test needs at least 8 pairs in each set, got {n}")
    real, synth = _pairs(real_images, real_masks), _pairs(synth_images, synth_masks)
    if real.shape[1] != synth.shape[1]:
        raise ValueError(
            f"real pairs have {real.shape[1] - 1} image channel(s), synthetic "
            f"{synth.shape[1] - 1}: compare colour with colour"
        )
    rng = np.random.default_rng(seed)
    real = real[torch.as_tensor(rng.permutation(len(real))[:n])]
    synth = synth[torch.as_tensor(rng.permutation(len(synth))[:n])]
    half = n // 2
    x_train = torch.cat([real[:half], synth[:half]])
    y_train = torch.cat([torch.zeros(half), torch.ones(half)])
    x_test = torch.cat([real[half:], synth[half:]])
    y_test = torch.cat([torch.zeros(n - half), torch.ones(n - half)])

    torch.manual_seed(seed)
    net = _classifier(real.shape[1])
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    net.train()
    for _ in range(steps):
        pick = torch.randint(0, len(x_train), (min(32, len(x_train)),), generator=gen)
        xb = x_train[pick]
        if torch.rand((), generator=gen) < 0.5:
            xb = xb.flip(-1)
        loss = loss_fn(net(xb)[:, 0], y_train[pick])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    net.eval()
    with torch.no_grad():
        predicted = (net(x_test)[:, 0] > 0).float()
    correct = int((predicted == y_test).sum())
    low, high = wilson_interval(correct, len(y_test))
    return {
        "accuracy": correct / len(y_test),
        "ci95": [low, high],
        "n_test": int(len(y_test)),
        "n_train": int(len(y_train)),
        "steps": steps,
    }
