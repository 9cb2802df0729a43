"""``POST /v1/audio/speech`` (text to audio, streamed as it is made) and ``GET /v1/audio/voices``.

The worker synthesises a sentence at a time; each piece is encoded (in process for wav
and pcm, by an ffmpeg process for the others) and sent at once, so the first bytes
leave long before the last sentence is said. The response waits for the first piece
before sending headers: a bad voice or an empty text is a real 400, not a broken stream.
With ``stream_format: sse`` the same bytes travel base64 in ``speech.audio.delta``
events, then one ``speech.audio.done``.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from localinfer.errors import InvalidRequest, LocalInferError
from localinfer.handlers.speech_formats import MEDIA_TYPES, check_format, encode
from localinfer.handlers.tasks import SPEECH, SpeechAudio, SpeechRequest, SpeechResult, Voice
from localinfer.handlers.tasks import VoiceListRequest as VoiceListPayload
from localinfer.runtime.job import Chunk, Done
from localinfer.server import protocol as p
from localinfer.server.bodies import read_json
from localinfer.server.job_io import JobReader, JobStreamingResponse, error_event
from localinfer.server.routes.common import model_for_task, reader_for, run_to_result
from localinfer.server.sse import SSE_HEADERS, SSE_MEDIA_TYPE, sse_event
from localinfer.server.state import registry_of, request_id_of, settings_of


@dataclass
class _Outcome:
    """The job's result, known once its last piece has been read."""

    result: SpeechResult | None = None


async def _pieces(reader: JobReader, outcome: _Outcome) -> AsyncIterator[SpeechAudio]:
    async for event in reader.rest():
        if isinstance(event, Chunk):
            yield event.value
        elif isinstance(event.value, SpeechResult):
            outcome.result = event.value


async def _audio_body(
    first: SpeechAudio, reader: JobReader, outcome: _Outcome, fmt: str
) -> AsyncIterator[bytes]:
    try:
        async for data in encode(first, _pieces(reader, outcome), fmt):
            yield data
    finally:
        await reader.aclose()


async def _sse_body(
    first: SpeechAudio, reader: JobReader, outcome: _Outcome, fmt: str, characters: int
) -> AsyncIterator[bytes]:
    try:
        async for data in encode(first, _pieces(reader, outcome), fmt):
            delta = p.SpeechAudioDelta(audio=base64.b64encode(data).decode("ascii"))
            yield sse_event(delta.model_dump())
        seconds = outcome.result.audio_seconds if outcome.result is not None else 0.0
        done = p.SpeechAudioDone(
            usage=p.SpeechUsage(input_characters=characters, audio_seconds=seconds)
        )
        yield sse_event(done.model_dump())
    except LocalInferError as exc:
        yield sse_event(error_event(exc))
    finally:
        await reader.aclose()


async def speech(request: Request) -> Response:
    body = await read_json(request, settings_of(request).max_body_bytes)
    form: p.SpeechRequest = p.parse(p.SpeechRequest, body)
    check_format(form.response_format)
    model = model_for_task(request, form.model, SPEECH)
    payload = SpeechRequest(text=form.input, voice=form.voice_name, speed=form.speed)
    job = model.submit(payload, request_id=request_id_of(request))
    reader = reader_for(request, job)
    first = await reader.guarded(request)  # a bad voice fails here: a real 400
    outcome = _Outcome()
    if isinstance(first, Done):  # nothing to say (punctuation only): empty audio
        result = first.value
        rate = result.sample_rate if isinstance(result, SpeechResult) else 24_000
        outcome.result = result if isinstance(result, SpeechResult) else None
        piece = SpeechAudio(b"", rate)
    else:
        piece = first.value
    if form.stream_format == "sse":
        return JobStreamingResponse(
            job,
            _sse_body(piece, reader, outcome, form.response_format, len(form.input)),
            media_type=SSE_MEDIA_TYPE,
            headers=SSE_HEADERS,
        )
    return JobStreamingResponse(
        job,
        _audio_body(piece, reader, outcome, form.response_format),
        media_type=MEDIA_TYPES[form.response_format],
    )


async def voices(request: Request) -> Response:
    """The voices of each served speech model (``?model=`` for one)."""
    registry = registry_of(request)
    wanted = request.query_params.get("model")
    unknown = set(request.query_params) - {"model"}
    if unknown:
        raise InvalidRequest(
            f"unknown query parameter {sorted(unknown)[0]!r}; only 'model' is accepted",
            param=sorted(unknown)[0],
        )
    if wanted:
        models = [model_for_task(request, wanted, SPEECH)]
    else:
        models = [m for m in registry if m.definition.task == SPEECH]
    cards: list[p.VoiceCard] = []
    for model in models:
        _, listed = await run_to_result(request, model, VoiceListPayload())
        cards += [_card(model.name, voice) for voice in listed]
    return JSONResponse(p.VoiceList(data=cards).model_dump())


def _card(model: str, voice: Voice) -> p.VoiceCard:
    return p.VoiceCard(
        id=voice.id,
        model=model,
        language=voice.language,
        gender=voice.gender,
        description=voice.description,
    )


routes = [
    Route("/v1/audio/speech", speech, methods=["POST"]),
    Route("/v1/audio/voices", voices, methods=["GET"]),
]
