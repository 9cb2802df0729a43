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
