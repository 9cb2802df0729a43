"""``POST /v1/audio/transcriptions`` and ``/v1/audio/translations`` (multipart uploads).

The upload is bounded while it is read, decoded off the loop (ffmpeg in a subprocess,
or the pure-Python WAV path in a thread), then transcribed by the model's workers.
With ``stream=true`` each segment is sent as a ``transcript.text.delta`` event as soon as
the model has decoded it, then the whole text in ``transcript.text.done`` (OpenAI's events).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from python_multipart.exceptions import FormParserError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from localinfer.audio import decode_audio_async
from localinfer.errors import InvalidRequest, LocalInferError, RequestTooLarge, UnsupportedMediaType
from localinfer.handlers import subtitles
from localinfer.handlers.tasks import (
    TRANSCRIPTION,
    Segment,
    TranscriptionRequest,
    TranscriptionResult,
)
from localinfer.runtime.job import Chunk, Done
from localinfer.server import protocol as p
from localinfer.server.bodies import bounded
from localinfer.server.job_io import JobReader, JobStreamingResponse, error_event
from localinfer.server.routes.common import model_for_task, reader_for, run_to_result
from localinfer.server.sse import SSE_HEADERS, SSE_MEDIA_TYPE, sse_event
from localinfer.server.state import calls_of, request_id_of, settings_of

_FORM_OVERHEAD = 1024 * 1024


async def _read_form(request: Request) -> tuple[bytes, dict[str, Any]]:
    settings = settings_of(request)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "multipart/form-data":
        raise UnsupportedMediaType(
            f"expected Content-Type multipart/form-data with a 'file' part, got {media or 'none'!r}"
        )
    limited = bounded(request, settings.max_audio_bytes + _FORM_OVERHEAD)
    try:
        form = await limited.form(max_files=1, max_fields=32, max_part_size=64 * 1024)
    except HTTPException as exc:
        raise InvalidRequest(f"malformed multipart form: {exc.detail}") from None
    except FormParserError as exc:  # starlette 1.0.1 let the parser's own error out: a 500
        raise InvalidRequest(f"malformed multipart form: {exc}") from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidRequest("the form has no 'file' part with the audio", param="file")
        data = await upload.read(settings.max_audio_bytes + 1)
        if len(data) > settings.max_audio_bytes:
            raise RequestTooLarge(
                f"the audio file exceeds the limit of {settings.max_audio_bytes} bytes",
                param="file",
            )
        fields: dict[str, Any] = {
            key: value for key, value in form.multi_items() if isinstance(value, str)
        }
        granularities = form.getlist("timestamp_granularities[]") or form.getlist(
            "timestamp_granularities"
        )
        if granularities:
            fields["timestamp_granularities"] = list(granularities)
        fields.pop("timestamp_granularities[]", None)
        return data, fields
    finally:
        await form.close()


def render(result: TranscriptionResult, form: p.TranscriptionForm, task: str) -> Response:
    kind = form.response_format
    if kind == "json":
        return JSONResponse(p.Transcription(text=result.text).model_dump())
    if kind == "verbose_json":
        wanted = form.timestamp_granularities
        return JSONResponse(
            subtitles.to_verbose_json(
                result, task, segments=not wanted or "segment" in wanted, words="word" in wanted
            )
        )
    if kind == "srt":
        return PlainTextResponse(subtitles.to_srt(result))
    if kind == "vtt":
        return PlainTextResponse(subtitles.to_vtt(result), media_type="text/vtt")
    return PlainTextResponse(subtitles.to_text(result))


async def _transcribe(request: Request, task: str) -> Response:
    data, fields = await _read_form(request)
    form = p.parse(p.TranscriptionForm, fields, strict=False)  # form fields are all text
    if task == "translate" and form.language:
        raise InvalidRequest(
            "translations are always into English; omit 'language'", param="language"
        )
    model = model_for_task(request, form.model, TRANSCRIPTION)
    limits = calls_of(request).limits
    audio = await decode_audio_async(data, max_seconds=limits.max_audio_seconds)
    payload = TranscriptionRequest(
        audio=audio,
        task="translate" if task == "translate" else "transcribe",
        language=form.language,
        prompt=form.prompt,
        temperature=form.temperature,
        word_timestamps="word" in form.timestamp_granularities,
        stream=form.stream,
    )
    if form.stream:
        job = model.submit(payload, request_id=request_id_of(request))
        reader = reader_for(request, job)
        first = await reader.guarded(request)  # a bad request fails here: a real 400
        return JobStreamingResponse(
            job, _deltas(first, reader), media_type=SSE_MEDIA_TYPE, headers=SSE_HEADERS
        )
    _, result = await run_to_result(request, model, payload)
    return render(result, form, "translate" if task == "translate" else "transcribe")


async def _deltas(first: Chunk | Done, reader: JobReader) -> AsyncIterator[bytes]:
    """A delta per segment, then the whole text; an error after the start as the last event."""
    try:
        event = first
        while True:
            if isinstance(event, Done):
                result: TranscriptionResult = event.value
                yield sse_event(p.TranscriptTextDone(text=result.text).model_dump())
                return
            segment: Segment = event.value
            if segment.text:
                yield sse_event(p.TranscriptTextDelta(delta=segment.text).model_dump())
            event = await reader.next()
    except LocalInferError as exc:
        yield sse_event(error_event(exc))
    finally:
        await reader.aclose()


async def transcriptions(request: Request) -> Response:
    return await _transcribe(request, "transcribe")


async def translations(request: Request) -> Response:
    return await _transcribe(request, "translate")


routes = [
    Route("/v1/audio/transcriptions", transcriptions, methods=["POST"]),
    Route("/v1/audio/translations", translations, methods=["POST"]),
]
