"""Text-like regions in pixels, found without reading them.

OCR that reads nothing is no evidence that there is no text: small, thin or low-contrast
text is exactly what Tesseract fails to read. So burned-in text is *located* by a text
detector that says where text is, not what it says, and every region it finds is treated
as PHI whether or not OCR can read it.

The detector is PP-OCRv4's DB text detector (a differentiable-binarisation network that
outputs a per-pixel text probability map), shipped as an ONNX file inside the
``rapidocr-onnxruntime`` wheel (installed by ``deploy/install.sh``, nothing is downloaded
at run time) and run with onnxruntime. Only the model file is used; the pre- and
post-processing are here:

1. the image is made RGB, scaled so that small text is large enough for the network
   (:data:`UPSCALE_BELOW`: images smaller than this are read at twice their size; the
   longer side is capped at :data:`MAX_SIDE`), normalised to ``[-1, 1]``;
2. the probability map is thresholded (:data:`PIXEL_THRESHOLD`), each connected blob is
   scored by its mean probability and kept above :data:`BOX_THRESHOLD`; a *sensitive*
   call uses lower thresholds (:data:`SENSITIVE`), for cleaning, where a false alarm
   costs a few filled pixels and a miss leaks text;
3. each kept blob's box is grown by the DB "unclip" distance (area × ratio / perimeter)
   and mapped back to the image's pixels;
4. a box taller than a line of text can be (:data:`MAX_LINE_HEIGHT` of the image, and
   over :data:`TALL_PX`) is dropped: burned-in text comes in lines, and the network also
   answers to some smooth bright blobs.

This module runs in the OCR process (:mod:`common.deid.burned_in.ocr`), never beside
torch. Typical use
there::

    detector = TextDetector.open()           # None when the model is not installed
    for top, left, height, width, score in detector.regions(rgb_or_grey):
        ...
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

#: The wheel that carries the model, and the model's path inside it.
MODEL_PACKAGE = "rapidocr_onnxruntime"
MODEL_FILE = "models/ch_PP-OCRv4_det_infer.onnx"
#: Images whose longer side is below this are read at twice their size (small fonts).
UPSCALE_BELOW = 1024
#: The longest side the network sees (larger images are scaled down).
MAX_SIDE = 2048
PIXEL_THRESHOLD = 0.3
BOX_THRESHOLD = 0.5
#: (pixel, box) thresholds of a sensitive call.
SENSITIVE = (0.2, 0.35)
UNCLIP_RATIO = 1.6
#: A region taller than this share of the image (and than :data:`TALL_PX`) is not a line
#: of burned-in text but a bright or dark structure (the network answers to some blobs).
MAX_LINE_HEIGHT = 0.08
TALL_PX = 40

Region = tuple[int, int, int, int, float]  # top, left, height, width, score


def model_path() -> Path | None:
    """The detector's ONNX file in the installed wheel, or None (found without importing
    the wheel's package, whose own imports need OpenCV)."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
    return path if path.is_file() else None


class TextDetector:
    """The DB text detector, loaded once per process."""

    def __init__(self, session):
        self._session = session
        self._input = session.get_inputs()[0].name

    @classmethod
    def open(cls) -> TextDetector | None:
        """Load the model with one onnxruntime thread (parallelism comes from workers).

        Returns:
            The detector, or ``None`` when onnxruntime or the model is not installed
            (``deploy/install.sh`` installs both).
        """
        path = model_path()
        try:
            import onnxruntime as ort
        except ImportError:
            return None
        if path is None:
            return None
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        session = ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
        return cls(session)

    def regions(self, pixels: np.ndarray, sensitive: bool = False) -> list[Region]:
        """Text-like regions of an image.

        Args:
            pixels: ``(H, W)`` grey or ``(H, W, 3)`` RGB, 8-bit.
            sensitive: lower thresholds (:data:`SENSITIVE`): more regions, fewer misses.

        Returns:
            ``(top, left, height, width, score)`` per region, in pixels of ``pixels``,
            clipped to the image; score is the mean text probability inside it.
        """
        rgb = _rgb(pixels)
        rows, cols = rgb.shape[:2]
        scale = 2.0 if max(rows, cols) < UPSCALE_BELOW else 1.0
        scale = min(scale, MAX_SIDE / max(rows, cols))
        h = max(32, int(round(rows * scale / 32)) * 32)
        w = max(32, int(round(cols * scale / 32)) * 32)
        x = _resize(rgb, h, w).astype(np.float32) / 127.5 - 1.0
        prob = self._session.run(None, {self._input: x.transpose(2, 0, 1)[None]})[0][0, 0]
        tallest = max(TALL_PX, MAX_LINE_HEIGHT * rows)
        thresholds = SENSITIVE if sensitive else (PIXEL_THRESHOLD, BOX_THRESHOLD)
        found = [
            _to_image(box, rows / h, cols / w, rows, cols) for box in _boxes(prob, *thresholds)
        ]
        return [r for r in found if r[2] <= tallest]


def _rgb(pixels: np.ndarray) -> np.ndarray:
    arr = np.asarray(pixels)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] < 3:
        raise ValueError(f"text detection needs a grey or RGB image, got shape {arr.shape}")
    return np.ascontiguousarray(arr[..., :3], dtype=np.uint8)


def _resize(rgb: np.ndarray, h: int, w: int) -> np.ndarray:
    from PIL import Image

    if rgb.shape[:2] == (h, w):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((w, h), Image.BILINEAR))


def _boxes(
    prob: np.ndarray, pixel_threshold: float, box_threshold: float
) -> list[tuple[float, float, float, float, float]]:
    """Boxes ``(top, left, bottom, right, score)`` on the probability map's grid."""
    from scipy import ndimage

    text = ndimage.binary_dilation(prob > pixel_threshold, np.ones((2, 2), bool))
    labels, _ = ndimage.label(text)
    out = []
    for index, where in enumerate(ndimage.find_objects(labels), start=1):
        if where is None:
            continue
        score = float(prob[where][labels[where] == index].mean())
        if score < box_threshold:
            continue
        top, bottom = where[0].start, where[0].stop
        left, right = where[1].start, where[1].stop
        height, width = bottom - top, right - left
        grow = height * width * UNCLIP_RATIO / (2.0 * (height + width))
        out.append((top - grow, left - grow, bottom + grow, right + grow, score))
    return out


def _to_image(box, sy: float, sx: float, rows: int, cols: int) -> Region:
    top, left, bottom, right, score = box
    t = max(0, int(np.floor(top * sy)))
    le = max(0, int(np.floor(left * sx)))
    b = min(rows, int(np.ceil(bottom * sy)))
    r = min(cols, int(np.ceil(right * sx)))
    return t, le, max(0, b - t), max(0, r - le), score
