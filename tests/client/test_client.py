"""``Client`` against a live in-process ``Server``: user code, chat streaming, errors."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import anyio
import pytest

import localinfer
from localinfer import errors as e
from localinfer.client import ChatResult, ChatStream, Client
from tests import models
from tests.client.fakes import SlowChat
from tests.support import define, wait_until

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def chat_handler() -> SlowChat:
    return SlowChat(delay_s=0.01)


@pytest.fixture(scope="module")
async def server(chat_handler: SlowChat) -> AsyncIterator[localinfer.Server]:
    served = {
        "echo": models.Echo,
        "words": models.Words,
        "bytes": models.Bytes,
        "flaky": models.Flaky,
        "norm": models.NormAPI,
        "chat": chat_handler,
        "sleeper": define(models.Sleeper, max_queue=1),
    }
    async with localinfer.Server(served, device="cpu", request_timeout_s=5.0) as running:
        yield running


@pytest.fixture
async def client(server: localinfer.Server) -> AsyncIterator[Client]:
    async with server.client() as c:
        yield c


async def busy(client: Client, model: str) -> int:
    return (await client.stats())[model].busy_workers


# -- operations ----------------------------------------------------------------------------


async def test_models_and_stats(client: Client) -> None:
    served = await client.models()
    assert served.get("chat") is not None and served.get("chat").task == "chat"  # type: ignore[union-attr]
    assert {"echo", "words", "sleeper"} <= set(served.names)
    await client.infer("echo", "x")
    stats = await client.stats()
    assert stats["echo"].succeeded >= 1 and stats["echo"].workers == 1
    assert await client.ready()


# -- user code -----------------------------------------------------------------------------


async def test_infer_returns_json_joined_text_or_bytes(client: Client) -> None:
    reply = await client.infer("echo", "ab", repeat=2)
    assert isinstance(reply, dict) and reply["text"] == "abab"
    assert await client.infer("words", 3) == "w0 w1 w2 "
    assert await client.infer("bytes", 2) == bytes([0]) * 1000 + bytes([1]) * 1000
    assert await client.predict("norm", {"x": 3, "y": 4}) == {"norm": 5.0}


async def test_infer_stream_yields_items_as_they_come(client: Client) -> None:
    assert [item async for item in client.infer_stream("words", 3)] == ["w0 ", "w1 ", "w2 "]
    chunks = [item async for item in client.infer_stream("bytes", 2)]
    assert b"".join(chunks) == bytes([0]) * 1000 + bytes([1]) * 1000  # type: ignore[arg-type]
    (whole,) = [item async for item in client.infer_stream("echo", "a")]  # not a generator
    assert whole["text"] == "a"  # type: ignore[index]


# -- chat ----------------------------------------------------------------------------------


async def test_chat_returns_text_usage_and_timing(client: Client) -> None:
    result = await client.chat("one two three", max_tokens=3)  # the only chat model: no name
    assert isinstance(result, ChatResult)
    assert (result.text, result.finish_reason, result.model) == ("w0 w1 w2 ", "length", "chat")
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (3, 3)
    assert result.usage.total_tokens == 6
    assert result.timing.prefill_ms == 0.5 and result.timing.decode_ms > 0
    assert result.timing.total_ms >= result.timing.decode_ms


async def test_chat_stream_gives_deltas_then_the_result(client: Client) -> None:
    stream = client.chat(
        [{"role": "user", "content": "hi"}], model="chat", stream=True, max_tokens=4
    )
    assert isinstance(stream, ChatStream)
    deltas = [delta async for delta in stream]
    assert deltas == ["w0 ", "w1 ", "w2 ", "w3 "]
    assert stream.result is not None and stream.result.text == "".join(deltas) == stream.text
    assert stream.result.usage.completion_tokens == 4
    assert stream.result.timing.first_token_ms is not None


async def until_stopped(handler: SlowChat, client: Client, cancelled_before: int) -> float:
    """Seconds until the worker saw the cancellation and the stats counted it."""
    started = time.perf_counter()
    await wait_until(handler.stopped.is_set, timeout=2)

    async def counted() -> bool:
        stats = (await client.stats())["chat"]
        return stats.cancelled == cancelled_before + 1 and stats.busy_workers == 0

    await wait_until(counted, timeout=2)
    return time.perf_counter() - started


async def test_closing_a_stream_stops_the_generation(
    client: Client, chat_handler: SlowChat
) -> None:
    before = (await client.stats())["chat"].cancelled
    chat_handler.stopped.clear()
    async with client.chat("go", stream=True, max_tokens=10_000) as stream:
        async for _ in stream:
            if len(stream.text.split()) == 3:
                break
    assert await until_stopped(chat_handler, client, before) < 1.0
    assert chat_handler.stopped_after[-1] < 200  # stopped at once, not after 10 000 words


async def test_breaking_out_of_a_stream_stops_the_generation(
    client: Client, chat_handler: SlowChat
) -> None:
    """No ``async with``: the dropped stream is closed by the loop's async-generator hook."""
    before = (await client.stats())["chat"].cancelled
    chat_handler.stopped.clear()
    seen = 0
    async for _ in client.chat("go", stream=True, max_tokens=10_000):
        seen += 1
        if seen == 3:
            break
    assert await until_stopped(chat_handler, client, before) < 1.0


async def test_cancelling_the_caller_stops_the_generation(
    client: Client, chat_handler: SlowChat
) -> None:
    before = (await client.stats())["chat"].cancelled
    chat_handler.stopped.clear()
    with anyio.move_on_after(0.2):
        await client.chat("go", max_tokens=10_000)
    assert await until_stopped(chat_handler, client, before) < 1.0


# -- errors --------------------------------------------------------------------------------


async def test_errors_are_the_server_classes(client: Client) -> None:
    with pytest.raises(e.ModelNotFound) as missing:
        await client.infer("nope")
    assert missing.value.code == "model_not_found"
    with pytest.raises(e.ModelNotFound):
        await client.chat("hi", model="nope")
    with pytest.raises(e.InvalidArguments, match="missing a required argument"):
        await client.infer("echo")
    with pytest.raises(e.InvalidRequest, match="serves infer, not chat"):
        await client.chat("hi", model="echo")
    with pytest.raises(e.HandlerFailed, match="boom"):
        await client.infer("flaky", fail=True)
    with pytest.raises(e.ResourceExhausted):
        await client.infer("flaky", fail=True, kind="memory")
    with pytest.raises(e.InvalidRequest, match="none serves embeddings"):
        await client.embed("text")
    with pytest.raises(e.ModelNotFound):  # a stream raises where its first delta would be
        async for _ in client.chat("hi", model="nope", stream=True):
            pass  # pragma: no cover


async def test_queue_full_carries_retry_after(client: Client) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: client.infer("sleeper", seconds=0.5))
        await wait_until(lambda: busy(client, "sleeper"))
        tg.start_soon(lambda: client.infer("sleeper"))

        async def queued() -> bool:
            return (await client.stats())["sleeper"].queue_depth == 1

        await wait_until(queued)
        with pytest.raises(e.QueueFull) as full:
            await client.infer("sleeper")
    assert full.value.retry_after_s >= 1 and full.value.code == "queue_full"


async def test_deadline_is_request_timeout_and_frees_the_worker() -> None:
    async with (
        localinfer.Server([models.Sleeper], device="cpu", request_timeout_s=0.3) as server,
        server.client() as client,
    ):
        with pytest.raises(e.RequestTimeout, match=r"0\.3 s"):
            await client.infer("sleeper", seconds=1.0)

        async def idle() -> bool:
            stats = (await client.stats())["sleeper"]
            return stats.cancelled == 1 and stats.busy_workers == 0

        await wait_until(idle, timeout=3)


async def test_api_key_is_sent_and_a_wrong_one_is_refused() -> None:
    async with localinfer.Server([models.Echo], device="cpu", api_key="s3cret") as server:
        async with server.client() as client:  # carries the server's key
            assert (await client.infer("echo", "a"))["text"] == "a"  # type: ignore[index]
        async with Client(server.url, api_key="wrong") as intruder:
            with pytest.raises(e.AuthenticationFailed):
                await intruder.infer("echo", "a")


async def test_no_server_is_a_connection_error_naming_the_url() -> None:
    async with Client("http://127.0.0.1:9", timeout=2) as client:
        with pytest.raises(e.LocalInferError, match="cannot reach localinfer at") as failed:
            await client.models()
    assert failed.value.code == "connection_error"


async def test_base_url_and_key_default_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOCALINFER_URL", "http://example.invalid:1234/")
    monkeypatch.setenv("LOCALINFER_API_KEY", "k")
    async with Client() as client:
        assert (client.base_url, client.api_key) == ("http://example.invalid:1234", "k")
    monkeypatch.delenv("LOCALINFER_URL")
    async with Client() as client:
        assert client.base_url == "http://127.0.0.1:8000"
