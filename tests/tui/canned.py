"""A server that always answers the same, for snapshot tests: fixed catalog, cache, models
and stats behind ``httpx.MockTransport``, so what is drawn depends on nothing but code."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import httpx

from localinfer.client import Client, Stats, _core
from localinfer.tui.app import LocalInferApp
from localinfer.tui.backend import ClientBackend
from localinfer.tui.conversation import Attachment, Conversation, ReplyStats, ToolCall, Turn

GB = 1_000_000_000

CATALOG = [
    ("all-minilm", "sentence-transformers/all-MiniLM-L6-v2", "embeddings", True, False),
    ("bge-m3", "BAAI/bge-m3", "embeddings", False, False),
    ("qwen2.5-0.5b-instruct", "Qwen/Qwen2.5-0.5B-Instruct", "chat", True, True),
    ("smollm2-135m-instruct", "HuggingFaceTB/SmolLM2-135M-Instruct", "chat", True, False),
    ("whisper-tiny", "openai/whisper-tiny", "transcription", False, False),
]
CACHE = [
    ("Qwen/Qwen2.5-0.5B-Instruct", 988_097_824, 9),
    ("HuggingFaceTB/SmolLM2-135M-Instruct", 269_060_552, 8),
    ("sentence-transformers/all-MiniLM-L6-v2", 90_868_376, 12),
]
LOADED = [("qwen2.5-0.5b-instruct", "chat"), ("all-minilm", "embeddings")]


def device_json(step: int = 0) -> list[dict[str, object]]:
    return [
        {
            "name": "cpu",
            "kind": "cpu",
            "description": "x86_64 · 16 cores",
            "utilization_percent": 20.0 + 3 * (step % 7),
            "memory_used_bytes": 9 * GB + step * 50_000_000,
            "memory_total_bytes": 64 * GB,
            "temperature_c": None,
            "source": "psutil",
        },
        {
            "name": "cuda:0",
            "kind": "cuda",
            "description": "NVIDIA H100 80GB HBM3",
            "utilization_percent": float((step * 13) % 100),
            "memory_used_bytes": 21 * GB + step * 100_000_000,
            "memory_total_bytes": 80 * GB,
            "temperature_c": 41.0 + step % 5,
            "source": "nvml",
        },
    ]


def model_json(step: int = 0) -> dict[str, dict[str, object]]:
    return {
        "qwen2.5-0.5b-instruct": {
            "task": "chat",
            "engine": "transformers continuous batching x32",
            "submitted": 40 + step,
            "succeeded": 37 + step,
            "failed": 0,
            "cancelled": 1,
            "in_flight": 2,
            "queue_depth": 1,
            "requests_per_second": 0.5 + (step % 4) * 0.25,
            "chunks_per_second": 60.0 + (step % 6) * 12,
            "tokens_per_second": 60.0 + (step % 6) * 12,
            "latency_ms": {"p50": 812.0, "p95": 1530.0},
            "workers": 1,
            "busy_workers": 1,
        },
        "all-minilm": {
            "task": "embeddings",
            "submitted": 210 + 5 * step,
            "succeeded": 210 + 5 * step,
            "requests_per_second": 3.0 + (step % 3),
            "latency_ms": {"p50": 6.0, "p95": 11.0},
            "workers": 1,
        },
    }


def stats_sample(step: int) -> Stats:
    """The ``step``-th poll, as the client parses it (the monitor's snapshots feed these)."""
    return _core.stats_result({"models": model_json(step), "devices": device_json(step)})


def _handle(request: httpx.Request) -> httpx.Response:
    path = request.url.path
    if path == "/v1/catalog":
        data = [
            {"id": a, "repo": r, "task": t, "cached": c, "loaded": lo, "origin": "builtin"}
            for a, r, t, c, lo in CATALOG
        ]
        return httpx.Response(200, json={"object": "list", "data": data})
    if path == "/v1/cache":
        data = [{"id": r, "size_bytes": s, "files": f, "loaded": False} for r, s, f in CACHE]
        return httpx.Response(200, json={"object": "list", "data": data})
    if path == "/v1/models":
        data = [{"id": n, "task": t, "object": "model", "created": 0} for n, t in LOADED]
        return httpx.Response(200, json={"object": "list", "data": data})
    if path == "/v1/stats":
        return httpx.Response(200, json={"models": model_json(), "devices": device_json()})
    return httpx.Response(404, json={"error": {"message": "not canned", "code": "not_found"}})


def _event(delta: dict[str, object], finish: str | None = None) -> str:
    chunk = {
        "id": "chatcmpl-canned",
        "object": "chat.completion.chunk",
        "model": "qwen2.5-0.5b-instruct",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(chunk)}\n\n"


@dataclass
class CannedChat:
    """``/v1/chat/completions`` that streams ``text`` then ``tool_calls`` (name, JSON
    arguments, sent in two fragments as a server streams them) and keeps each request."""

    text: str = "Let me look."
    tool_calls: list[tuple[str, str]] = field(default_factory=list)
    requests: list[dict[str, object]] = field(default_factory=list)

    def respond(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(json.loads(request.content))
        events = [_event({"role": "assistant", "content": self.text})] if self.text else []
        for index, (name, arguments) in enumerate(self.tool_calls):
            half = len(arguments) // 2
            head = {"index": index, "id": f"call_{index}", "type": "function"}
            events.append(
                _event({"tool_calls": [{**head, "function": {"name": name, "arguments": ""}}]})
            )
            for fragment in (arguments[:half], arguments[half:]):
                delta = {"index": index, "function": {"arguments": fragment}}
                events.append(_event({"tool_calls": [delta]}))
        events.append(_event({}, "tool_calls" if self.tool_calls else "stop"))
        events.append("data: [DONE]\n\n")
        return httpx.Response(
            200, text="".join(events), headers={"content-type": "text/event-stream"}
        )


def canned_client(chat: CannedChat | None = None) -> Client:
    def handle(request: httpx.Request) -> httpx.Response:
        if chat is not None and request.url.path == "/v1/chat/completions":
            return chat.respond(request)
        return _handle(request)

    return Client("http://canned.test", transport=httpx.MockTransport(handle))


def canned_app(chat: CannedChat | None = None) -> LocalInferApp:
    return LocalInferApp(
        ClientBackend(canned_client(chat), "http://127.0.0.1:8000"), poll_interval_s=None
    )


CONVERSATION = Conversation(
    model="qwen2.5-0.5b-instruct",
    system="You are a concise assistant.",
    temperature=0.7,
    max_tokens=256,
    turns=[
        Turn("user", "What is a sparkline?"),
        Turn(
            "assistant",
            "A **sparkline** is a tiny line chart drawn without axes, sized like a word:\n\n"
            "- it shows a *trend* at a glance\n- it fits in a table cell",
            ReplyStats(
                first_token_ms=84.0,
                tokens_per_second=41.5,
                completion_tokens=38,
                finish_reason="stop",
            ),
        ),
        Turn("user", "Show one in Python."),
        Turn(
            "assistant",
            '```python\nBARS = "▁▂▃▄▅▆▇█"\n```',
            ReplyStats(
                first_token_ms=62.0,
                tokens_per_second=44.0,
                completion_tokens=15,
                finish_reason="stop",
            ),
        ),
    ],
)

#: a 1x1 PNG, as a data: URL (what an attachment carries)
PIXEL_URL = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8"
    "z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)

TOOL_CONVERSATION = Conversation(
    model="qwen2.5-0.5b-instruct",
    temperature=0.7,
    max_tokens=256,
    turns=[
        Turn(
            "user",
            "What is on this sign, and how warm is it there?",
            images=(Attachment("sign.png", PIXEL_URL),),
        ),
        Turn(
            "assistant",
            "The sign says **Lyon**. Checking the weather:",
            ReplyStats(
                first_token_ms=70.0,
                tokens_per_second=40.0,
                completion_tokens=31,
                finish_reason="tool_calls",
            ),
            tool_calls=(ToolCall("call_0", "get_weather", '{"city": "Lyon", "unit": "celsius"}'),),
        ),
    ],
)
