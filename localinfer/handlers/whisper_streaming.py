"""Streaming a Whisper transcript window by window, as transformers' long-form ``generate``
settles each 30 s window, instead of all at once when the file is done.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from localinfer.handlers.tasks import Segment, TranscriptionResult
from localinfer.handlers.whisper_segments import TokenDecoder

if TYPE_CHECKING:
    import torch


class WindowStreamer:
    """Emits a streamed request's text window by window, as ``generate`` settles each.

    ``generate`` hands every decode attempt's tokens to the streamer (a transformers
    ``BaseStreamer``: ``put`` the prompt, then each token, then ``end``); a window re-decoded
    at a higher temperature is a new attempt, so the last attempt before the next window
    starts is the one kept. ``monitor_progress`` marks that start, with how far the window
    moved ``seek``: the text up to that point is final, and emitted as one segment.
    """

    def __init__(
        self,
        tokenizer: TokenDecoder,
        eot: int,
        timestamp_begin: int,
        check_stop: Callable[[torch.Tensor], None],
        emit: Callable[[Segment], None],
    ) -> None:
        self._tokenizer = tokenizer
        self._eot = eot
        self._timestamp_begin = timestamp_begin
        self._check_stop = check_stop
        self._emit = emit
        self._attempt: list[int] = []
        self._kept: list[int] = []
        self._prompt_pending = True
        self._seek: int | None = None
        self.emitted = ""
        self._count = 0
        self._end_s = 0.0

    # transformers' streamer protocol
    def put(self, value: Any) -> None:
        if self._prompt_pending:  # the decoder prompt (start tokens) of a new attempt
            self._prompt_pending = False
            return
        self._attempt += [int(t) for t in value.reshape(-1).tolist()]

    def end(self) -> None:
        self._kept, self._attempt, self._prompt_pending = self._attempt, [], True

    # generate's monitor_progress: called before each window
    def progress(self, progress: torch.Tensor) -> None:
        self._check_stop(progress)
        seek = int(progress[0, 0])
        if self._seek is not None and self._kept:
            self._settle(self._kept, (seek - self._seek) / 100.0, self._seek / 100.0)
        self._seek, self._kept = seek, []

    def _settle(self, tokens: list[int], consumed_s: float, start_s: float) -> None:
        """Emit the text of the window's segments, cut where transformers cuts them."""
        text_tokens = [t for t in self.segment_tokens(tokens) if t < self._eot]
        text = self._tokenizer.decode(text_tokens, skip_special_tokens=True)
        self._send(text, start_s, start_s + consumed_s)

    def segment_tokens(self, tokens: list[int]) -> list[int]:
        """The tokens of a window that its segments keep: as ``_retrieve_segment`` does,
        up to the last pair of timestamps, unless the window ends on a single one."""
        begin, eot = self._timestamp_begin, self._eot
        sequence = tokens[:-1] if tokens and tokens[-1] == eot else tokens
        stamps = [t >= begin for t in sequence]
        pairs = [i + 1 for i in range(len(stamps) - 1) if stamps[i] and stamps[i + 1]]
        if pairs and stamps[-2:] != [False, True]:
            return sequence[: pairs[-1] + 1]
        return sequence

    def _send(self, text: str, start: float, end: float) -> None:
        if not text:
            return
        self._emit(Segment(id=self._count, start=round(start, 3), end=round(end, 3), text=text))
        self._count += 1
        self.emitted += text
        self._end_s = end

    def flush_rest(self, result: TranscriptionResult) -> None:
        """After ``generate``: the text not emitted yet (the last window's)."""
        if result.text.startswith(self.emitted):
            self._send(result.text[len(self.emitted) :], self._end_s, result.duration)
            return
        # the windows' text and the final segments differ (spacing): send what follows
        for segment in result.segments:
            if segment.start >= self._end_s - 1e-3:
                self._send(segment.text, segment.start, segment.end)
