"""The server on the llama.cpp engine (the demo model exported to GGUF f32): continuous batching through
the server's BatchingEngine — concurrent clients get the answers they get alone and share decoding
steps, a short request sent while a long generation streams is answered before that one ends,
streamed deltas join to the text, a client that goes away stops its rows."""

from __future__ import annotations

import concurrent.futures
import threading

import pytest

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx2")

from funasr_nano import load_model  # noqa: E402
from funasr_nano.export.gguf_folder import export_gguf  # noqa: E402
from funasr_nano.server import ServerOptions  # noqa: E402

from .server_util import running_server, wait_for  # noqa: E402
from .test_server import CLIPS, EXAMPLE, health  # noqa: E402

LONG = {"min_new_tokens": 300, "max_new_tokens": 320, "repetition_guard": "false"}


@pytest.fixture(scope="module")
def gguf_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo-gguf")
    export_gguf(None, folder / "gguf", "f32")
    model = load_model(folder / "gguf", n_threads=1)
    assert model.engine.name == "llama.cpp"
    yield model
    model.close()


@pytest.fixture(scope="module")
def served(gguf_model):
    expected = {path.name: gguf_model.transcribe(path).text for path in CLIPS[:8]}
    expected[EXAMPLE.name] = gguf_model.transcribe(EXAMPLE).text
    with running_server(gguf_model, ServerOptions(max_queue=16, max_batch_size=8)) as (url, app):
        yield url, app, expected


def test_concurrent_clients_share_decoding_steps(served):
    url, app, expected = served
    engine = app.state.server.batching
    assert engine.continuous and engine.inner.n_seq_max == 8
    before = health(url)["batching"]
    barrier = threading.Barrier(8)

    def ask(path):
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)
        barrier.wait()
        with open(path, "rb") as file:
            return path.name, client.audio.transcriptions.create(file=file, model="m").text

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = dict(pool.map(ask, CLIPS[:8]))
    assert answers == {path.name: expected[path.name] for path in CLIPS[:8]}
    after = health(url)
    assert after["counters"]["errors_5xx"] == 0
    assert after["batching"]["calls"] - before["calls"] >= 8
    assert after["batching"]["max_rows"] > 1, "no two requests shared a decoding step"


def test_short_request_is_answered_while_a_long_one_streams(served):
    url, app, expected = served
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)
    stream = client.audio.transcriptions.create(file=EXAMPLE, model="m", stream=True, extra_body=LONG)
    events = iter(stream)
    deltas = [next(events) for _ in range(3)]
    assert all(event.type == "transcript.text.delta" for event in deltas)
    # the short request joins the running batch: it is answered while the long one still decodes
    assert client.audio.transcriptions.create(file=CLIPS[0], model="m").text == expected[CLIPS[0].name]
    assert app.state.server.batching.inner.running_rows == 1, "the short request waited for the long one"
    assert next(events).type == "transcript.text.delta"
    before = health(url)["batching"]["cancelled_calls"]
    stream.close()  # the client goes away: its rows stop
    status = wait_for(lambda: (lambda h: h if h["batching"]["cancelled_calls"] > before
                               and h["requests_active"] == 0 else None)(health(url)))
    assert status["batching"]["cancelled_tokens"] < 300
    assert app.state.server.batching.inner.waiting_rows == 0


def test_streamed_deltas_join_to_the_text(served):
    url, _, expected = served
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)
    events = list(client.audio.transcriptions.create(file=EXAMPLE, model="m", stream=True))
    assert "".join(e.delta for e in events if e.type == "transcript.text.delta") == expected[EXAMPLE.name]
    assert events[-1].type == "transcript.text.done" and events[-1].text == expected[EXAMPLE.name]
