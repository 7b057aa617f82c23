"""Kvasir-SEG and CVC-ClinicDB as a two-site consortium, in FedSynth's image-folder layout.

Nothing is copied: every file is a symbolic link into ``../shared/data/polyp`` under the
name the intake expects (``images/NAME.jpg``, ``masks/NAME.png``, one ``dataset.json`` per
centre naming it, which is the vendor column of every table). The coordinator's held-out
set holds both centres as groups (``heldout/kvasir``, ``heldout/clinicdb``), each with its
own ``dataset.json``, so every table has a column per centre.

Split, about a fifth of each centre held out, the same on every machine and at every run:

* **Kvasir-SEG**: its frames are taken as independent (the dataset names no patient,
  sequence or order), so a frame is held out when the first byte of SHA-256(file name)
  falls below :data:`HELDOUT_SHARE` of 256, as in ``bench/cxr``.
* **CVC-ClinicDB**: frames 1-612 are 29 colonoscopy sequences in acquisition order, and
  consecutive frames of one sequence show the same polyp: the unit of the split is the
  sequence. The files do not say where a sequence ends, so :func:`sequences` recovers
  it from the pixels: the partition of 1..612 into 29 runs of consecutive frames whose
  frames are most alike (least summed distance within each run, found exactly by
  dynamic programming; a frame's features are its colour histogram and its greyscale
  thumbnail). The boundaries it finds were checked by eye on a contact sheet
  (:data:`CHECKED_BOUNDARIES`; ``tests/bench/test_polyp_layout.py`` keeps them). Whole
  sequences are then held out in the order of SHA-256(first frame's file name) while
  each brings the held-out share nearer to a fifth of the frames.

The split, with its counts and the held-out sequences, is written into every results
file. ``quick`` lays out a fifth of each centre (Kvasir frames by the second byte of
the same hash, every fifth ClinicDB sequence) and splits it by the same rules.

Usage::

    python bench/polyp/layout.py [OUT]   # print the sequences and the split
"""

from __future__ import annotations

import hashlib
import json
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np

POLYP = Path(__file__).resolve().parents[3] / "shared" / "data" / "polyp"
SITES = {  # site name: (folder in POLYP, the centre as manufacturer and model)
    "kvasir": (
        "kvasir-seg",
        {"manufacturer": "Kvasir-SEG", "model": "colonoscopy (Vestre Viken, Norway)"},
    ),
    "clinicdb": (
        "cvc-clinicdb",
        {"manufacturer": "CVC-ClinicDB", "model": "colonoscopy (Hospital Clinic, Spain)"},
    ),
}
HELDOUT_SHARE = 0.2
QUICK_SHARE = 0.2
CLINICDB_SEQUENCES = 29  # as CVC-ClinicDB's authors describe it
#: The last frame of every ClinicDB sequence but the last, as :func:`sequences` finds
#: them, each checked by eye (frames before and after, with their masks) on 2026-12-03.
CHECKED_BOUNDARIES = (
    25, 50, 67, 78, 103, 126, 151, 177, 199, 205, 227, 252, 277, 297,
    317, 342, 363, 383, 408, 428, 447, 466, 478, 503, 528, 546, 571, 591,
)  # fmt: skip


def _byte(name: str, index: int = 0) -> int:
    return int(hashlib.sha256(name.encode()).hexdigest()[2 * index : 2 * index + 2], 16)


def heldout(name: str) -> bool:
    """Whether the Kvasir frame ``name`` belongs to the held-out set (deterministic)."""
    return _byte(name) < HELDOUT_SHARE * 256


def in_quick(name: str) -> bool:
    """Whether the Kvasir frame ``name`` is in the quick subset (a second, independent byte)."""
    return _byte(name, 1) < QUICK_SHARE * 256


def _features(folder: Path, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Per frame 1..count: its colour histogram (8x8x8 RGB bins over the lit pixels: a
    patient's mucosa and a session's light) and its standardised 16x12 greyscale
    thumbnail (what the camera sees)."""
    from PIL import Image

    colours, thumbs = [], []
    for n in range(1, count + 1):
        with Image.open(folder / "images" / f"{n}.jpg") as img:
            rgb = img.convert("RGB")
            small = np.asarray(rgb.resize((96, 72), Image.BILINEAR), np.float32)
            grey = np.asarray(rgb.convert("L").resize((16, 12), Image.BILINEAR), np.float32)
        lit = (small.sum(-1) > 60) & (small.max(-1) < 250)  # no black border, no glare
        q = (small[lit] // 32).astype(int)
        hist = np.bincount((q[:, 0] * 8 + q[:, 1]) * 8 + q[:, 2], minlength=512)
        colours.append(hist / max(1, lit.sum()))
        thumbs.append(((grey - grey.mean()) / (grey.std() + 1e-6)).ravel())
    return np.array(colours), np.array(thumbs)


def _partition(dist: np.ndarray, runs: int) -> list[int]:
    """The ``runs`` runs of consecutive items with the least summed within-run cost
    (a run's cost: the sum of its pairwise distances over its length); returns the
    index where each run but the first starts."""
    n = len(dist)
    cum = np.zeros((n + 1, n + 1))
    cum[1:, 1:] = dist.cumsum(0).cumsum(1)
    i = np.arange(n + 1)
    a, b = i[:, None], i[None, :]
    inside = cum[b, b] - cum[a, b] - cum[b, a] + cum[a, a]  # sum of dist[a:b, a:b]
    cost = np.where(b > a, inside / np.maximum(b - a, 1), np.inf)
    best = np.full(n + 1, np.inf)
    best[0] = 0.0
    start = np.zeros((runs + 1, n + 1), int)
    for k in range(1, runs + 1):
        total = best[:, None] + cost  # the first k-1 runs end at a, the k-th is [a, b)
        start[k] = total.argmin(0)
        best = total[start[k], i]
    cuts, end = [], n
    for k in range(runs, 0, -1):
        end = int(start[k, end])
        cuts.append(end)
    return sorted(c for c in cuts if c > 0)


@lru_cache(maxsize=2)
def sequences(folder: Path | None = None, runs: int = CLINICDB_SEQUENCES):
    """CVC-ClinicDB's sequences as ``(first, last)`` frame numbers, in acquisition order.

    The partition of its frames into ``runs`` runs of consecutive frames that are most
    alike: distances between every two frames (L1 between colour histograms plus L2
    between thumbnails, each divided by its median), exact by dynamic programming (about
    2 s for 612 frames). The same 28 boundaries come out with other histogram bins,
    thumbnail sizes, weights and thresholds (checked when it was written); 28 runs merge
    the shortest sequence (200-205) with its neighbour, 30 runs cut 384-408 at 388.
    """
    from scipy.spatial.distance import cdist

    folder = folder or POLYP / SITES["clinicdb"][0]
    count = len(list((folder / "images").glob("*.jpg")))
    colours, thumbs = _features(folder, count)
    dist = cdist(colours, colours, "cityblock")
    dist = dist / np.median(dist)
    near = cdist(thumbs, thumbs)
    dist += near / np.median(near)
    starts = [0, *_partition(dist, runs), count]
    return tuple((starts[k] + 1, starts[k + 1]) for k in range(len(starts) - 1))


def clinicdb_heldout(seqs, share: float = HELDOUT_SHARE) -> list[int]:
    """The held-out sequences (numbers counting from 1): whole sequences in the order of
    SHA-256(first frame's file name), each while it brings the held-out frames nearer to
    ``share`` of all (the first always)."""
    total = sum(last - first + 1 for first, last in seqs)
    order = sorted(
        range(len(seqs)), key=lambda k: hashlib.sha256(f"{seqs[k][0]}.jpg".encode()).digest()
    )
    held, frames = [], 0
    for k in order:
        length = seqs[k][1] - seqs[k][0] + 1
        if held and frames + length / 2 > share * total:
            break
        held.append(k + 1)
        frames += length
    return sorted(held)


def _link(target: Path, link: Path) -> None:
    if not target.is_file():
        raise FileNotFoundError(f"{target} is missing: is {POLYP} complete (see its README)?")
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() and link.readlink() == target.resolve():
        return
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target.resolve())


def _place(folder: Path, stems: list[str], where: Path) -> None:
    """Link ``stems``' frames and masks under ``where``; drop links a different split
    (``quick`` or not) left there. Unchanged links and ``dataset.json`` keep their
    times, so the intake's fingerprint holds and a prepared cache is reused."""
    for sub, ext in (("images", ".jpg"), ("masks", ".png")):
        names = {f"{stem}{ext}" for stem in stems}
        for stem in stems:
            _link(folder / sub / f"{stem}{ext}", where / sub / f"{stem}{ext}")
        for old in (where / sub).iterdir() if (where / sub).is_dir() else ():
            if old.is_symlink() and old.name not in names:
                old.unlink()


def _write(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def build(out: Path, quick: bool = False) -> dict:
    """Lay the consortium out under ``out``; return the split as a manifest.

    Args:
        out: an empty folder, or one this function laid out before (links are replaced).
        quick: lay out a fifth of each centre only (see the module docstring).

    Returns:
        ``{"sites": [{"name", "dir", "vendor", "cases"}], "heldout": {...}, "split": ...}``,
        also written to ``out/manifest.json``.
    """
    if not POLYP.is_dir():
        raise FileNotFoundError(
            f"polyp data not found at {POLYP}: this benchmark needs the workplace's "
            "shared folder (../shared/data/polyp) beside the repository"
        )
    manifest: dict = {"format": "fedsynth-polyp/1", "sites": [], "heldout": {"dir": "heldout"}}
    split: dict = {}
    groups: dict = {}
    subset = " (quick: a fifth of each centre)" if quick else ""

    folder = SITES["kvasir"][0]
    root = POLYP / folder
    stems = sorted(p.stem for p in (root / "images").glob("*.jpg"))
    stems = [s for s in stems if in_quick(s)] if quick else stems
    parts = {"kvasir": [s for s in stems if not heldout(s)]}
    groups["kvasir"] = [s for s in stems if heldout(s)]
    split["kvasir"] = (
        f"{folder}{subset}: {len(parts['kvasir'])} frames at the site, "
        f"{len(groups['kvasir'])} in the held-out set"
    )

    folder = SITES["clinicdb"][0]
    root = POLYP / folder
    seqs = sequences(root)
    numbers = [k + 1 for k in range(len(seqs)) if not quick or k % 5 == 0]
    chosen = [seqs[n - 1] for n in numbers]
    held = [numbers[k - 1] for k in clinicdb_heldout(chosen)]
    frames = {n: [str(f) for f in range(seqs[n - 1][0], seqs[n - 1][1] + 1)] for n in numbers}
    parts["clinicdb"] = [f for n in numbers if n not in held for f in frames[n]]
    groups["clinicdb"] = [f for n in held for f in frames[n]]
    split["clinicdb"] = (
        f"{folder}{subset}: {len(parts['clinicdb'])} frames "
        f"({_count(len(numbers) - len(held), 'sequence')}) at the site, "
        f"{len(groups['clinicdb'])} ({_count(len(held), 'sequence')}) in the held-out set"
    )

    for name, (folder, vendor) in SITES.items():
        _place(POLYP / folder, parts[name], out / name)
        _place(POLYP / folder, groups[name], out / "heldout" / name)
        for where in (out / name, out / "heldout" / name):
            _write(where / "dataset.json", json.dumps(vendor))
        manifest["sites"].append(
            {"name": name, "dir": name, "vendor": vendor, "cases": len(parts[name])}
        )
    manifest["heldout"]["groups"] = {name: len(groups[name]) for name in SITES}
    split["rule"] = (
        f"kvasir: frames are independent, held out when SHA-256(file name)'s first byte "
        f"< {HELDOUT_SHARE:.0%} of 256; clinicdb: by sequence (consecutive frames of one "
        f"polyp are near-duplicates), whole sequences held out in the order of "
        f"SHA-256(first frame's file name) while each brings the held-out share nearer "
        f"to {HELDOUT_SHARE:.0%} of the frames"
    )
    split["sequence rule"] = (
        f"CVC-ClinicDB's frames 1-{seqs[-1][1]} are in acquisition order; its "
        f"{len(seqs)} sequences are the partition into {len(seqs)} runs of consecutive "
        "frames with the least within-run distance (8x8x8 RGB histogram L1 + 16x12 "
        "greyscale thumbnail L2, each over its median; exact, by dynamic programming), "
        "boundaries checked by eye"
    )
    split["clinicdb sequences"] = {f"{n:02d}": f"{a}-{b}" for n, (a, b) in enumerate(seqs, 1)}
    split["clinicdb held out"] = [f"{n:02d}" for n in held]
    if quick:
        split["clinicdb quick sequences"] = [f"{n:02d}" for n in numbers]
    manifest["split"] = split
    out.mkdir(parents=True, exist_ok=True)
    _write(out / "manifest.json", json.dumps(manifest, indent=2))
    return manifest


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp/fedsynth-polyp/data")
    manifest = build(out)
    seqs = sequences(POLYP / SITES["clinicdb"][0])
    held = {int(n) for n in manifest["split"]["clinicdb held out"]}
    print(f"CVC-ClinicDB: {len(seqs)} sequences recovered (frame ranges, * held out):")
    for n, (a, b) in enumerate(seqs, 1):
        print(f"  {n:02d}{'*' if n in held else ' '} {a:3d}-{b:3d} ({b - a + 1} frames)")
    found = tuple(b for _, b in seqs[:-1])
    verdict = "as checked by eye" if found == CHECKED_BOUNDARIES else "NOT as checked by eye"
    print(f"boundaries {verdict}: {found}")
    for key in ("kvasir", "clinicdb", "rule"):
        print(f"{key}: {manifest['split'][key]}")
    print(f"laid out under {out}")


if __name__ == "__main__":
    main()
