"""The soak's clients: every endpoint of the default server at once, some hanging up.

Each client is a closed loop: pick a kind of request, send it, tally what came back,
go again. A client hangs up at random (``--disconnect``): a stream after its first
chunk or a few (mid-stream), any request before its answer came (a short timer). What
a request may end as:

- ``ok``: 200 with a well-formed body (a stream: its ``[DONE]``, or the audio's end);
- ``refused``: 429 or 503 carrying ``Retry-After`` — the server said "not now";
- ``disconnected``: the client hung up on purpose (not the server's doing): before the
  answer, or mid-stream;
- everything else is a failure: a 5xx (or a 503 without ``Retry-After``), another
  status, a stream ending in an error event or without its end, a malformed 200, or a
  lost request (a connection error, a read timeout: no answer at all).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

WORDS = (
    "the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "seven",
    "wizards", "quietly", "hex", "river", "stone", "morning", "light",
)  # fmt: skip

#: a small schema the structured-output requests ask for (json_schema, strict)
PERSON_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


@dataclass(frozen=True)
class Models:
    """The served model of each task (the default ``localinfer serve`` set)."""

    chat: str
    embeddings: str
    transcription: str
    speech: str


#: request kind -> which model's queue it lands in
def kinds(models: Models) -> dict[str, str]:
    return {
        "chat": models.chat,
        "chat (stream)": models.chat,
        "structured output": models.chat,
        "embeddings": models.embeddings,
        "rerank": models.embeddings,
        "transcription": models.transcription,
        "speech": models.speech,
    }


#: the kinds whose answer is a stream (a client may hang up in the middle of it)
STREAMED = frozenset({"chat (stream)", "speech"})


class Disconnected(Exception):
    """The client hung up on purpose (``mid_stream``: after the stream's first chunks)."""

    def __init__(self, mid_stream: bool = False):
        self.mid_stream = mid_stream


@dataclass
class Tally:
    """What one kind of request got."""

    ok_ms: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    refused: int = 0
    #: the client hung up on purpose: before any answer, or in the middle of a stream
    hung_up_early: int = 0
    hung_up_mid_stream: int = 0
    #: a 5xx (a 503 without Retry-After too), a 429 without it, another status
    bad_statuses: dict[str, int] = field(default_factory=dict)
    #: a stream that began (200) and ended in an error event: a 5xx in all but name
    error_events: int = 0
    #: a 200 whose body or stream was wrong (no end, malformed)
    bad_body: int = 0
    #: no answer at all: connection error, timeout
    lost: int = 0
    examples: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        if len(self.examples) < 5:
            self.examples.append(text[:600])


@dataclass
class Outcome:
    status: int
    ok: bool
    headers: Any
    text: str = ""
    #: a started stream ended in ``data: {"error": ...}``
    error_event: bool = False


Call = Callable[[float | None], Awaitable[Outcome]]


class Traffic:
    """Closed-loop clients against one server, and what each kind of request got."""

    def __init__(self, url: str, models: Models, until: float, disconnect: float, wav: bytes):
        import httpx

        self.models = models
        self.until = until
        self.disconnect = disconnect
        self.wav = wav
        self.tallies: dict[str, Tally] = {k: Tally() for k in kinds(models)}
        #: (seconds since start, kind, what it ended as) for the request-rate plot
        self.events: list[tuple[float, str, str]] = []
        self.started = time.monotonic()
        self.client = httpx.AsyncClient(
            base_url=url,
            timeout=httpx.Timeout(180.0, connect=30.0),
            limits=httpx.Limits(max_connections=2000, max_keepalive_connections=2000),
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def client_loop(self, model: str, rng: random.Random) -> None:
        """Requests to ``model`` (its kinds picked at random) until the end of the run."""
        own = [k for k, m in kinds(self.models).items() if m == model]
        while time.monotonic() < self.until:
            kind = rng.choice(own)
            hang_up = rng.random() < self.disconnect
            # half of the hang-ups in a stream come mid-stream, after 1-3 chunks
            mid_stream = hang_up and kind in STREAMED and rng.random() < 0.5
            after_chunks = rng.randint(1, 3) if mid_stream else None
            # the rest before the answer: queued, or running (time to send included)
            timer = None if not hang_up or after_chunks else rng.uniform(0.1, 3.0)
            await self._one(kind, self._call(kind, rng, after_chunks), timer, rng)

    async def _one(self, kind: str, call: Call, timer: float | None, rng: random.Random) -> None:
        import httpx

        tally = self.tallies[kind]
        started = time.monotonic()
        try:
            if timer is None:
                outcome = await call(None)
            else:
                try:
                    async with asyncio.timeout(timer):
                        outcome = await call(None)
                except TimeoutError:
                    raise Disconnected from None
        except Disconnected as gone:
            if gone.mid_stream:
                tally.hung_up_mid_stream += 1
            else:
                tally.hung_up_early += 1
            self._event(kind, "disconnected")
            return
        except httpx.HTTPError as exc:
            tally.lost += 1
            tally.problem(f"lost: {type(exc).__name__}: {exc}")
            self._event(kind, "lost")
            await asyncio.sleep(0.1)
            return
        status = str(outcome.status)
        tally.statuses[status] = tally.statuses.get(status, 0) + 1
        if outcome.status == 200 and outcome.ok:
            tally.ok_ms.append((time.monotonic() - started) * 1e3)
            self._event(kind, "ok")
        elif outcome.status == 200:
            if outcome.error_event:
                tally.error_events += 1
            else:
                tally.bad_body += 1
            tally.problem(outcome.text)
            self._event(kind, "failed")
        elif outcome.status in (429, 503) and "retry-after" in outcome.headers:
            tally.refused += 1
            self._event(kind, "refused")
            # not the whole Retry-After: the pressure must stay on
            await asyncio.sleep(rng.uniform(0.2, 1.0))
        else:
            tally.bad_statuses[status] = tally.bad_statuses.get(status, 0) + 1
            tally.problem(f"{outcome.status}: {outcome.text}")
            self._event(kind, "failed")

    def _event(self, kind: str, what: str) -> None:
        self.events.append((round(time.monotonic() - self.started, 2), kind, what))

    # -- the requests ------------------------------------------------------------------------

    def _call(self, kind: str, rng: random.Random, after_chunks: int | None) -> Call:
        m = self.models

        def words(k: int) -> str:
            return " ".join(rng.choices(WORDS, k=k))

        if kind in ("chat", "chat (stream)"):
            body: dict[str, Any] = {
                "model": m.chat,
                "messages": [{"role": "user", "content": words(8)}],
                "max_tokens": rng.randint(4, 32),
                "temperature": rng.choice([0.0, 0.7]),
            }
            if kind == "chat":
                return lambda _: self._post("/v1/chat/completions", body, _has_choices)
            body |= {"stream": True, "stream_options": {"include_usage": rng.random() < 0.5}}
            return lambda _: self._sse("/v1/chat/completions", body, after_chunks)
        if kind == "structured output":
            body = {
                "model": m.chat,
                "messages": [
                    {"role": "user", "content": f"A person called {words(1)} as JSON, please."}
                ],
                "max_tokens": 64,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "person", "schema": PERSON_SCHEMA, "strict": True},
                },
            }
            return lambda _: self._post("/v1/chat/completions", body, _follows_schema)
        if kind == "embeddings":
            texts = [words(rng.randint(3, 12)) for _ in range(rng.randint(1, 8))]
            body = {"model": m.embeddings, "input": texts}
            return lambda _: self._post(
                "/v1/embeddings", body, lambda j: len(j["data"]) == len(texts)
            )
        if kind == "rerank":
            docs = [words(rng.randint(3, 10)) for _ in range(rng.randint(2, 6))]
            body = {"model": m.embeddings, "query": words(4), "documents": docs, "top_n": 2}
            return lambda _: self._post("/v1/rerank", body, lambda j: len(j["results"]) == 2)
        if kind == "transcription":
            return lambda _: self._transcribe()
        body = {"model": m.speech, "input": words(rng.randint(3, 10)), "response_format": "wav"}
        return lambda _: self._audio_stream("/v1/audio/speech", body, after_chunks)

    async def _post(self, path: str, body: dict[str, Any], valid: Callable[[Any], bool]) -> Outcome:
        r = await self.client.post(path, json=body)
        if r.status_code != 200:
            return Outcome(r.status_code, False, r.headers, r.text)
        try:
            ok = bool(valid(r.json()))
        except (ValueError, KeyError, TypeError, IndexError):
            ok = False
        return Outcome(200, ok, r.headers, "" if ok else f"malformed 200: {r.text}")

    async def _sse(self, path: str, body: dict[str, Any], after_chunks: int | None) -> Outcome:
        async with self.client.stream("POST", path, json=body) as r:
            if r.status_code != 200:
                return Outcome(r.status_code, False, r.headers, (await r.aread()).decode())
            last, error, chunks = "", "", 0
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                last = line[len("data: ") :]
                if last.startswith('{"error"'):
                    error = last
                chunks += 1
                if after_chunks is not None and chunks >= after_chunks and last != "[DONE]":
                    raise Disconnected(mid_stream=True)  # leaving the block closes the connection
            ok = last == "[DONE]" and not error
            text = error or f"stream ended without [DONE]: {last}"
            return Outcome(200, ok, r.headers, text, error_event=bool(error))

    async def _audio_stream(
        self, path: str, body: dict[str, Any], after_chunks: int | None
    ) -> Outcome:
        async with self.client.stream("POST", path, json=body) as r:
            if r.status_code != 200:
                return Outcome(r.status_code, False, r.headers, (await r.aread()).decode())
            size, chunks = 0, 0
            async for chunk in r.aiter_bytes():
                size += len(chunk)
                chunks += 1
                if after_chunks is not None and chunks >= after_chunks:
                    raise Disconnected(mid_stream=True)
            # a stream the server broke off ends the chunked body early: httpx raises
            ok = size > 44  # more than a WAV header
            return Outcome(200, ok, r.headers, "" if ok else f"{size} bytes of audio")

    async def _transcribe(self) -> Outcome:
        r = await self.client.post(
            "/v1/audio/transcriptions",
            data={"model": self.models.transcription},
            files={"file": ("speech.wav", self.wav, "audio/wav")},
        )
        if r.status_code != 200:
            return Outcome(r.status_code, False, r.headers, r.text)
        ok = isinstance(r.json().get("text"), str)
        return Outcome(200, ok, r.headers, "" if ok else f"malformed 200: {r.text}")


def _has_choices(body: Any) -> bool:
    return isinstance(body["choices"][0]["message"]["content"], str)


def _follows_schema(body: Any) -> bool:
    """A finished answer is JSON of the schema; one cut at max_tokens is only a prefix."""
    choice = body["choices"][0]
    if choice["finish_reason"] != "stop":
        return choice["finish_reason"] == "length" and _json_prefix(choice["message"]["content"])
    value = json.loads(choice["message"]["content"])
    return (
        isinstance(value, dict)
        and set(value) == {"name", "age"}
        and isinstance(value["name"], str)
        and isinstance(value["age"], int)
    )


def _json_prefix(text: str) -> bool:
    """No control character inside a string: what a JSON grammar cut short can still be
    checked for (a raw newline in a string is never JSON)."""
    in_string = escaped = False
    for char in text:
        if in_string and not escaped and ord(char) < 0x20:
            return False
        if escaped:
            escaped = False
        elif in_string and char == "\\":
            escaped = True
        elif char == '"':
            in_string = not in_string
    return True
