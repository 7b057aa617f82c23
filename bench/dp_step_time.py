"""DP-SGD step time vs plain SGD for the segmentation network, side by side in one run.

Three ways to take an optimiser step of MONAI's UNet (instance norm, PReLU, transposed
convolutions) on the same batches, interleaved so that machine noise hits all alike:

* ``sgd``: plain Adam step;
* ``dp``: Opacus DP-SGD (per-sample gradients, clipping, noise) with FedSynth's
  per-sample rules for PReLU and ConvTranspose2d (``common/privacy/grad_samplers.py``);
* ``dp-functorch``: the same, with Opacus's ``torch.func`` fallback for those two layers
  (what Opacus does without the rules).

Usage::

    python bench/dp_step_time.py [--image-size 128] [--batch 4] [--steps 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path

import torch


def _step_time(mode: str, x, y, steps: int) -> float:
    from monai.losses import DiceCELoss
    from opacus import PrivacyEngine
    from opacus.grad_sample import GradSampleModule

    from common.privacy import grad_samplers
    from common.seg.networks import create_network

    torch.manual_seed(0)
    model = create_network("unet")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=len(x))
    if mode != "sgd":
        if mode == "dp":
            grad_samplers.register()
        else:  # without the rules: Opacus falls back to torch.func for these layers
            for layer in (torch.nn.PReLU, torch.nn.ConvTranspose2d):
                GradSampleModule.GRAD_SAMPLERS.pop(layer, None)
        model, opt, _ = PrivacyEngine().make_private(
            module=model, optimizer=opt, data_loader=loader, noise_multiplier=1.0,
            max_grad_norm=1.0, poisson_sampling=False,
        )  # fmt: skip
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    for _ in range(2):  # warm-up
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    start = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/dp_step_time.json"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    g = torch.Generator().manual_seed(0)
    s = args.image_size
    x = torch.rand(args.batch, 1, s, s, generator=g)
    y = (torch.rand(args.batch, 1, s, s, generator=g) > 0.9).float()
    modes = ("sgd", "dp", "dp-functorch")
    times: dict[str, list[float]] = {m: [] for m in modes}
    for _ in range(args.repeats):
        for mode in modes:  # interleaved; dp-functorch last, as it unregisters the rules
            times[mode].append(_step_time(mode, x, y, args.steps))
    med = {m: statistics.median(v) for m, v in times.items()}
    result = {
        "measured": time.strftime("%Y-%m-%d %H:%M"),
        "torch-threads": torch.get_num_threads(),
        "image-size": s,
        "batch": args.batch,
        "steps": args.steps,
        "repeats": args.repeats,
        "seconds-per-step": times,
        "median": med,
        "dp/sgd": med["dp"] / med["sgd"],
        "dp-functorch/sgd": med["dp-functorch"] / med["sgd"],
    }
    for m in modes:
        print(f"{m:13s} {med[m] * 1000:7.1f} ms/step  ({med[m] / med['sgd']:.2f}x plain)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
