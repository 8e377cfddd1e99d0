"""``timestamp_granularities[]=word`` through the official ``openai`` client: OpenAI's ``words`` array from
Fun-ASR-Nano's CTC alignment, and a clear 400 for a checkpoint without the CTC branch."""

from __future__ import annotations

import pytest

from funasr_nano import load_model
from funasr_nano.server import ServerOptions
from funasr_nano.testing.tiny import TinyConfig, write_tiny_checkpoint

from .server_util import running_server

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def ctc_model(tmp_path_factory):
    return load_model(write_tiny_checkpoint(str(tmp_path_factory.mktemp("tiny-ctc")), "official",
                                            TinyConfig(ctc=True), seed=5))


def _client(url):
    return openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)


def test_word_granularity_returns_openai_words(ctc_model, binhai):
    expected = ctc_model.transcribe(binhai, word_timestamps=True, max_new_tokens=16)
    words = [(w.word.strip(), w.start, w.end) for s in expected.segments for w in s.words if w.word.strip()]
    assert words
    with running_server(ctc_model, ServerOptions()) as (url, _):
        client = _client(url)
        verbose = client.audio.transcriptions.create(file=binhai, model="m", response_format="verbose_json",
                                                     timestamp_granularities=["word"],
                                                     extra_body={"max_new_tokens": 16})
        assert verbose.text == expected.text
        assert [(w.word, w.start, w.end) for w in verbose.words] == [(t, round(a, 3), round(b, 3)) for t, a, b in words]
        assert not verbose.segments  # only words were asked for, as OpenAI answers
        both = client.audio.transcriptions.create(file=binhai, model="m", response_format="verbose_json",
                                                  timestamp_granularities=["word", "segment"],
                                                  extra_body={"max_new_tokens": 16})
        assert len(both.segments) == 1 and len(both.words) == len(words)
        with pytest.raises(openai.BadRequestError) as error:
            client.audio.transcriptions.create(file=binhai, model="m", timestamp_granularities=["word"])
        assert error.value.body["param"] == "timestamp_granularities"


def test_word_granularity_on_a_checkpoint_without_ctc_is_a_clear_400(model, binhai):
    with running_server(model, ServerOptions()) as (url, _):
        with pytest.raises(openai.BadRequestError) as error:
            _client(url).audio.transcriptions.create(file=binhai, model="m", response_format="verbose_json",
                                                     timestamp_granularities=["word"])
    assert "CTC branch" in error.value.body["message"]
