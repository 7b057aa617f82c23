"""Where the strict burned-in text check filled pixels of a centre's frames, and whether any
filled region covers the polyp (the mask).

The intake fills every text-like region an image-folder image shows (no header vouches for
it). On frames that carry no text, a filled region is a false alarm; one that overlaps the
polyp changes what the model learns from, so each is counted here: per frame the filled
boxes, the share of the polyp they cover and the share of their area that is polyp.

Usage::

    python bench/polyp/cleaned.py /tmp/fedsynth-polyp/data/clinicdb   # a laid-out site
    python bench/polyp/cleaned.py DIR --out bench/results/polyp_cleaned_clinicdb.json

It runs the same check the intake runs, in this process alone (Tesseract is loaded; no
torch here).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from anywhere

from common.errors import IntakeError  # noqa: E402


def overlap(mask: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> tuple[float, float]:
    """``(share of the mask's pixels inside a box, share of the boxes' pixels on the mask)``
    for ``boxes`` as ``(top, left, height, width)``."""
    filled = np.zeros(mask.shape, bool)
    for top, left, height, width in boxes:
        filled[top : top + height, left : left + width] = True
    fg = mask > 0
    covered = float((filled & fg).sum() / fg.sum()) if fg.any() else 0.0
    on_mask = float((filled & fg).sum() / filled.sum()) if filled.any() else 0.0
    return covered, on_mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", type=Path, help="a site folder with images/ and masks/")
    parser.add_argument("--out", type=Path, default=None, help="results JSON")
    args = parser.parse_args()
    from common.deid import burned_in

    start, frames = time.perf_counter(), []
    images = sorted((args.site / "images").iterdir(), key=lambda p: (len(p.stem), p.stem))
    for path in images:
        masks = list((args.site / "masks").glob(f"{path.stem}.*"))
        if not masks:
            frames.append({"frame": path.name, "fate": "no mask"})
            continue
        pixels = np.asarray(Image.open(path).convert("RGB"))
        mask = np.asarray(Image.open(masks[0]).convert("L")) > 127
        try:
            _, done = burned_in.clean_image(pixels)
        except IntakeError as exc:
            frames.append({"frame": path.name, "fate": f"quarantined: {exc}"})
            continue
        covered, on_mask = overlap(mask, done.boxes)
        frames.append(
            {
                "frame": path.name,
                "fate": "cleaned" if done.boxes else "unchanged",
                "boxes": [list(map(int, b)) for b in done.boxes],
                "polyp covered": round(covered, 4),
                "box area on polyp": round(on_mask, 4),
            }
        )
    cleaned = [f for f in frames if f["fate"] == "cleaned"]
    touching = [f for f in cleaned if f["polyp covered"] > 0]
    summary = {
        "site": str(args.site),
        "frames": len(frames),
        "cleaned": len(cleaned),
        "quarantined": sum(f["fate"].startswith("quarantined") for f in frames),
        "cleaned frames whose boxes touch the polyp": len(touching),
        "largest share of a polyp covered": max((f["polyp covered"] for f in cleaned), default=0),
        "polyp pixels covered, all frames": round(
            float(np.mean([f.get("polyp covered", 0.0) for f in frames])), 5
        ),
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(summary, indent=1))
    for f in sorted(touching, key=lambda f: -f["polyp covered"])[:10]:
        print(f"  {f['frame']}: {len(f['boxes'])} box(es), {f['polyp covered']:.1%} of the polyp")
    if args.out:
        args.out.write_text(json.dumps({**summary, "per frame": frames}, indent=1) + "\n")


if __name__ == "__main__":
    main()
