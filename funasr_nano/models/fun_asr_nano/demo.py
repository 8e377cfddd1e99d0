"""The embedded demo model (recipes/demo): a small Fun-ASR-Nano shipped inside the package, used when no
checkpoint folder is given (:func:`funasr_nano.load_model`, ``funasr-nano export gguf demo``).

Two copies: the transformers layout (the torch engines) and the GGUF + ONNX layout (the light runtime:
``funasr-nano export gguf demo funasr_nano/assets/demo-gguf --type q8_0``, without audio.safetensors and
audio-int8.onnx; docs/light-runtime.md).
"""

import importlib.resources

DEFAULT_MODEL = str(importlib.resources.files("funasr_nano") / "assets" / "demo")
DEFAULT_LIGHT_MODEL = str(importlib.resources.files("funasr_nano") / "assets" / "demo-gguf")
