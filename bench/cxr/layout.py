"""Montgomery, Shenzhen and JSRT as a three-site consortium, in FedSynth's image-folder layout.

Nothing is copied: every file is a symbolic link into ``../shared/data/cxr`` under the
name the intake expects (``images/NAME.png``, ``masks/NAME.png``, one ``dataset.json`` per
site naming its acquisition chain, which is the vendor column of every table).

Split, patient-level: each of these datasets holds one radiograph per patient, so a
patient is an image. An image goes to the coordinator's held-out set when the first two
hex digits of SHA-256(file name) fall below :data:`HELDOUT_SHARE` of 256 (about a fifth
of each site, the same images on every machine and at every run); the rest stays at its
site. The split, with its counts, is written into every results file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

CXR = Path(__file__).resolve().parents[3] / "shared" / "data" / "cxr"
SITES = {  # site name: (folder in CXR, its acquisition chain as manufacturer and model)
    "montgomery": ("montgomery", {"manufacturer": "Eureka", "model": "CR (Montgomery, USA)"}),
    "shenzhen": ("shenzhen", {"manufacturer": "Philips", "model": "DR (Shenzhen, China)"}),
    "jsrt": ("jsrt", {"manufacturer": "Digitised film", "model": "(JSRT, Japan)"}),
}
HELDOUT_SHARE = 0.2


def heldout(name: str) -> bool:
    """Whether the image ``name`` belongs to the held-out set (deterministic)."""
    return int(hashlib.sha256(name.encode()).hexdigest()[:2], 16) < HELDOUT_SHARE * 256


def _link(target: Path, link: Path) -> None:
    if not target.is_file():
        raise FileNotFoundError(f"{target} is missing: is {CXR} complete (see its README)?")
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target.resolve())


def build(out: Path) -> dict:
    """Lay the consortium out under ``out``; return the split as a manifest.

    Returns:
        ``{"sites": [{"name", "dir", "vendor", "cases"}], "heldout": {...}, "split": ...}``,
        also written to ``out/manifest.json``.
    """
    if not CXR.is_dir():
        raise FileNotFoundError(
            f"chest X-ray data not found at {CXR}: this benchmark needs the workplace's "
            "shared folder (../shared/data/cxr) beside the repository"
        )
    manifest: dict = {"format": "fedsynth-cxr/1", "sites": [], "heldout": {"dir": "heldout"}}
    split: dict = {}
    groups = {}
    for name, (folder, vendor) in SITES.items():
        images = sorted((CXR / folder / "images").glob("*.png"))
        kept = held = 0
        for image in images:
            mask = CXR / folder / "masks" / image.name
            where = out / "heldout" / name if heldout(image.name) else out / name
            _link(image, where / "images" / image.name)
            _link(mask, where / "masks" / image.name)
            held, kept = (held + 1, kept) if heldout(image.name) else (held, kept + 1)
        for where in (out / name, out / "heldout" / name):
            (where / "dataset.json").write_text(json.dumps(vendor))
        manifest["sites"].append({"name": name, "dir": name, "vendor": vendor, "cases": kept})
        groups[name] = held
        split[name] = f"{folder}: {kept} images at the site, {held} in the held-out set"
    manifest["heldout"]["groups"] = groups
    split["rule"] = (
        f"patient-level (one radiograph per patient): held out when SHA-256(file name)'s "
        f"first byte < {HELDOUT_SHARE:.0%} of 256"
    )
    manifest["split"] = split
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest
