"""What every speech-recognition handler checks and shares, whatever runs the model.

Used by the built-in transformers Whisper handler and by plugins (faster-whisper), so a
bad request gets the same answer from each.
"""

from __future__ import annotations

from collections.abc import Container

import numpy as np
import numpy.typing as npt

from localinfer.errors import InvalidRequest
from localinfer.handlers.subtitles import language_code
from localinfer.handlers.tasks import TranscriptionRequest

#: OpenAI's fallback schedule, used when a request asks for temperature 0
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def checked_request(
    request: TranscriptionRequest, *, multilingual: bool, languages: Container[str]
) -> tuple[npt.NDArray[np.float32], str | None]:
    """The request's mono float32 samples (at their own rate) and its language code.

    Raises ``InvalidRequest`` saying what is wrong: no samples, several channels, a bad
    rate, an unknown task, translation asked of an English-only model, a negative
    temperature, a language outside ``languages``.
    """
    audio = np.asarray(request.audio, dtype=np.float32)
    if audio.ndim != 1:
        raise InvalidRequest("audio must be mono: one channel of samples", param="file")
    if audio.size == 0:
        raise InvalidRequest("the audio holds no samples", param="file")
    if request.sample_rate <= 0:
        raise InvalidRequest(f"invalid sample rate {request.sample_rate}", param="file")
    if request.task not in ("transcribe", "translate"):
        raise InvalidRequest(f"unknown task {request.task!r}", param="task")
    if request.task == "translate" and not multilingual:
        raise InvalidRequest("this model is English-only: it cannot translate", param="model")
    if request.temperature < 0:
        raise InvalidRequest("temperature must be 0 or more", param="temperature")
    if not request.language:
        return audio, None
    language = language_code(request.language)
    if language is None or language not in languages:
        raise InvalidRequest(
            f"language {request.language!r} is not supported by this model", param="language"
        )
    return audio, language
