"""Fun-ASR-Nano on the light runtime: a GGUF-layout folder run without torch or transformers.

The same prompts, features and text post-processing as :class:`.model.FunAsrNanoModel` (they come from
:mod:`.prompt` and :mod:`.frontend`, which need neither), with the encoder + adaptor in onnxruntime
(``audio.onnx`` / ``audio-int8.onnx``, :mod:`funasr_nano.export.onnx_audio`), the tokenizer and chat
template through :class:`funasr_nano.models.light_tokenizer.LightTokenizer`, and the LLM in llama.cpp.
Audio embeddings are numpy arrays, which the llama.cpp engine takes as they are.

A folder exported from a checkpoint with the CTC branch has it here too (``ctc`` in ``config.json``,
``ctc.onnx`` / ``ctc-int8.onnx`` and ``multilingual.tiktoken``, read with tiktoken): word timestamps,
``no_speech_prob`` and the silence gate, ``hotwords_file``, with the encoder run once per segment
(``audio.onnx`` gives ``embeddings`` and ``encoder_out`` together).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import types

import numpy as np

from ...errors import CheckpointError
from ...results import Word
from ..alignment import CtcAnalysis, TokenSpan, analyse, forced_align, words_from_spans
from ..base import FamilyModel
from ..json_files import read_json_object
from ..light_tokenizer import LightTokenizer
from ..onnx_audio import ENCODER_OUT, LOG_PROBS, OnnxAudioEncoder, OnnxGraph, audio_onnx_file, require_audio_onnx_file
from .ctc_tokenizer import CTC_VOCAB_FILE, CtcTokenizer, no_ctc_error
from .frontend import Frontend, FrontendConfig
from .prompt import FunAsrNanoPrompts, chat_format_for, checkpoint_tasks, num_audio_tokens

logger = logging.getLogger(__name__)


def read_config(path: str) -> dict:
    """``path/config.json`` as a dict.

    Raises:
        CheckpointError: unreadable, not JSON, or not an object.
    """
    return read_json_object(os.path.join(path, "config.json"))


def light_folder(path: str, encoder_precision: str = "fp32") -> str | None:
    """The LLM GGUF file of ``path`` if it is a Fun-ASR-Nano GGUF-layout folder the light runtime runs at
    ``encoder_precision`` (``config.json`` without ``model_type: qwen3_asr``, the GGUF named by
    ``llm_gguf`` or the only ``.gguf``, and the ONNX audio file), else ``None``. The same rule as
    :func:`funasr_nano.models.recognise.is_gguf_folder` / :func:`.gguf_layout.gguf_path` (that module needs torch)."""
    try:
        names = set(os.listdir(path))
    except OSError:
        return None
    if "config.json" not in names or audio_onnx_file(path, encoder_precision) is None:
        return None
    try:
        config = read_config(path)
    except CheckpointError:
        return None
    if config.get("model_type") == "qwen3_asr":
        return None
    named = config.get("llm_gguf")
    found = [named] if isinstance(named, str) and named in names else sorted(n for n in names if n.endswith(".gguf"))
    return os.path.join(path, found[0]) if len(found) == 1 else None


@dataclasses.dataclass(frozen=True)
class LightCtc:
    """The CTC branch of a GGUF folder on onnxruntime (what :class:`.ctc.CtcBranch` is to torch).

    Attributes:
        graph: ``ctc.onnx`` / ``ctc-int8.onnx``: ``encoder_out`` -> ``log_probs``.
        tokenizer: :class:`.ctc_tokenizer.CtcTokenizer`.
        blank_id: the blank.
    """

    graph: OnnxGraph
    tokenizer: CtcTokenizer
    blank_id: int

    def log_probs(self, encoder_out: np.ndarray) -> np.ndarray:
        """``(frames, encoder_dim)`` encoder output -> ``(frames, vocab)`` float32 CTC log-softmax."""
        return self.graph.run([LOG_PROBS], encoder_out=np.ascontiguousarray(encoder_out[None], dtype=np.float32))[0][0]


def load_light_ctc(path: str, record, encoder_precision: str, encoder: OnnxAudioEncoder,
                   n_threads: int | None) -> LightCtc | None:
    """The CTC branch a folder's ``config.json`` records (``ctc``, written by ``export gguf``,
    :func:`funasr_nano.export.onnx_ctc.ctc_config`), or ``None`` when it records none.

    Raises:
        CheckpointError: a record naming files that are missing (or no file for ``encoder_precision``),
            an audio graph without the ``encoder_out`` output, or tokens that do not fit the head.
    """
    if not record:
        return None
    where = f"{path}/config.json"
    if not isinstance(record, dict) or not isinstance(record.get("onnx"), dict):
        raise CheckpointError(f"{where}: ctc must be an object with onnx files by precision, got {record!r}")
    name = record["onnx"].get(encoder_precision)
    if not name or not os.path.isfile(os.path.join(path, name)):
        raise CheckpointError(f"{path}: config.json records a CTC head but no ONNX file for encoder_precision="
                              f"{encoder_precision!r} ({name or 'none named'}); export the folder again with "
                              "funasr-nano export gguf")
    if ENCODER_OUT not in encoder.output_names:
        raise CheckpointError(f"{encoder.file}: the audio graph has no {ENCODER_OUT} output for the CTC head; export "
                              "the folder again with funasr-nano export gguf")
    vocab = os.path.join(path, str(record.get("tokenizer") or CTC_VOCAB_FILE))
    if not os.path.isfile(vocab):
        raise CheckpointError(f"{path}: the CTC head needs its tokenizer {vocab}, which is missing")
    tokenizer = CtcTokenizer(vocab)
    try:
        blank_id, vocab_size = int(record["blank_id"]), int(record["vocab_size"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{where}: ctc needs integer blank_id and vocab_size ({error})") from error
    if tokenizer.num_ordinary > vocab_size or not 0 <= blank_id < vocab_size:
        raise CheckpointError(f"{vocab}: {tokenizer.num_ordinary} tokens and blank {blank_id} do not fit the CTC "
                              f"head's {vocab_size} outputs")
    graph = OnnxGraph(os.path.join(path, name), n_threads, "ONNX CTC head")
    logger.info("the CTC head of %s (%s, blank %d)", path, name, blank_id)
    return LightCtc(graph=graph, tokenizer=tokenizer, blank_id=blank_id)


class LightFunAsrNanoModel(FunAsrNanoPrompts, FamilyModel):
    """A Fun-ASR-Nano GGUF-layout folder on onnxruntime + llama.cpp (no torch).

    Args:
        path: the folder (``funasr-nano export gguf``), with ``audio.onnx`` (and ``audio-int8.onnx``).
        encoder_precision: ``"fp32"`` (``audio.onnx``) or ``"int8"`` (``audio-int8.onnx``).
        n_threads: onnxruntime's threads (``None``: one per core).
        use_low_frame_rate: override the folder's audio-length rule (:func:`.prompt.num_audio_tokens`).

    Raises:
        CheckpointError: a missing ONNX file, an unreadable config or tokenizer.
    """

    def __init__(self, path: str, encoder_precision: str = "fp32", *, n_threads: int | None = None,
                 use_low_frame_rate: bool | None = None):
        self.path = path
        self.encoder_precision = encoder_precision
        file = require_audio_onnx_file(path, encoder_precision)
        config = read_config(path)
        audio = dict(config.get("audio_config") or {})
        text = dict(config.get("text_config") or {})
        self.frontend = Frontend(FrontendConfig(n_mels=int(audio.get("num_mel_bins", 80)),
                                                lfr_m=int(audio.get("num_stacked_frames", 7)), lfr_n=6))
        self._max_frames = int(audio.get("max_position_embeddings") or 2048)
        self.use_low_frame_rate = (bool(config.get("use_low_frame_rate", True)) if use_low_frame_rate is None
                                   else use_low_frame_rate)
        self.tasks = checkpoint_tasks(config.get("tasks"), f"{path}/config.json")
        self.tokenizer = LightTokenizer.from_pretrained(path)
        self.encoder = OnnxAudioEncoder(file, n_threads)
        self.ctc = load_light_ctc(path, config.get("ctc"), encoder_precision, self.encoder, n_threads)
        try:
            self.chat = chat_format_for(self.tokenizer, types.SimpleNamespace(**config))
            eos = text.get("eos_token_id")
            eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
            self._stop_token_ids = self.chat.stop_token_ids(self.tokenizer, eos)
        except ValueError as error:
            raise CheckpointError(f"{path}: {error}") from error

    @property
    def llm(self):
        raise CheckpointError(f"{self.path}: on the light runtime the LLM is the GGUF file, run by llama.cpp")

    @property
    def stop_token_ids(self) -> list[int]:
        return list(self._stop_token_ids)

    @property
    def max_audio_seconds(self) -> float:
        return self._max_frames * self.frontend.config.seconds_per_frame

    # -- audio -> embeddings --------------------------------------------------------------------------

    def features(self, waveform: np.ndarray) -> np.ndarray:
        """``(samples,)`` 16 kHz float32 -> ``(frames, 560)`` LFR fbank, 60 ms per frame."""
        return self.frontend.features(waveform)

    def encode(self, features: np.ndarray) -> np.ndarray:
        """``(frames, 560)`` -> ``(frames, llm_hidden)`` float32 adaptor output (onnxruntime)."""
        return self.encoder(features=np.ascontiguousarray(features[None], dtype=np.float32))[0]

    def audio_positions(self, samples: int) -> int:
        return num_audio_tokens(self.frontend.num_frames(samples), self.use_low_frame_rate)

    def audio_embeddings(self, waveform: np.ndarray) -> np.ndarray:
        """``(num_audio, llm_hidden)`` float32, as :meth:`.model.FunAsrNanoModel.audio_embeddings`."""
        features = self.features(waveform)
        return self.encode(features)[: num_audio_tokens(features.shape[0], self.use_low_frame_rate)]

    # -- CTC branch: timestamps, no-speech probability (as FunAsrNanoModel) ------------------------------

    @property
    def has_ctc(self) -> bool:
        return self.ctc is not None

    @property
    def frame_seconds(self) -> float:
        """Seconds per encoder frame (LFR ``lfr_n`` x frame shift: 0.06)."""
        return self.frontend.config.seconds_per_frame

    def _ctc(self, what: str) -> "LightCtc":
        if self.ctc is None:
            raise no_ctc_error(self.path, what)
        return self.ctc

    def check_word_timestamps(self) -> None:
        self._ctc("word timestamps")

    def ctc_analysis(self, waveform: np.ndarray) -> CtcAnalysis:
        """One pass of ``audio.onnx`` for both of its outputs (the adaptor's ``embeddings`` for the
        prompt, ``encoder_out`` for the CTC head), then ``ctc.onnx``: the torch model's
        :meth:`.model.FunAsrNanoModel.ctc_analysis` on onnxruntime.

        Raises:
            CheckpointError: the folder has no CTC head.
        """
        ctc = self._ctc("the CTC head's outputs")
        features = self.features(waveform)
        embeddings, encoder_out = self.encoder.run(["embeddings", ENCODER_OUT],
                                                   features=np.ascontiguousarray(features[None], dtype=np.float32))
        log_probs = ctc.log_probs(encoder_out[0])
        return analyse(log_probs, ctc.blank_id, ctc.tokenizer.decode, encoder_out=encoder_out[0],
                       frame_seconds=self.frame_seconds, duration=waveform.size / self.frontend.config.sample_rate,
                       audio_embeddings=embeddings[0][: num_audio_tokens(features.shape[0], self.use_low_frame_rate)])

    def align_tokens(self, analysis: CtcAnalysis, text: str) -> list[TokenSpan]:
        """FunASR's ``timestamps`` of ``text`` (see :meth:`.model.FunAsrNanoModel.align_tokens`).

        Raises:
            CheckpointError: no CTC head. AlignmentError: more tokens than frames.
        """
        ctc = self._ctc("timestamps")
        return forced_align(ctc.log_probs(analysis.encoder_out), ctc.tokenizer.encode(text), ctc.blank_id)

    def align_words(self, analysis: CtcAnalysis, text: str, offset: float = 0.0) -> tuple[Word, ...]:
        ctc = self._ctc("word timestamps")
        return tuple(words_from_spans(self.align_tokens(analysis, text), ctc.tokenizer.token_bytes,
                                      frame_seconds=self.frame_seconds, offset=offset, duration=analysis.duration))
