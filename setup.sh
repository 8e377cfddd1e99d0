#!/usr/bin/env bash
# Sets up funasr-nano on a fresh machine: a virtual environment in .venv with the CPU build of torch,
# the package (editable) and its test extra. Re-running it is cheap.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch 2.13.0 CPU lies on disk on our machines; pinning it keeps pip from fetching a CUDA build.
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[test]"
echo "funasr-nano is set up in .venv"
