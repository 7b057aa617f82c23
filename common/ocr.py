"""Tesseract in-process, through its C API (``libtesseract.so.5`` from Debian's packages).

Running the ``tesseract`` program once per image loads the language model every time
(about 90 ms per image here); one engine per process loads it once and reads the same
image in about 20 ms. Nothing is compiled: the C API is reached with :mod:`ctypes`.

Typical use::

    engine = Tesseract.open()          # None when libtesseract is not installed
    for left, top, width, height, confidence, text in engine.words(gray_uint8):
        ...
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import weakref
from collections.abc import Iterator

import numpy as np

#: Tesseract page segmentation mode 11: sparse text, as much as possible, in no order.
SPARSE_TEXT = 11
_LIBRARY = "tesseract"


def _load() -> ctypes.CDLL | None:
    name = ctypes.util.find_library(_LIBRARY) or "libtesseract.so.5"
    # One OpenMP thread: Tesseract's thread pool costs far more than it saves on images
    # this size (6x slower here), and workers already use the cores. OpenMP reads the
    # limit once, when the library loads, so it is set only for the load and then
    # restored: left in the environment it would reach every child process, and torch's
    # OpenMP hangs under OMP_THREAD_LIMIT=1.
    previous = os.environ.get("OMP_THREAD_LIMIT")
    os.environ["OMP_THREAD_LIMIT"] = "1"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    finally:
        if previous is None:
            del os.environ["OMP_THREAD_LIMIT"]
        else:
            os.environ["OMP_THREAD_LIMIT"] = previous
    vp, cp, i = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
    lib.TessBaseAPICreate.restype = vp
    lib.TessBaseAPIInit3.argtypes = [vp, cp, cp]
    lib.TessBaseAPISetPageSegMode.argtypes = [vp, i]
    lib.TessBaseAPISetSourceResolution.argtypes = [vp, i]
    lib.TessBaseAPISetImage.argtypes = [vp, vp, i, i, i, i]
    lib.TessBaseAPISetVariable.argtypes = [vp, cp, cp]
    lib.TessBaseAPIGetTsvText.argtypes = [vp, i]
    lib.TessBaseAPIGetTsvText.restype = vp
    lib.TessDeleteText.argtypes = [vp]
    lib.TessBaseAPIClear.argtypes = [vp]
    lib.TessBaseAPIEnd.argtypes = [vp]
    lib.TessBaseAPIDelete.argtypes = [vp]
    return lib


def _close(lib: ctypes.CDLL, handle: int) -> None:
    lib.TessBaseAPIEnd(handle)
    lib.TessBaseAPIDelete(handle)


class Tesseract:
    """One Tesseract engine with the English model loaded, reused for every image."""

    def __init__(self, lib: ctypes.CDLL, handle: int):
        self._lib = lib
        self._handle = handle
        weakref.finalize(self, _close, lib, handle)

    @classmethod
    def open(cls, language: str = "eng") -> Tesseract | None:
        """Load the library and the language model.

        Returns:
            The engine, or ``None`` when libtesseract or the model is not installed
            (``deploy/install.sh`` installs both).
        """
        lib = _load()
        if lib is None:
            return None
        handle = lib.TessBaseAPICreate()
        if lib.TessBaseAPIInit3(handle, None, language.encode()) != 0:
            _close(lib, handle)
            return None
        lib.TessBaseAPISetPageSegMode(handle, SPARSE_TEXT)
        lib.TessBaseAPISetVariable(handle, b"debug_file", os.devnull.encode())  # no chatter
        return cls(lib, handle)

    def words(self, gray: np.ndarray) -> Iterator[tuple[int, int, int, int, float, str]]:
        """Words Tesseract reads in an 8-bit greyscale image.

        Args:
            gray: a 2D ``uint8`` array.

        Returns:
            ``(left, top, width, height, confidence, text)`` for each word, in pixels of
            ``gray``; confidence runs from 0 to 100.
        """
        img = np.ascontiguousarray(gray, dtype=np.uint8)
        if img.ndim != 2:
            raise ValueError(f"OCR needs a 2D greyscale image, got shape {img.shape}")
        lib, handle = self._lib, self._handle
        lib.TessBaseAPISetImage(
            handle, img.ctypes.data, img.shape[1], img.shape[0], 1, img.shape[1]
        )
        lib.TessBaseAPISetSourceResolution(handle, 300)
        ptr = lib.TessBaseAPIGetTsvText(handle, 0)
        try:
            tsv = ctypes.string_at(ptr).decode("utf-8", "replace") if ptr else ""
        finally:
            if ptr:
                lib.TessDeleteText(ptr)
            lib.TessBaseAPIClear(handle)
        for line in tsv.splitlines():
            cols = line.split("\t")
            if len(cols) != 12 or cols[0] != "5":  # level 5 = word
                continue
            left, top, width, height = (int(c) for c in cols[6:10])
            yield left, top, width, height, float(cols[10]), cols[11]
