"""Chat options are declared once; a keyword that is not one is refused, never dropped."""

from __future__ import annotations

import pytest

from localinfer.calls.options import ChatOptions, check_options


def test_known_options_pass() -> None:
    check_options(dict(ChatOptions(max_tokens=3, temperature=0.0, stop="x", system="s")))


def test_an_unknown_keyword_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match="logprobs") as caught:
        check_options({"max_tokens": 3, "logprobs": True})
    assert "extra_body" in str(caught.value)


def test_the_clients_refuse_it_before_any_request() -> None:
    from localinfer.client import Client, SyncClient

    with pytest.raises(TypeError, match="top_k"):
        SyncClient("http://127.0.0.1:9").chat("hi", model="m", top_k=3)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="top_k"):
        Client("http://127.0.0.1:9").chat("hi", model="m", top_k=3)  # type: ignore[call-overload]


def test_every_call_refuses_keywords_it_does_not_declare() -> None:
    from localinfer.calls.options import EmbedOptions, RerankOptions, SpeechOptions

    check_options({"model": "m", "dimensions": 8}, EmbedOptions, "embed")
    for declared, call in ((EmbedOptions, "embed"), (RerankOptions, "rerank")):
        with pytest.raises(TypeError, match=rf"{call}\(\) got unexpected keyword arguments top_k"):
            check_options({"top_k": 3}, declared, call)
    with pytest.raises(TypeError, match="voice, response_format, speed") as caught:
        check_options({"format": "mp3"}, SpeechOptions, "speech")
    assert "extra_body" not in str(caught.value)


def test_the_media_calls_refuse_it_before_any_request() -> None:
    from localinfer.client import SyncClient

    client = SyncClient("http://127.0.0.1:9")
    with pytest.raises(TypeError, match="lang"):
        client.transcribe(b"", model="w", lang="en")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="format"):
        client.speech("hi", model="s", format="mp3")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="top"):
        client.rerank("q", ["d"], model="r", top=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="dims"):
        client.embed("t", model="e", dims=3)  # type: ignore[call-arg]
