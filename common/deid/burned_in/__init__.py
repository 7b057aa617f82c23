"""Burned-in text in pixels: which check an image gets, and the checks themselves.

Inside: ``policy`` (the versioned ``recipe.toml`` and the rule that applies to an image),
``cleaning`` (the strict check: find text-like regions, fill them, confirm with OCR, or
quarantine; and the fast check), ``detector`` (PP-OCRv4's text detector, where text is
without reading it), ``strokes`` (lines of glyph-like strokes, numpy alone) and ``ocr``
(Tesseract and the detector in an OCR process of their own, never beside torch). It may
import ``common.errors`` and nothing else of the project. The names below are the
package's API; the modules' other names are their internals.
"""

from common.deid.burned_in.cleaning import (
    Cleaning,
    clean_image,
    clean_pixels,
    detector_available,
    fast_check,
    ocr_available,
    read_words,
    text_blocks,
    text_regions,
)
from common.deid.burned_in.policy import RECIPE_FILE, Policy, Recipe, is_suspect, policy, recipe

__all__ = [
    "RECIPE_FILE",
    "Cleaning",
    "Policy",
    "Recipe",
    "clean_image",
    "clean_pixels",
    "detector_available",
    "fast_check",
    "is_suspect",
    "ocr_available",
    "policy",
    "read_words",
    "recipe",
    "text_blocks",
    "text_regions",
]
