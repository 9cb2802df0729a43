"""TransformersChatHandler on a tiny random Llama: streaming, stops, limits, cancellation,
sampling, continuous batching, and one trip through the real runtime.

The handler is driven directly with :class:`RecordingItem`, a WorkItem that records what
the handler does to it. Outputs are checked against ``model.generate`` run by hand, so a
random model is as good as a trained one here.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from localinfer.errors import ConfigurationError, InvalidRequest  # noqa: E402
from localinfer.handlers.base import ModelSource, WorkItem  # noqa: E402
from localinfer.handlers.tasks import GenerationRequest, GenerationResult  # noqa: E402
from localinfer.handlers.transformers_chat import TransformersChatHandler  # noqa: E402

MESSAGES = ({"role": "user", "content": "Tell me a story about the sea."},)
#: "cuda" runs the same tests on a GPU (float32 there too, so both modes agree bit for bit)
DEVICE = os.environ.get("LOCALINFER_TEST_DEVICE", "cpu")


@pytest.fixture(scope="module", autouse=True)
def _two_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class RecordingItem:
    """A WorkItem that records emits, the result or the error, and can be cancelled."""

    def __init__(self, payload: Any, *, cancel_after_chunks: int | None = None):
        self._payload = payload
        self._cancel_after = cancel_after_chunks
        self._cancelled = False
        self._done = False
        self.chunks: list[str] = []
        self.result: GenerationResult | None = None
        self.error: BaseException | None = None
        self.ended = threading.Event()

    @property
    def payload(self) -> Any:
        return self._payload

    @property
    def request_id(self) -> str:
        return f"test-{id(self)}"

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    @property
    def done(self) -> bool:
        return self._done

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    def cancel(self) -> None:
        self._cancelled = True

    def emit(self, chunk: Any) -> None:
        assert isinstance(chunk, str) and chunk, f"emitted {chunk!r}"
        if self._done:
            raise RuntimeError("emit() after the item ended")
        self.chunks.append(chunk)
        if self._cancel_after is not None and len(self.chunks) >= self._cancel_after:
            self._cancelled = True

    def finish(self, result: Any = None) -> None:
        if self._done:
            raise RuntimeError("finish() called twice")
        self._done = True
        self.result = result
        self.ended.set()

    def fail(self, error: BaseException) -> None:
        if self._done:
            return
        self._done = True
        self.error = error
        self.ended.set()

    def wait(self, timeout: float = 30.0) -> RecordingItem:
        assert self.ended.wait(timeout), "the handler never ended this item"
        return self


def run(
    handler: TransformersChatHandler, request: GenerationRequest, **kwargs: Any
) -> RecordingItem:
    item = RecordingItem(request, **kwargs)
    handler.process([item])
    return item.wait()


def greedy(max_new_tokens: int = 24, **kwargs: Any) -> GenerationRequest:
    return GenerationRequest(
        messages=MESSAGES, max_new_tokens=max_new_tokens, temperature=0.0, **kwargs
    )


def reference(handler: TransformersChatHandler, max_new_tokens: int) -> tuple[list[int], str]:
    """Greedy tokens and text from a plain ``model.generate`` on the same prompt."""
    assert handler.model is not None and handler.tokenizer is not None
    prompt = handler.encode_prompt(greedy())
    with torch.inference_mode():
        out = handler.model.generate(
            torch.tensor([prompt], device=handler.model.device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
        )
    ids = out[0, len(prompt) :].tolist()
    return ids, str(handler.tokenizer.decode(ids, skip_special_tokens=True))


def load(directory: Path, **options: Any) -> TransformersChatHandler:
    options.setdefault("dtype", "float32")
    handler = TransformersChatHandler(ModelSource(str(directory), options=options))
    handler.load(DEVICE)
    return handler


@pytest.fixture(scope="module")
def handler(tiny_llama_dir: Path) -> Iterator[TransformersChatHandler]:
    loaded = load(tiny_llama_dir, continuous_batching=False)
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def cb_handler(tiny_llama_dir: Path) -> Iterator[TransformersChatHandler]:
    try:
        loaded = load(tiny_llama_dir, continuous_batching=True, max_in_flight=8)
    except Exception as exc:  # pragma: no cover - depends on the installed transformers
        pytest.skip(f"continuous batching does not start here: {exc}")
    yield loaded
    loaded.close()


# -- sequential -------------------------------------------------------------------------------


def test_recording_item_is_a_work_item() -> None:
    assert isinstance(RecordingItem(greedy()), WorkItem)


def test_streamed_deltas_make_the_result_and_match_generate(
    handler: TransformersChatHandler,
) -> None:
    ids, text = reference(handler, 24)
    item = run(handler, greedy(24))
    assert item.error is None and item.result is not None
    assert len(item.chunks) > 1  # streamed piece by piece, not in one go
    assert item.text == item.result.text == text
    assert item.result.completion_tokens == len(ids) == 24
    assert item.result.finish_reason == "length"
    assert item.result.prefill_ms > 0 and item.result.decode_ms > 0


def test_prompt_tokens_are_counted_exactly(handler: TransformersChatHandler) -> None:
    assert handler.tokenizer is not None
    templated = handler.tokenizer.apply_chat_template(
        list(MESSAGES), add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"]
    chat = run(handler, greedy(2)).result
    assert chat is not None and chat.prompt_tokens == len(templated)

    plain = GenerationRequest(prompt="Once upon a time", max_new_tokens=2, temperature=0.0)
    result = run(handler, plain).result
    assert result is not None
    assert result.prompt_tokens == len(handler.tokenizer("Once upon a time")["input_ids"])


def test_greedy_is_deterministic(handler: TransformersChatHandler) -> None:
    first, second = run(handler, greedy(16)), run(handler, greedy(16))
    assert first.result is not None and second.result is not None
    assert first.result.text == second.result.text
    assert first.chunks == second.chunks


def test_stop_string_split_across_tokens(handler: TransformersChatHandler) -> None:
    ids, text = reference(handler, 40)
    assert handler.tokenizer is not None
    decode = handler.tokenizer.decode
    # a boundary after token k where two clean characters sit on either side
    for k in range(2, len(ids) - 1):
        before = decode(ids[:k], skip_special_tokens=True)
        after = decode(ids[: k + 1], skip_special_tokens=True)
        cut = len(before)
        stop = text[cut - 2 : cut + 2]
        clean = len(stop) == 4 and "\ufffd" not in stop and stop.isprintable()
        if (
            clean
            and text.startswith(after)
            and len(after) >= cut + 2
            and text.find(stop) == cut - 2
        ):
            break
    else:
        pytest.fail("no token boundary with clean text on both sides in the reference output")

    item = run(handler, greedy(40, stop=("\x00never", stop)))
    assert item.result is not None
    assert item.result.finish_reason == "stop"
    assert item.result.text == item.text == text[: cut - 2]
    assert all(stop not in chunk for chunk in item.chunks)
    assert item.result.completion_tokens == k + 1  # stopped at the token completing it


def test_held_back_text_is_released_when_no_stop_string_completes(
    handler: TransformersChatHandler,
) -> None:
    _, text = reference(handler, 20)
    item = run(handler, greedy(20, stop=(text[-3:] + "\x00never",)))
    assert item.result is not None
    assert item.result.finish_reason == "length"
    assert item.text == item.result.text == text


def test_eos_ends_with_stop(
    handler: TransformersChatHandler, tiny_llama_dir: Path, tmp_path: Path
) -> None:
    ids, _ = reference(handler, 24)
    at = next(i for i in range(3, len(ids)) if ids[i] not in ids[:i])
    # the same model, with a generated token promoted to end-of-sequence
    copy = Path(shutil.copytree(tiny_llama_dir, tmp_path / "eos"))
    config_path = copy / "generation_config.json"
    config = json.loads(config_path.read_text())
    config["eos_token_id"] = [ids[at]]
    config_path.write_text(json.dumps(config))
    eos_handler = load(copy, continuous_batching=False)
    try:
        item = run(eos_handler, greedy(24))
    finally:
        eos_handler.close()
    assert item.result is not None and eos_handler.model is None
    assert item.result.finish_reason == "stop"
    assert item.result.completion_tokens == at + 1
    assert handler.tokenizer is not None
    assert (
        item.text
        == item.result.text
        == handler.tokenizer.decode(ids[:at], skip_special_tokens=True)
    )


def test_context_overflow_fails_before_emitting(handler: TransformersChatHandler) -> None:
    prompt_tokens = len(handler.encode_prompt(greedy()))
    item = run(handler, greedy(500))
    assert item.result is None and item.chunks == []
    assert isinstance(item.error, InvalidRequest)
    message = str(item.error)
    assert str(prompt_tokens) in message and "500" in message and "512" in message


def test_empty_request_is_invalid(handler: TransformersChatHandler) -> None:
    item = run(handler, GenerationRequest(max_new_tokens=4))
    assert isinstance(item.error, InvalidRequest)


def test_cancellation_stops_mid_stream(handler: TransformersChatHandler) -> None:
    item = run(handler, greedy(200), cancel_after_chunks=3)
    assert item.error is None and item.result is not None
    assert 3 <= len(item.chunks) <= 4  # the held-back tail may follow the third
    assert item.result.completion_tokens < 20


def test_a_cancelled_item_is_not_started(handler: TransformersChatHandler) -> None:
    item = RecordingItem(greedy(8))
    item.cancel()
    handler.process([item])
    assert item.done and item.chunks == [] and item.result is None


def test_seed_makes_sampling_reproducible(handler: TransformersChatHandler) -> None:
    def sample(seed: int) -> str:
        request = GenerationRequest(
            messages=MESSAGES, max_new_tokens=20, temperature=1.0, top_p=0.95, seed=seed
        )
        result = run(handler, request).result
        assert result is not None and result.completion_tokens > 0
        return result.text

    assert sample(7) == sample(7)
    assert sample(7) != sample(8)


# -- continuous batching ------------------------------------------------------------------------


def test_continuous_batching_matches_sequential_greedy(
    handler: TransformersChatHandler, cb_handler: TransformersChatHandler
) -> None:
    assert cb_handler.continuous_batching and cb_handler.max_in_flight == 8
    requests = [
        GenerationRequest(
            messages=({"role": "user", "content": f"Question number {i}?"},),
            max_new_tokens=12 + 3 * i,
            temperature=0.0,
        )
        for i in range(6)
    ]
    expected = [run(handler, request).result for request in requests]
    items = [RecordingItem(request) for request in requests]
    for item in items:  # one at a time, as the worker feeds them
        cb_handler.process([item])
    for item, want in zip(items, expected, strict=True):
        got = item.wait().result
        assert item.error is None and got is not None and want is not None
        assert item.text == got.text == want.text
        assert (got.completion_tokens, got.finish_reason) == (want.completion_tokens, "length")
        assert got.prompt_tokens == want.prompt_tokens


def test_continuous_batching_stop_strings_and_cancellation(
    handler: TransformersChatHandler, cb_handler: TransformersChatHandler
) -> None:
    _, text = reference(handler, 30)
    stop = text[10:13]
    stopped = RecordingItem(greedy(30, stop=(stop,)))
    cancelled = RecordingItem(greedy(400), cancel_after_chunks=2)
    cb_handler.process([stopped])
    cb_handler.process([cancelled])
    result = stopped.wait().result
    assert result is not None and result.finish_reason == "stop"
    assert stopped.text == result.text == text[: text.find(stop)]
    assert cancelled.wait().error is None and cancelled.result is not None
    assert cancelled.result.completion_tokens < 100


def test_continuous_batching_seeded_sampling_matches_sequential(
    handler: TransformersChatHandler, cb_handler: TransformersChatHandler
) -> None:
    request = GenerationRequest(messages=MESSAGES, max_new_tokens=16, temperature=0.8, seed=11)
    want = run(handler, request).result
    got = run(cb_handler, request).result
    assert want is not None and got is not None and got.text == want.text


def test_continuous_batching_unseeded_sampling_streams(cb_handler: TransformersChatHandler) -> None:
    items = [
        RecordingItem(
            GenerationRequest(messages=MESSAGES, max_new_tokens=10, temperature=1.2, top_p=0.9)
        )
        for _ in range(3)
    ]
    cb_handler.process(items)
    for item in items:
        result = item.wait().result
        assert result is not None and result.completion_tokens == 10
        assert item.text == result.text


def test_continuous_batching_with_eager_attention(tiny_llama_dir: Path) -> None:
    """The manager switches eager models to paged attention; seeded requests still match."""
    sequential = load(tiny_llama_dir, continuous_batching=False, attn_implementation="eager")
    batched = load(
        tiny_llama_dir, continuous_batching=True, max_in_flight=4, attn_implementation="eager"
    )
    try:
        seeded = GenerationRequest(messages=MESSAGES, max_new_tokens=12, temperature=0.8, seed=3)
        for request in (seeded, greedy(12), seeded):
            want, got = run(sequential, request).result, run(batched, request).result
            assert want is not None and got is not None and got.text == want.text
    finally:
        sequential.close()
        batched.close()


def test_continuous_batching_that_cannot_start_fails_the_load(tiny_llama_dir: Path) -> None:
    with pytest.raises(ConfigurationError, match="page_size"):
        load(
            tiny_llama_dir,
            continuous_batching=True,
            continuous_batching_config={"page_size": 2},
        )


def _engine_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Continuous batching wanted by default, and the installed transformers cannot give it."""
    from localinfer.handlers import transformers_chat
    from localinfer.handlers.generation.continuous_batching import ContinuousBatchingEngine

    def start(*args: Any, **kwargs: Any) -> Any:
        raise TypeError("ContinuousBatchingConfig.__init__() got an unexpected keyword 'page_size'")

    monkeypatch.setattr(transformers_chat, "batching_by_default", lambda device: True)
    monkeypatch.setattr(ContinuousBatchingEngine, "start", start)


def test_continuous_batching_is_never_dropped_silently(
    tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from localinfer.errors import CapabilityUnavailable

    _engine_unavailable(monkeypatch)
    monkeypatch.delenv("LOCALINFER_ALLOW_SLOW_FALLBACK", raising=False)
    with pytest.raises(CapabilityUnavailable) as raised:
        load(tiny_llama_dir)
    message = raised.value.message
    assert "transformers>=5.24" in message and "page_size" in message
    assert "--allow-slow-fallback" in message and "continuous_batching=false" in message


def test_the_slower_path_when_allowed_says_which_engine_serves(
    tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _engine_unavailable(monkeypatch)
    monkeypatch.setenv("LOCALINFER_ALLOW_SLOW_FALLBACK", "1")
    handler = load(tiny_llama_dir)
    try:
        assert not handler.continuous_batching
        assert handler.engine == "transformers generate (one request at a time)"
    finally:
        handler.close()


# -- through the runtime ------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("continuous_batching", [False, True], ids=["sequential", "batched"])
async def test_served_through_the_runtime(tiny_llama_dir: Path, continuous_batching: bool) -> None:
    import anyio

    from localinfer.runtime import Chunk, Done, ModelDefinition, ModelRegistry

    options = {"continuous_batching": continuous_batching, "max_in_flight": 4, "dtype": "float32"}
    definition = ModelDefinition(
        name="tiny",
        task="chat",
        devices=(DEVICE,),
        create_handler=lambda index, device: TransformersChatHandler(
            ModelSource(str(tiny_llama_dir), options=options)
        ),
    )
    results: dict[int, tuple[str, GenerationResult]] = {}

    async def ask(model: Any, n: int) -> None:
        request = GenerationRequest(
            messages=({"role": "user", "content": f"Hi {n}"},),
            max_new_tokens=8 + n,
            temperature=0.0,
        )
        job = model.submit(request)
        pieces: list[str] = []
        async for event in job.events():
            if isinstance(event, Chunk):
                pieces.append(event.value)
            else:
                assert isinstance(event, Done)
                results[n] = ("".join(pieces), event.value)

    async with ModelRegistry() as registry:
        model = registry.add(definition)
        await registry.wait_ready(timeout_s=60)
        expected = "continuous batching x4" if continuous_batching else "one request at a time"
        assert expected in model.health()["engine"]  # /health says what serves the model
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for n in range(3):
                    tg.start_soon(ask, model, n)

    assert sorted(results) == [0, 1, 2]
    for n, (streamed, result) in results.items():
        assert isinstance(result, GenerationResult)
        assert streamed == result.text
        assert result.completion_tokens == 8 + n and result.finish_reason == "length"
