#!/usr/bin/env bash
# Sets up funasr-nano on a fresh machine: a virtual environment in .venv with the CPU build of torch,
# the package (editable) with its training, test, parity-reference, llama.cpp and server extras. Re-running it is cheap.
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
# server: funasr-nano serve (FastAPI, uvicorn, python-multipart, websockets)
python -m pip install -q -e ".[train,test,parity,llama,server]"
echo "funasr-nano is set up in .venv"
