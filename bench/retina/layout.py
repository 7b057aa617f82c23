"""DRIVE and CHASE_DB1 as a two-site consortium, in FedSynth's image-folder layout.

Nothing is copied: every file is a symbolic link into ``../shared/data/retina`` under the
name the intake expects (``images/NAME``, ``masks/NAME``, ``masks2/NAME``, ``fov/NAME``,
one ``dataset.json`` naming the camera per group of images).

Split (no child in both a site and the held-out set):

* site-1 (Canon CR5): DRIVE's 20 training images, first observer's labels, FOV masks;
* site-2 (Nidek NM-200-D): CHASE_DB1 children 01-07 (14 eyes), both observers' labels;
* heldout/drive: DRIVE's 20 test images, first observer (reference) and second observer;
* heldout/chase: CHASE_DB1 children 08-14 (14 eyes), both observers.
"""

from __future__ import annotations

import json
from pathlib import Path

RETINA = Path(__file__).resolve().parents[3] / "shared" / "data" / "retina"
CANON = {"manufacturer": "Canon", "model": "CR5 non-mydriatic 3CCD"}
NIDEK = {"manufacturer": "Nidek", "model": "NM-200-D"}
SITE_CHILDREN = range(1, 8)
HELDOUT_CHILDREN = range(8, 15)


def _link(target: Path, link: Path) -> None:
    if not target.is_file():
        raise FileNotFoundError(f"{target} is missing: is {RETINA} complete (see its README)?")
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target.resolve())


def _group(out: Path, vendor: dict, cases: list[dict]) -> int:
    """One folder of image folders: ``cases`` are ``{"name", "image", "mask", ...}``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "dataset.json").write_text(json.dumps(vendor))
    for case in cases:
        for role in ("image", "mask", "mask2", "fov"):
            if case.get(role):
                folder = {"image": "images", "mask": "masks", "mask2": "masks2", "fov": "fov"}
                src = Path(case[role])
                _link(src, out / folder[role] / f"{case['name']}{src.suffix}")
    return len(cases)


def _drive(split: str, numbers) -> list[dict]:
    root = RETINA / "DRIVE" / split
    out = []
    for n in numbers:
        out.append(
            {
                "name": f"{n:02d}_{split}",
                "image": root / "images" / f"{n:02d}_{split}.tif",
                "mask": root / "1st_manual" / f"{n:02d}_manual1.gif",
                "mask2": (root / "2nd_manual" / f"{n:02d}_manual2.gif")
                if split == "test"
                else None,
                "fov": root / "mask" / f"{n:02d}_{split}_mask.gif",
            }
        )
    return out


def _chase(children) -> list[dict]:
    root = RETINA / "CHASE_DB1"
    out = []
    for child in children:
        for eye in "LR":
            name = f"Image_{child:02d}{eye}"
            out.append(
                {
                    "name": name,
                    "image": root / "images" / f"{name}.jpg",
                    "mask": root / "1st_label" / f"{name}_1stHO.png",
                    "mask2": root / "2nd_label" / f"{name}_2ndHO.png",
                    "fov": root / "mask" / f"{name}.png",
                }
            )
    return out


def build(out: Path) -> dict:
    """Lay the consortium out under ``out``; return the split as a manifest.

    Returns:
        ``{"sites": [{"name", "dir", "vendor", "cases"}], "heldout": {...}, "split": ...}``,
        also written to ``out/manifest.json``.
    """
    if not RETINA.is_dir():
        raise FileNotFoundError(
            f"retina data not found at {RETINA}: this benchmark needs the workplace's "
            "shared folder (../shared/data/retina) beside the repository"
        )
    sites = [
        ("site-1", CANON, _drive("training", range(21, 41))),
        ("site-2", NIDEK, _chase(SITE_CHILDREN)),
    ]
    manifest: dict = {"format": "fedsynth-retina/1", "sites": [], "heldout": {}}
    for name, vendor, cases in sites:
        n = _group(out / name, vendor, cases)
        manifest["sites"].append({"name": name, "dir": name, "vendor": vendor, "cases": n})
    held = {
        "drive": _group(out / "heldout" / "drive", CANON, _drive("test", range(1, 21))),
        "chase": _group(out / "heldout" / "chase", NIDEK, _chase(HELDOUT_CHILDREN)),
    }
    manifest["heldout"] = {"dir": "heldout", "groups": held}
    manifest["split"] = {
        "site-1": "DRIVE training 21-40 (Canon CR5), first observer",
        "site-2": "CHASE_DB1 children 01-07, left and right eye (Nidek NM-200-D), "
        "first and second observer",
        "heldout": "DRIVE test 01-20 (Canon) and CHASE_DB1 children 08-14 (Nidek); "
        "first observer is the reference, second observer the human comparison",
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest
