"""Fun-ASR-Nano (FunAudioLLM): SAN-M encoder -> adaptor -> Qwen3 LLM. Frontend, checkpoint layouts, prompt,
the model as a :class:`~funasr_nano.models.base.SpeechLLM`."""

from .model import FunAsrNanoModel

__all__ = ["FunAsrNanoModel"]
