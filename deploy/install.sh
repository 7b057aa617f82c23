#!/usr/bin/env bash
# Install FedSynth into ./.venv: the CPU build of torch first (any other torch request
# pulls gigabytes of CUDA), then the project with its test and simulation extras.
# Safe to run again; it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
# OCR for burned-in text in pixel data (Debian's tesseract-ocr). Without it, images that
# may carry burned-in text and have no known text region are quarantined, never used.
if ! command -v tesseract >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tesseract-ocr) \
      >/dev/null 2>&1 || echo "warning: could not install tesseract-ocr; pixel OCR disabled" >&2
  else
    echo "note: install Debian's tesseract-ocr (as root) to enable pixel OCR" >&2
  fi
fi
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q -e ".[dev,simulation]" 2>&1 | grep -v "^WARNING: Location" || true
# The text detector's model (PP-OCRv4 DB, ONNX) ships inside this wheel; only the model
# file is used, so none of the wheel's own dependencies (OpenCV among them) is installed.
.venv/bin/python -m pip install -q --no-deps "rapidocr-onnxruntime==1.4.4" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import torch, flwr, monai; assert torch.__version__.startswith('2.13.0'), torch.__version__"
.venv/bin/python -c "from common.deid.burned_in.detector import model_path; assert model_path(), 'text detector model missing'"
echo "FedSynth installed in $(pwd)/.venv (torch $(.venv/bin/python -c 'import torch; print(torch.__version__)'), flwr $(.venv/bin/python -c 'import flwr; print(flwr.__version__)'))"
