"""Which images get which burned-in text check, and why: the pixel recipe and the policy.

The recipe (``recipe.toml`` beside this file, versioned, reviewed like code) lists what is
checked *strictly* (BurnedInAnnotation=YES; Secondary Capture, ultrasound, X-ray
angiography and visible-light SOP classes; modalities that often burn text in; no
Modality; images from image folders), the modalities with no picture to check
(segmentations, dose grids), and fixed text regions known per device. Everything else
with pixels gets the *fast* check. :func:`policy` applies it to one dataset and names the
rule, with the recipe's version, for ``fedsynth anonymize --explain``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

RECIPE_FILE = Path(__file__).with_name("recipe.toml")


@dataclass(frozen=True)
class Recipe:
    """The pixel recipe (``common/deid/burned_in/recipe.toml``): what is checked strictly, and the
    fixed text regions known per device. Reviewed like code; ``version`` names it."""

    version: str
    burned_in_annotation_yes: bool
    no_modality: bool
    image_folders: bool
    modalities: frozenset[str]
    sop_classes: dict[str, str]
    unchecked_modalities: frozenset[str]
    known_regions: dict[tuple[str, str], float]

    @classmethod
    def load(cls, path: Path = RECIPE_FILE) -> Recipe:
        """Read and check a recipe file.

        Raises:
            ConfigError: a key is missing or a value has the wrong type; the message names
                the file and the key.
        """
        import tomllib

        from common.errors import ConfigError

        try:
            raw = tomllib.loads(Path(path).read_text())
            strict = raw["strict"]
            regions = {
                (str(r["manufacturer"]), str(r["model"])): float(r["top"])
                for r in raw.get("known_regions", [])
            }
            return cls(
                version=str(raw["version"]),
                burned_in_annotation_yes=bool(strict["burned_in_annotation_yes"]),
                no_modality=bool(strict["no_modality"]),
                image_folders=bool(strict["image_folders"]),
                modalities=frozenset(str(m) for m in strict["modalities"]),
                sop_classes={str(k): str(v) for k, v in strict["sop_classes"].items()},
                unchecked_modalities=frozenset(str(m) for m in raw["fast"]["unchecked_modalities"]),
                known_regions=regions,
            )
        except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"pixel recipe {path} is unusable ({type(exc).__name__}: {exc}); see "
                f"{RECIPE_FILE} for the expected keys"
            ) from None


@functools.cache
def recipe() -> Recipe:
    """The recipe in force (read once per process)."""
    return Recipe.load()


@dataclass(frozen=True)
class Policy:
    """How an image's pixels are checked, and why (the rule that applied).

    ``check`` is ``"strict"`` (clean every text-like region, confirm, or quarantine),
    ``"fast"`` (look for lines of glyph-like strokes; what is found sends the image to the
    strict check) or ``"none"``.
    """

    check: str
    rule: str

    @property
    def strict(self) -> bool:
        return self.check == "strict"


def policy(ds, rules: Recipe | None = None) -> Policy:
    """The pixel check that applies to ``ds`` (None for an image from an image folder).

    Args:
        ds: the dataset, or None for an image-folder image.
        rules: the recipe (default: :func:`recipe`); its version is named in the rule.
    """
    rules = rules or recipe()
    ver = f" (recipe {rules.version})"
    if ds is None:
        if rules.image_folders:
            return Policy("strict", "image folder: no header vouches for the pixels" + ver)
        return Policy("fast", "image folder, strict check turned off in the recipe" + ver)
    if rules.burned_in_annotation_yes and str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        return Policy("strict", "BurnedInAnnotation=YES" + ver)
    sop = str(ds.get("SOPClassUID", ""))
    for root, name in rules.sop_classes.items():
        if sop == root or sop.startswith(root + "."):
            return Policy("strict", f"SOP class {name}" + ver)
    modality = str(ds.get("Modality", "")).strip()
    if not modality and rules.no_modality:
        return Policy("strict", "no Modality: unknown source" + ver)
    if modality in rules.modalities:
        return Policy("strict", f"modality {modality} often carries burned-in text" + ver)
    if modality in rules.unchecked_modalities:
        return Policy("none", f"modality {modality} holds no picture to write on" + ver)
    burned = str(ds.get("BurnedInAnnotation", "")).upper() or "absent"
    return Policy("fast", f"modality {modality or 'none'} with BurnedInAnnotation {burned}" + ver)


def is_suspect(ds) -> bool:
    """Whether ``ds`` may carry burned-in text (its pixels are checked strictly)."""
    return policy(ds).strict
