"""Fun-ASR-Nano (FunAudioLLM): SAN-M encoder -> adaptor -> Qwen3 LLM. Frontend, checkpoint layouts, prompt,
the model as a :class:`~funasr_nano.models.base.FamilyModel` (torch: :mod:`.model`; the light runtime:
:mod:`.light`)."""

__all__ = ["FunAsrNanoModel"]


def __getattr__(name: str):
    # imported on use: the torch model must not load with the light runtime's modules of this package
    if name == "FunAsrNanoModel":
        from .model import FunAsrNanoModel

        return FunAsrNanoModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
