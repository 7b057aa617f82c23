"""Tesseract, always in a process of its own: OCR and torch never share a process.

Tesseract's OpenMP runtime (Debian's libgomp, loaded with ``OMP_THREAD_LIMIT=1``) and
torch's own OpenMP runtime cannot live in one process: once libtesseract is loaded, torch
training stalls on one core and never finishes. So the rule is architectural, not a
setting: the rest of the project reads text only through :class:`OcrProcess`, which
starts ``python -m common.deid.burned_in.ocr``, a small process that loads libtesseract
and never imports torch (it refuses to), and talks to it over a pipe. The engine class
:class:`Tesseract` itself refuses to load in a process that has imported torch.

One engine per OCR process loads the language model once (about 20 ms an image here,
against 90 ms for one ``tesseract`` program run per image). Nothing is compiled: the C API
(``libtesseract.so.5`` from Debian's packages) is reached with :mod:`ctypes`.

Typical use::

    ocr = OcrProcess.start()          # None when libtesseract is not installed
    for left, top, width, height, confidence, text in ocr.words(gray_uint8):
        ...
    ocr.close()                       # also done when the object is collected, or at exit

The OCR process also runs the text detector (:mod:`common.deid.burned_in.detector`), which finds
where text is without reading it; it is loaded on the first request for it.

Protocol on the pipe (both ends are this module): the child writes one byte, the digit
of its capabilities (bit 1: Tesseract, bit 2: the text detector; ``0``: neither, and it
exits). Each request is an operation byte (``w``: words, ``r``: text regions, ``R``:
the same, sensitive), a channel
count byte (1 or 3), ``rows, columns`` (two big-endian uint32), then the 8-bit pixels;
the reply is a big-endian uint32 length followed by UTF-8 text: Tesseract's TSV for
``w``, one ``top left height width score`` line per region for ``r``. A zero-row request
or the end of input ends the child.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np

#: Tesseract page segmentation mode 11: sparse text, as much as possible, in no order.
SPARSE_TEXT = 11
#: Seconds one image may take before the OCR process is taken to be stuck.
IMAGE_TIMEOUT = 60.0
_LIBRARY = "tesseract"
_REQUEST = struct.Struct("!ccII")  # operation, channels, rows, columns
READ, DETECT = 1, 2  # capability bits
_LENGTH = struct.Struct("!I")


class OcrUnavailable(RuntimeError):
    """The OCR process failed or timed out on an image (it is restarted for the next)."""


# ------------------------------------------------------------------ the engine (child side)


def _load() -> ctypes.CDLL | None:
    if sys.modules.get("torch") is not None:
        raise RuntimeError(
            "libtesseract must not be loaded in a process that uses torch (their OpenMP "
            "runtimes stall each other); read text through common.deid.burned_in.ocr.OcrProcess"
        )
    name = ctypes.util.find_library(_LIBRARY) or "libtesseract.so.5"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    vp, cp, i = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
    lib.TessBaseAPICreate.restype = vp
    lib.TessBaseAPIInit3.argtypes = [vp, cp, cp]
    lib.TessBaseAPISetPageSegMode.argtypes = [vp, i]
    lib.TessBaseAPISetSourceResolution.argtypes = [vp, i]
    lib.TessBaseAPISetImage.argtypes = [vp, cp, i, i, i, i]
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
    """One Tesseract engine with a language model loaded, reused for every image.

    Only for the OCR process (``python -m common.deid.burned_in.ocr``); everywhere else use
    :class:`OcrProcess`.
    """

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

        Raises:
            RuntimeError: in a process that has imported torch.
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

    def tsv(self, pixels: bytes, rows: int, columns: int) -> str:
        """Tesseract's TSV output for an 8-bit greyscale image given as raw bytes."""
        if len(pixels) != rows * columns:
            raise ValueError(f"{len(pixels)} bytes for a {rows}x{columns} image")
        lib, handle = self._lib, self._handle
        lib.TessBaseAPISetImage(handle, pixels, columns, rows, 1, columns)
        lib.TessBaseAPISetSourceResolution(handle, 300)
        ptr = lib.TessBaseAPIGetTsvText(handle, 0)
        try:
            return ctypes.string_at(ptr).decode("utf-8", "replace") if ptr else ""
        finally:
            if ptr:
                lib.TessDeleteText(ptr)
            lib.TessBaseAPIClear(handle)


def _read_exact(stream, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _capabilities() -> int:
    from common.deid.burned_in import detector

    found = READ if ctypes.util.find_library(_LIBRARY) else 0
    if importlib.util.find_spec("onnxruntime") and detector.model_path():
        found |= DETECT
    return found


def serve(stdin, stdout, language: str = "eng") -> None:
    """The OCR process's loop: read images from ``stdin``, write text to ``stdout``."""
    engine = Tesseract.open(language)
    can = (READ if engine is not None else 0) | (_capabilities() & DETECT)
    stdout.write(str(can).encode())
    stdout.flush()
    if not can:
        return
    detector = None
    while True:
        header = _read_exact(stdin, _REQUEST.size)
        if header is None:
            return
        op, channels, rows, columns = _REQUEST.unpack(header)
        if rows == 0 or columns == 0:
            return
        pixels = _read_exact(stdin, rows * columns * channels[0])
        if pixels is None:
            return
        if op == b"w" and engine is not None and channels[0] == 1:
            text = engine.tsv(pixels, rows, columns)
        elif op in (b"r", b"R") and can & DETECT:
            if detector is None:
                from common.deid.burned_in.detector import TextDetector

                detector = TextDetector.open()
            shape = (rows, columns) if channels[0] == 1 else (rows, columns, channels[0])
            image = np.frombuffer(pixels, np.uint8).reshape(shape)
            text = "\n".join(
                f"{t} {le} {h} {w} {score:.3f}"
                for t, le, h, w, score in detector.regions(image, sensitive=op == b"R")
            )
        else:
            text = "unsupported"
        body = text.encode("utf-8")
        stdout.write(_LENGTH.pack(len(body)) + body)
        stdout.flush()


def main() -> None:
    """Entry point of ``python -m common.deid.burned_in.ocr`` (started by :class:`OcrProcess`)."""
    sys.modules["torch"] = None  # type: ignore[assignment]  # importing torch here fails
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; it closes our stdin
    serve(sys.stdin.buffer, sys.stdout.buffer, sys.argv[1] if len(sys.argv) > 1 else "eng")


# ------------------------------------------------------------------ the client (caller side)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            proc.stdin.close()
            proc.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
    proc.stdout.close()


class OcrProcess:
    """Tesseract and the text detector in a child process (``python -m common.deid.burned_in.ocr``).

    The child ends when :meth:`close` is called, when this object is collected, when the
    calling process exits (its end of the pipe closes, whatever the reason) or when it is
    interrupted. Calls from several threads are serialised by an internal lock.
    """

    def __init__(self, proc: subprocess.Popen, language: str, capabilities: int):
        self._proc = proc
        self._language = language
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, _stop, proc)
        self.capabilities = capabilities

    @staticmethod
    def _spawn(language: str) -> tuple[subprocess.Popen, int]:
        root = str(Path(__file__).resolve().parents[3])
        env = {
            **os.environ,
            # One OpenMP thread: Tesseract's thread pool costs far more than it saves on
            # images this size (6x slower here); parallelism comes from worker processes.
            "OMP_THREAD_LIMIT": "1",
            "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p),
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "common.deid.burned_in.ocr", language],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=root,
        )
        ready = _read_exact(proc.stdout, 1) or b"0"
        return proc, int(ready) if ready.isdigit() else 0

    @classmethod
    def start(cls, language: str = "eng") -> OcrProcess | None:
        """Start the OCR process and wait until it is ready.

        Returns:
            The client, or ``None`` when neither libtesseract nor the text detector is
            installed (``deploy/install.sh`` installs both).
        """
        proc, capabilities = cls._spawn(language)
        if not capabilities:
            _stop(proc)
            return None
        return cls(proc, language, capabilities)

    @property
    def can_read(self) -> bool:
        """Tesseract is there: :meth:`words` works."""
        return bool(self.capabilities & READ)

    @property
    def can_detect(self) -> bool:
        """The text detector is there: :meth:`regions` works."""
        return bool(self.capabilities & DETECT)

    @property
    def pid(self) -> int:
        """The OCR process's PID."""
        return self._proc.pid

    def close(self) -> None:
        """End the OCR process."""
        self._finalizer()

    def words(self, gray) -> Iterator[tuple[int, int, int, int, float, str]]:
        """Words Tesseract reads in an 8-bit greyscale image.

        Args:
            gray: a 2D ``uint8`` numpy array.

        Returns:
            ``(left, top, width, height, confidence, text)`` for each word, in pixels of
            ``gray``; confidence runs from 0 to 100.

        Raises:
            OcrUnavailable: the OCR process died or took longer than
                :data:`IMAGE_TIMEOUT` on this image (it is restarted for the next one).
        """
        img = np.ascontiguousarray(gray, dtype=np.uint8)
        if img.ndim != 2:
            raise ValueError(f"OCR needs a 2D greyscale image, got shape {img.shape}")
        if not self.can_read:
            raise OcrUnavailable("Tesseract is not installed (deploy/install.sh installs it)")
        for line in self._ask(b"w", img).splitlines():
            cols = line.split("\t")
            if len(cols) != 12 or cols[0] != "5":  # level 5 = word
                continue
            left, top, width, height = (int(c) for c in cols[6:10])
            yield left, top, width, height, float(cols[10]), cols[11]

    def regions(self, image, sensitive: bool = False) -> list[tuple[int, int, int, int, float]]:
        """Text-like regions of an 8-bit grey or RGB image, found without reading.

        ``sensitive``: the detector's lower thresholds (more regions, fewer misses).

        Returns:
            ``(top, left, height, width, score)`` per region (see
            :mod:`common.deid.burned_in.detector`).

        Raises:
            OcrUnavailable: as for :meth:`words`, or when the detector is not installed.
        """
        img = np.ascontiguousarray(image, dtype=np.uint8)
        if img.ndim == 3:
            img = np.ascontiguousarray(img[..., :3])
        if img.ndim not in (2, 3):
            raise ValueError(f"text detection needs a 2D or RGB image, got shape {img.shape}")
        if not self.can_detect:
            raise OcrUnavailable(
                "the text detector is not installed (deploy/install.sh installs "
                "onnxruntime and the rapidocr-onnxruntime wheel that carries its model)"
            )
        out = []
        for line in self._ask(b"R" if sensitive else b"r", img).splitlines():
            t, le, h, w, score = line.split()
            out.append((int(t), int(le), int(h), int(w), float(score)))
        return out

    def _ask(self, op: bytes, img: np.ndarray) -> str:
        with self._lock:
            # Two tries: the first may meet an OCR process that died since the last image.
            for _ in range(2):
                if self._proc.poll() is not None:
                    self._restart()
                body = self._exchange(op, img)
                if body is not None:
                    return body.decode("utf-8", "replace")
                self._restart()
        raise OcrUnavailable(
            f"the OCR process failed or took over {IMAGE_TIMEOUT:.0f} s on an image"
        )

    def _exchange(self, op: bytes, img: np.ndarray) -> bytes | None:
        stdin, stdout = self._proc.stdin, self._proc.stdout
        channels = 1 if img.ndim == 2 else img.shape[2]
        try:
            stdin.write(_REQUEST.pack(op, bytes([channels]), *img.shape[:2]) + img.tobytes())
            stdin.flush()
            if not select.select([stdout], [], [], IMAGE_TIMEOUT)[0]:
                return None
            header = _read_exact(stdout, _LENGTH.size)
            return None if header is None else _read_exact(stdout, *_LENGTH.unpack(header))
        except OSError:
            return None

    def _restart(self) -> None:
        self._finalizer()
        self._proc, capabilities = self._spawn(self._language)
        self._finalizer = weakref.finalize(self, _stop, self._proc)
        if capabilities != self.capabilities:
            raise OcrUnavailable("the OCR process could not be restarted as it was")


if __name__ == "__main__":
    main()
