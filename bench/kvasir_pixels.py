"""Burned-in text on real colonoscopy frames: found, cleaned, quarantined, missed.

Runs the strict pixel check (:func:`common.deid.burned_in.clean_image`, the one image folders
get at intake) on the 50 hand-checked Kvasir-SEG frames of ``bench/kvasir_text_frames.json``
and counts, against that list: frames with text that were cleaned, quarantined, or left
untouched (missed); frames without text that were quarantined (a false positive costs a
hospital data) or had something filled; dates and times Tesseract can read before and
after; polyp-mask pixels inside filled boxes; seconds per frame.

Usage::

    python bench/kvasir_pixels.py [--out bench/results/kvasir_pixels.json] [--sheets DIR]

``--sheets DIR`` writes before/after contact sheets for a person to check what remains;
they show real frames: keep them outside the repository.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
KVASIR = ROOT.parent / "shared" / "data" / "polyp" / "kvasir-seg"
DATE_OR_TIME = re.compile(r"\d{1,2}[/:.]\d{2}")


def _dates_and_times(rgb: np.ndarray) -> int:
    from PIL import Image

    from common.deid.burned_in import cleaning

    grey = Image.fromarray(cleaning._to_uint8(rgb))
    grey = grey.resize((rgb.shape[1] * 2, rgb.shape[0] * 2))
    words = cleaning._ocr().words(np.asarray(grey))
    return sum(bool(DATE_OR_TIME.search(w[-1])) for w in words)


def main() -> None:
    from PIL import Image

    from common.deid import burned_in
    from common.errors import IntakeError

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/kvasir_pixels.json")
    parser.add_argument("--sheets", type=Path, default=None)
    args = parser.parse_args()
    listed = json.loads((ROOT / "bench/kvasir_text_frames.json").read_text())["frames"]
    rows, pairs = [], []
    start = time.perf_counter()
    for entry in listed:
        rgb = np.asarray(Image.open(KVASIR / "images" / f"{entry['frame']}.jpg").convert("RGB"))
        mask = np.asarray(Image.open(KVASIR / "masks" / f"{entry['frame']}.png").convert("L"))
        row = {**entry, "readable before": _dates_and_times(rgb)}
        try:
            cleaned, done = burned_in.clean_image(rgb)
        except IntakeError as exc:
            row.update(outcome="quarantined", reason=str(exc))
            rows.append(row)
            continue
        covered = np.zeros(mask.shape, bool)
        for top, left, height, width in done.boxes:
            covered[top : top + height, left : left + width] = True
        row.update(
            outcome="cleaned" if done.cleaned else "untouched",
            regions=done.regions,
            words=done.words,
            boxes=len(done.boxes),
            filled_share=float(covered.mean()),
            polyp_pixels_filled=int((covered & (mask > 127)).sum()),
            readable_after=_dates_and_times(cleaned),
        )
        rows.append(row)
        pairs.append((entry["frame"], rgb, cleaned))
    seconds = (time.perf_counter() - start) / len(listed)
    text = [r for r in rows if r["text"]]
    plain = [r for r in rows if not r["text"]]
    summary = {
        "frames": len(rows),
        "with text (hand-checked)": len(text),
        "with text: cleaned": sum(r["outcome"] == "cleaned" for r in text),
        "with text: quarantined": sum(r["outcome"] == "quarantined" for r in text),
        "with text: untouched (missed)": sum(r["outcome"] == "untouched" for r in text),
        "without text": len(plain),
        "without text: quarantined": sum(r["outcome"] == "quarantined" for r in plain),
        "without text: something filled": sum(r["outcome"] == "cleaned" for r in plain),
        "frames with a readable date or time, before": sum(r["readable before"] > 0 for r in rows),
        "frames with a readable date or time, after (released frames)": sum(
            r.get("readable_after", 0) > 0 for r in rows
        ),
        "frames whose filling touched the polyp mask": sum(
            r.get("polyp_pixels_filled", 0) > 0 for r in rows
        ),
        "seconds per frame": round(seconds, 3),
    }
    result = {"measured": time.strftime("%Y-%m-%d %H:%M"), "summary": summary, "frames": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(summary, indent=1))
    if args.sheets:
        args.sheets.mkdir(parents=True, exist_ok=True)
        for k in range(0, len(pairs), 8):
            tiles = [
                np.concatenate(
                    [np.asarray(Image.fromarray(x).resize((256, 256))) for x in (a, b)], 1
                )
                for _, a, b in pairs[k : k + 8]
            ]
            Image.fromarray(np.concatenate(tiles, 0)).save(args.sheets / f"sheet-{k // 8}.png")


if __name__ == "__main__":
    main()
