"""Which generator for real colour images on this CPU: candidates side by side, one site.

Each candidate diffusion configuration trains on one site's training split (Kvasir-SEG,
128 x 128, colour, from ``bench/polyp``'s prepared work folder) for the same wall-clock
budget (its step time is measured first and its step count set from it), then samples
pairs, which are judged three ways against the site's own validation split (real frames
the generator never saw):

* the classifier two-sample test (held-out accuracy; 0.5: indistinguishable);
* mask statistics (foreground share, structures, size, boundary, roundness);
* utility: the segmentation network trained on the synthetic pairs alone, and on the
  same number of real training pairs, for the same passes, scored on the validation split.

Usage::

    python bench/generator.py [--minutes 8] [--n 200] [--only patch2 levels5]
        [--workdir /tmp/fedsynth-polyp]

Results: ``bench/results/generator.json`` and a contact sheet of each candidate's
synthetic pairs (``generator_<name>.png``; no real frame: the results are committed, and the
shared data may not be copied into the repository).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

from bench import tables  # noqa: E402
from bench.polyp import layout  # noqa: E402
from common.config import RunSettings  # noqa: E402
from common.synth import diffusion  # noqa: E402

BASE = diffusion.DiffusionSettings(image_size=128, image_channels=3, batch_size=16)
CANDIDATES = {
    # the CPU configuration's recipe at 128 px with a fifth level (4.1 M parameters)
    "levels5": replace(BASE, channels=(16, 32, 64, 128, 128)),
    # the UNet on 2 x 2 pixel blocks (12 + 4 channels in, 64 x 64 positions; 4.1 M)
    "patch2": replace(BASE, channels=(32, 64, 128, 128), patch=2),
    # on 4 x 4 blocks (48 + 16 channels in, 32 x 32 positions): more steps in the same time
    "patch4": replace(BASE, channels=(64, 128, 128, 128), patch=4),
}
SEG_EPOCHS = 30


def _seg_dice(train, val, run: RunSettings) -> float:
    return tables.fit(train, val, run, SEG_EPOCHS)["overall"]["dice"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=8.0, help="training budget each")
    parser.add_argument("--n", type=int, default=200, help="pairs sampled per candidate")
    parser.add_argument("--only", nargs="*", default=list(CANDIDATES))
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/fedsynth-polyp"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/generator.json"))
    args = parser.parse_args()
    tables.check_rows(args.only, CANDIDATES)
    from common.synth.pairs import as_site_arrays
    from common.synth.quality import mask_statistics, pair_grid_png
    from common.synth.two_sample import classifier_two_sample

    console = Console()
    started = time.perf_counter()
    run = RunSettings.from_config(
        {"image-size": 128, "channels": "rgb", "network": "unet-deep", "registry": ""}
    )
    data = args.workdir / "data"
    layout.build(data)
    sites, _ = tables.load(data, ["kvasir"], args.workdir, run, console)
    from client.task import load_site
    from common.config import SiteSettings

    site = SiteSettings(str(data / "kvasir"), str(args.workdir / "state" / "kvasir"), "kvasir")
    train, val = load_site(site, run)
    x, m = train.images.astype(np.float32), train.masks
    rng = np.random.default_rng(0)
    real_subset = train.subset(rng.permutation(len(train))[: args.n])
    result = {
        "site": "kvasir",
        "train": len(train),
        "val": len(val),
        "minutes": args.minutes,
        "n": args.n,
        "segmentation": {"network": run.network, "epochs": SEG_EPOCHS, "image-size": 128},
        "masks_real_val": mask_statistics(val.masks),
        "candidates": {},
    }
    if args.out.exists():  # keep candidates an earlier --only run measured alike
        earlier = json.loads(args.out.read_text())
        if (earlier.get("minutes"), earlier.get("n")) == (args.minutes, args.n):
            result["candidates"] = earlier.get("candidates", {})
    start = time.perf_counter()
    result["real"] = {
        "dice": _seg_dice(real_subset, val, run),
        "seconds": time.perf_counter() - start,
    }
    console.print(f"real {args.n} pairs: Dice {result['real']['dice']:.3f}")
    for name in args.only:
        s = CANDIDATES[name]
        # step time after warm-up (the first steps of a fresh model cost several times more)
        _, warm = diffusion.train_diffusion(
            diffusion.create_model(s), x, m, replace(s, train_steps=3)
        )
        _, timed = diffusion.train_diffusion(
            diffusion.create_model(s), x, m, replace(s, train_steps=13)
        )
        step = (timed.seconds - warm.seconds) / 10
        s = replace(s, train_steps=max(10, int(args.minutes * 60 / step)))
        model = diffusion.create_model(s)
        params = sum(p.numel() for p in model.parameters())
        console.print(
            f"{name}: {params / 1e6:.2f} M parameters, {step:.2f} s/step, {s.train_steps} steps"
        )
        ema, stats = diffusion.train_diffusion(model, x, m, s)
        t = time.perf_counter()
        images, masks = diffusion.sample(ema, s, args.n, seed=1)
        sample_seconds = time.perf_counter() - t
        two = classifier_two_sample(val.images.astype(np.float32), val.masks, images, masks)
        synth = as_site_arrays({"synthetic": (images, masks)}, 128, "rgb")
        t = time.perf_counter()
        dice = _seg_dice(synth, val, run)
        row = {
            "settings": s.to_json(),
            "parameters": params,
            "train_seconds": stats.seconds,
            "images_seen": stats.images_seen,
            "final_loss": stats.final_loss,
            "sample_seconds": sample_seconds,
            "two_sample": two,
            "masks_synthetic": mask_statistics(masks),
            "synthetic_only_dice": dice,
            "synthetic_only_vs_real": dice / result["real"]["dice"],
            "seg_seconds": time.perf_counter() - t,
        }
        result["candidates"][name] = row
        # synthetic pairs only: the results are committed, and no real frame may be
        png = pair_grid_png(images[:0], masks[:0], images[:16], masks[:16])
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_name(f"generator_{name}.png").write_bytes(png)
        console.print(
            f"[bold]{name}[/bold]: two-sample accuracy {two['accuracy']:.2f}, "
            f"synthetic-only Dice {dice:.3f} ({row['synthetic_only_vs_real']:.2f}x real), "
            f"foreground {row['masks_synthetic']['foreground_share']:.3f} "
            f"(real {result['masks_real_val']['foreground_share']:.3f})"
        )
        args.out.write_text(json.dumps(result, indent=1))
    result["seconds"] = time.perf_counter() - started
    args.out.write_text(json.dumps(result, indent=1))
    console.print(
        f"{len(result['candidates'])} candidates in {result['seconds'] / 60:.1f} min; {args.out}"
    )


if __name__ == "__main__":
    main()
