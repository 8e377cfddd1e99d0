"""API keys (funasr_nano.server.auth): the official ``openai`` client with no key, a wrong key and the
right one; the realtime WebSocket (a real ``websockets`` client) with the key in the Authorization
header or in OpenAI's ``openai-insecure-api-key.<key>`` subprotocol; /health public; the key file and
the environment variable; a non-loopback bind without a key refused (one line, exit 2)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx2")
websockets_sync = pytest.importorskip("websockets.sync.client")

from funasr_nano.server import ServerOptions  # noqa: E402

from .server_util import running_server  # noqa: E402
from .test_server import EXAMPLE  # noqa: E402

KEYS = ("sk-first-key", "sk-second-key")


@pytest.fixture(scope="module")
def server(demo, tmp_path_factory):
    key_file = tmp_path_factory.mktemp("keys") / "keys.txt"
    key_file.write_text("# the file's key\n\nsk-from-file\n")
    with running_server(demo, ServerOptions(api_key=KEYS, api_key_file=str(key_file))) as (url, app):
        yield url


def client(url: str, key: str) -> "openai.OpenAI":
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=60)


def test_http_routes_need_a_right_key(server, demo):
    expected = demo.transcribe(EXAMPLE).text
    for key in KEYS + ("sk-from-file",):
        assert client(server, key).audio.transcriptions.create(file=EXAMPLE, model="m").text == expected
    with pytest.raises(openai.AuthenticationError) as caught:
        client(server, "sk-wrong").audio.transcriptions.create(file=EXAMPLE, model="m")
    assert caught.value.status_code == 401
    assert caught.value.body["code"] == "invalid_api_key" and caught.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.AuthenticationError):
        client(server, "sk-first-ke").models.list()  # a prefix of a key is not the key
    # no key at all (the openai client insists on one: raw HTTP)
    for method, path in (("GET", "/v1/models"), ("POST", "/v1/audio/transcriptions"), ("GET", "/docs"),
                         ("GET", "/no/such/route")):
        response = httpx.request(method, server + path, timeout=10)
        assert response.status_code == 401, (path, response.text)
        assert response.json()["error"]["code"] == "invalid_api_key"
        assert "didn't provide an API key" in response.json()["error"]["message"]
        assert response.headers["www-authenticate"] == "Bearer"
    assert [model.id for model in client(server, KEYS[1]).models.list()] == ["funasr-nano-demo"]
    assert httpx.get(server + "/health", timeout=10).json()["status"] == "ok"  # public


def _realtime(url: str, **kwargs):
    return websockets_sync.connect(url.replace("http://", "ws://") + "/v1/realtime", open_timeout=30, **kwargs)


def test_realtime_takes_the_key_from_the_header_or_the_subprotocol(server):
    with _realtime(server, additional_headers={"Authorization": f"Bearer {KEYS[0]}"}) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "session.created"
    # OpenAI's browser clients: ["realtime", "openai-insecure-api-key.<key>"]; the server picks "realtime"
    with _realtime(server, subprotocols=["realtime", f"openai-insecure-api-key.{KEYS[1]}"]) as ws:
        assert ws.subprotocol == "realtime"
        assert json.loads(ws.recv(timeout=30))["type"] == "session.created"
    for kwargs in ({}, {"additional_headers": {"Authorization": "Bearer sk-wrong"}},
                   {"subprotocols": ["realtime", "openai-insecure-api-key.sk-wrong"]}):
        with pytest.raises(websockets_sync.InvalidStatus) as caught:
            with _realtime(server, **kwargs):
                pass
        assert caught.value.response.status_code == 401, kwargs
        assert json.loads(caught.value.response.body)["error"]["code"] == "invalid_api_key"


def test_non_loopback_bind_without_a_key_is_refused(capsys, monkeypatch):
    from funasr_nano.cli.main import main
    from funasr_nano.server.auth import ENV_VAR, check_exposure, is_loopback

    monkeypatch.delenv(ENV_VAR, raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "--host 0.0.0.0 is reachable from other machines and no API key is set" in err and err.count("\n") == 1
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("::")
    check_exposure("0.0.0.0", (), allow_unauthenticated=True)
    check_exposure("0.0.0.0", ("sk-x",), allow_unauthenticated=False)
    check_exposure("127.0.0.1", (), allow_unauthenticated=False)


def test_key_sources_and_their_errors(tmp_path, capsys, monkeypatch):
    from funasr_nano.cli.main import main
    from funasr_nano.cli.serve import with_environment_key
    from funasr_nano.server.auth import ENV_VAR, load_api_keys

    options = with_environment_key(ServerOptions(api_key=("sk-a",)), {ENV_VAR: " sk-env\n"})
    assert options.api_key == ("sk-a", "sk-env") and "sk-" not in repr(options)  # never in a log line
    assert with_environment_key(ServerOptions(), {}).api_key == ()
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    monkeypatch.delenv(ENV_VAR, raising=False)
    for flags, message in ((["--api-key-file", str(empty)], "holds no key"),
                           (["--api-key-file", str(tmp_path / "missing")], "cannot read it"),
                           (["--api-key", "a b"], "api_key must be a tuple of non-empty strings without spaces")):
        assert main(["serve", "--port", "0", *flags]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert load_api_keys(("k1",), None) == ("k1",)
