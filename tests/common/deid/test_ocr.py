"""OCR and torch never share a process: Tesseract runs in an OCR process of its own."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from common.deid import burned_in
from common.deid.burned_in import ocr

needs_ocr = pytest.mark.skipif(
    not burned_in.ocr_available(), reason="tesseract not installed (deploy/install.sh installs it)"
)


def _text_image() -> np.ndarray:
    from PIL import Image, ImageDraw

    img = Image.new("L", (400, 100), 0)
    ImageDraw.Draw(img).text((10, 10), "DOE JOHN 1960", fill=255)
    return np.asarray(img.resize((800, 200)))


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_the_engine_refuses_to_load_beside_torch():
    import torch  # noqa: F401

    with pytest.raises(RuntimeError, match="OcrProcess"):
        ocr.Tesseract.open()


@needs_ocr
def test_ocr_process_reads_words_survives_a_crash_and_ends_on_close():
    engine = ocr.OcrProcess.start()
    assert engine is not None
    first = list(engine.words(_text_image()))
    assert any("DOE" in w[-1] for w in first)
    old = engine.pid
    subprocess.run(["kill", "-9", str(old)], check=True)
    assert [w[-1] for w in engine.words(_text_image())] == [w[-1] for w in first]
    assert engine.pid != old  # a new OCR process took over
    pid = engine.pid
    engine.close()
    assert not _alive(pid)


@needs_ocr
def test_prepare_with_pixel_ocr_then_train_in_one_process(tmp_path):
    """What stalled the demo: intake with OCR, then torch training, in one process.

    A hang watchdog (generous), not a speed assertion: before the OCR process existed,
    five training steps after intake made no progress in 60 s.
    """
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from common.deid.burned_in import cleaning
        from common.data.intake import prepare_site
        from common.data.sampledata import write_consortium
        from common.seg.training import TrainSettings, train
        from common.seg.networks import create_network

        data = Path({str(tmp_path)!r}) / "data"
        manifest = write_consortium(data, n_sites=2, cases_per_site=8, heldout_per_vendor=0)
        assert manifest["sites"][1]["burned_in"] > 0, "site-2 (Helios) should need OCR"
        state = Path({str(tmp_path)!r}) / "s"
        arrays, report = prepare_site(data / "site-2", state, 64, new_secret=True)
        assert cleaning._engine.cache_info().currsize == 1, "OCR was not used"
        maps = open("/proc/self/maps").read()
        assert "libtesseract" not in maps, "libtesseract was loaded in the training process"
        stats = train(create_network("unet"), arrays, TrainSettings(epochs=2, batch_size=2))
        print("trained", stats.steps)
        """
    )
    res = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "trained" in res.stdout
