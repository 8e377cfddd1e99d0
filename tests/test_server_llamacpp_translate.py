"""Translation served on the llama.cpp engine: ``/v1/audio/translations`` (the official ``openai`` client) and the
realtime ``task: translate`` (a real WebSocket), unified with a GGUF LoRA adapter beside the demo model's GGUF and
cascade with a tiny Qwen3 chat translator GGUF, both loaded by llama.cpp; ``funasr-nano serve``, ``translate``
and ``transcribe`` take ``--lora [TASK=]PATH`` and ``--translator PATH``. Every text is compared with the
transformers engine on the same weights (the peft adapter, the transformers translator)."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")
websockets_sync = pytest.importorskip("websockets.sync.client")

from funasr_nano import load_model  # noqa: E402
from funasr_nano.audio.io import load_audio  # noqa: E402
from funasr_nano.audio.vad import VadOptions  # noqa: E402
from funasr_nano.cli.main import main  # noqa: E402
from funasr_nano.export.gguf_folder import export_gguf  # noqa: E402
from funasr_nano.load import DEFAULT_MODEL  # noqa: E402
from funasr_nano.models.lora import LoraSettings  # noqa: E402
from funasr_nano.pipeline.llamacpp_translator import LlamaCppChatTranslator  # noqa: E402
from funasr_nano.pipeline.translators import ChatLMTranslator  # noqa: E402
from funasr_nano.server import ServerOptions  # noqa: E402
from funasr_nano.testing.tiny_chat import write_tiny_chat_llm  # noqa: E402

from .conftest import ROOT  # noqa: E402
from .server_util import running_server  # noqa: E402
from .test_llamacpp_lora import random_adapter  # noqa: E402
from .training_data import one_thread  # noqa: F401, E402 - autouse fixture

CLIPS = sorted((ROOT / "tests" / "data" / "demo_heldout").glob("*.flac"))
EXAMPLE = ROOT / "examples" / "demo_zh.wav"
VAD = VadOptions(max_merge_gap=0.5)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Paths and references: the demo model's f32 GGUF folder, a random translate adapter (peft folder and
    GGUF LoRA, written by the CLI), a tiny Qwen3 chat translator (transformers folder and GGUF, via the
    CLI); the transformers references with the same weights; the llama.cpp model with the adapter."""
    folder = tmp_path_factory.mktemp("serve-llamacpp")
    adapter = random_adapter(DEFAULT_MODEL, folder / "adapter", LoraSettings(r=8, lora_alpha=16, lora_dropout=0.0),
                             scale=0.05)
    assert main(["export", "gguf-lora", adapter, str(folder / "translate.gguf"), "--model", "demo"]) == 0
    export_gguf(None, folder / "speech", "f32")
    chat = write_tiny_chat_llm(folder / "chat", "qwen3", seed=2)
    assert main(["export", "gguf", chat, str(folder / "translator"), "--type", "f32"]) == 0
    paths = {"speech": str(folder / "speech"), "lora": str(folder / "translate.gguf"), "adapter": adapter,
             "translator": str(next((folder / "translator").glob("*.gguf"))), "chat": chat}
    model = load_model(paths["speech"], n_threads=1, lora={"translate": paths["lora"]})
    yield {"paths": paths, "model": model, "peft": load_model(lora={"translate": adapter}),
           "chat": ChatLMTranslator(chat)}
    model.close()


def two_sentences() -> np.ndarray:
    silence = np.zeros(16000, dtype=np.float32)
    return np.concatenate([silence[:4000], load_audio(CLIPS[5]), silence, load_audio(CLIPS[6]), silence[:8000]])


@pytest.fixture(scope="module")
def server(models):
    options = ServerOptions(translation_mode="cascade", translator=models["paths"]["translator"], max_sessions=2)
    with running_server(models["model"], options) as (url, app):
        yield url, app


def test_http_translations_on_llama_cpp_unified_and_cascade(models, server, demo):
    url, app = server
    state = app.state.server
    assert state.batching.name == "llama.cpp" and isinstance(state.translator, LlamaCppChatTranslator)
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
    audio = two_sentences()
    gap = {"max_merge_gap": VAD.max_merge_gap}  # two VAD segments
    unified = models["peft"].translate(audio, mode="unified", vad_options=VAD).text
    assert unified and unified != demo.translate(audio, mode="unified", vad_options=VAD).text, \
        "the adapter should change the text"
    got = client.audio.translations.create(file=("a.wav", _wav(audio)), model="m",
                                           extra_body={"mode": "unified", **gap})
    assert got.text == unified
    cascade = demo.translate(audio, mode="cascade", translator=models["chat"], vad_options=VAD)
    assert cascade.text and len(cascade.segments) >= 2
    got = client.audio.translations.create(file=("a.wav", _wav(audio)), model="m", response_format="verbose_json",
                                           extra_body=gap)
    assert got.text == cascade.text  # the server's default mode: cascade, with the GGUF translator
    assert [s.text for s in got.segments] == [s.text for s in cascade.segments]
    overlapped = client.audio.translations.create(file=("a.wav", _wav(audio)), model="m",
                                                  extra_body={"overlap": True, **gap})
    assert overlapped.text == cascade.text


def test_realtime_translate_on_llama_cpp_unified_and_cascade(models, server, demo):
    url, _ = server
    ws_url = url.replace("http://", "ws://") + "/v1/realtime"
    audio = two_sentences()
    # unified: the speech model with the GGUF LoRA writes English previews and items
    unified = _per_segment(models["peft"], audio, mode="unified", vad_options=VAD)
    assert len(unified) == 2
    items = _realtime(ws_url, audio, {"task": "translate", "mode": "unified"})
    assert [e["transcript"] for e in items["completed"]] == unified
    # cascade: items transcribed live, then each sentence translated by the GGUF translator
    cascade = _per_segment(demo, audio, mode="cascade", translator=models["chat"], vad_options=VAD)
    items = _realtime(ws_url, audio, {"task": "translate"})
    assert items["session"]["audio"]["input"]["transcription"]["mode"] == "cascade"
    assert [e["transcript"] for e in items["completed"]] == cascade
    assert [e["source_transcript"] for e in items["completed"]] == [
        s.text for s in demo.transcribe(audio, vad=True, vad_options=VAD).segments]
    for completed in items["completed"]:  # one delta per English sentence, joined to the transcript
        deltas = [e["delta"] for e in items["events"] if e.get("item_id") == completed["item_id"]
                  and e["type"].endswith(".delta")]
        assert deltas and "".join(deltas) == completed["transcript"]


def test_realtime_cascade_needs_a_translator(models):
    """A unified server whose model has a text translation task answers mode cascade with its own LLM;
    a bad mode is a 400 error event."""
    with running_server(models["model"], ServerOptions()) as (url, _):
        ws_url = url.replace("http://", "ws://") + "/v1/realtime"
        with websockets_sync.connect(ws_url) as ws:
            ws.recv(timeout=30)
            _update(ws, {"task": "translate", "mode": "both"})
            error = json.loads(ws.recv(timeout=30))
            assert error["type"] == "error" and error["error"]["param"] == "mode"


def test_cli_serve_takes_lora_and_translator(models, demo):
    paths = models["paths"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "funasr_nano.cli", "serve", "--model", paths["speech"], "--threads", "1", "--port", "0",
         "--lora", f"translate={paths['lora']}", "--translation-mode", "cascade", "--translator", paths["translator"]],
        stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        for line in process.stderr:
            match = re.search(r"\(llama\.cpp engine\) on (http://127\.0\.0\.1:\d+)", line)
            if match:
                break
        assert match, "the server did not start"
        client = openai.OpenAI(base_url=match.group(1) + "/v1", api_key="unused", max_retries=0, timeout=60)
        with open(EXAMPLE, "rb") as file:
            assert client.audio.translations.create(file=file, model="m").text == \
                demo.translate(EXAMPLE, mode="cascade", translator=models["chat"]).text
        with open(EXAMPLE, "rb") as file:
            assert client.audio.translations.create(file=file, model="m", extra_body={"mode": "unified"}).text == \
                models["peft"].translate(EXAMPLE, mode="unified").text
        with open(EXAMPLE, "rb") as file:  # the adapter is the translate task's only: transcription is the base's
            assert client.audio.transcriptions.create(file=file, model="m").text == demo.transcribe(EXAMPLE).text
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) in (0, -signal.SIGTERM)
        process.stderr.close()


def test_cli_translate_and_transcribe_take_lora_and_translator(models, demo, binhai, capsys):
    paths = models["paths"]
    common = ["--model", paths["speech"], "--threads", "1"]
    capsys.readouterr()
    assert main(["translate", *common, "--translator", paths["translator"], "--overlap", str(EXAMPLE)]) == 0
    assert capsys.readouterr().out.strip() == demo.translate(EXAMPLE, mode="cascade", translator=models["chat"]).text
    assert main(["translate", *common, "--lora", paths["lora"], "--mode", "unified", str(EXAMPLE)]) == 0
    assert capsys.readouterr().out.strip() == models["peft"].translate(EXAMPLE, mode="unified").text
    # a plain --lora PATH is the translate task's: the cascade's transcription runs on the base weights
    assert main(["translate", *common, "--lora", paths["lora"], "--translator", paths["translator"], str(binhai)]) == 0
    assert capsys.readouterr().out.strip() == demo.translate(binhai, mode="cascade", translator=models["chat"]).text
    # transcribe: TASK=PATH, or a plain PATH for every task
    with_adapter = load_model(lora={"transcribe": paths["adapter"]}).transcribe(binhai).text
    assert with_adapter != demo.transcribe(binhai).text
    for lora in (f"transcribe={paths['lora']}", paths["lora"]):
        assert main(["transcribe", *common, "--lora", lora, str(binhai)]) == 0
        assert capsys.readouterr().out.strip() == with_adapter
    assert main(["transcribe", *common, "--lora", paths["lora"], "--lora", f"default={paths['lora']}",
                 str(EXAMPLE)]) == 2
    assert "two adapters for the 'default' task" in capsys.readouterr().err


# -- helpers -----------------------------------------------------------------------------------------


def _wav(audio: np.ndarray) -> bytes:
    import io

    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, audio, 16000, format="WAV")
    return buffer.getvalue()


def _per_segment(model, audio, **options) -> list[str]:
    """The translation of ``audio`` per VAD segment (the sentences of one segment carry its span)."""
    from funasr_nano.pipeline.translate import SentenceTranslated
    from funasr_nano.results import join_texts

    groups: dict = {}
    for event in model.translate_stream(audio, **options):
        if isinstance(event, SentenceTranslated):
            groups.setdefault((event.sentence.start, event.sentence.end), []).append(event.sentence.text)
    return [join_texts(texts) for texts in groups.values()]


def _update(ws, transcription: dict) -> None:
    ws.send(json.dumps({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
        "format": {"type": "audio/pcm", "rate": 16000}, "transcription": transcription,
        "turn_detection": {"type": "server_vad", "silence_duration_ms": int(VAD.max_merge_gap * 1000)}}}}}))


def _realtime(url: str, audio: np.ndarray, transcription: dict) -> dict:
    data = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    with websockets_sync.connect(url) as ws:
        ws.recv(timeout=30)
        _update(ws, transcription)
        updated = json.loads(ws.recv(timeout=30))
        assert updated["type"] == "session.updated", updated
        for begin in range(0, len(data), 3200):
            ws.send(json.dumps({"type": "input_audio_buffer.append",
                                "audio": base64.b64encode(data[begin:begin + 3200]).decode()}))
        ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
        events = []
        while True:
            event = json.loads(ws.recv(timeout=60))
            events.append(event)
            assert event["type"] != "error", event
            if event["type"] == "input_audio_buffer.cleared":
                break
    return {"session": updated["session"], "events": events,
            "completed": [e for e in events if e["type"].endswith(".completed")]}
