"""From Whisper's decoded tokens to what a transcript segment reports: its average
log-probability, its words with their times, and its compression ratio.
"""

from __future__ import annotations

import zlib
from typing import Any, Protocol

from localinfer.handlers.tasks import Segment, Word

#: languages written without spaces: every character sequence is a word of its own
UNSPACED_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "my", "yue"})


class TokenDecoder(Protocol):
    """The part of a Whisper tokenizer that turns token ids back into text."""

    def decode(self, token_ids: list[int], skip_special_tokens: bool = False) -> str: ...


def avg_logprob(raw: dict[str, Any], tokens: list[int], temperature: float) -> float:
    """Mean log-probability of the segment's tokens under the decode's scores.

    Scores from a sampled decode are divided by its temperature; multiplying back
    gives the model's own distribution (as openai-whisper reports).
    """
    import torch

    result = raw.get("result") or {}
    scores = result.get("scores")
    if not scores or not tokens:
        return 0.0
    offset = len(result["sequences"]) - len(scores)
    first, last = (index - offset for index in raw["idxs"])
    steps = [(step, token) for step, token in zip(range(first, last), tokens, strict=False)]
    steps = [(step, token) for step, token in steps if 0 <= step < len(scores)]
    if not steps:
        return 0.0
    logits = torch.stack([scores[step] for step, _ in steps]).float()
    if temperature > 0:
        logits = logits * temperature
    logprobs = torch.log_softmax(logits, dim=-1)
    chosen = logprobs[torch.arange(len(steps)), torch.tensor([t for _, t in steps])]
    return round(float(chosen.mean()), 6)


def segment_words(
    tokenizer: TokenDecoder,
    eot: int,
    tokens: list[int],
    times: list[float],
    segment: Segment,
    language: str,
) -> list[Word]:
    """Group a segment's text tokens into words, timed from the alignment heads.

    A word starts at a token that begins with a space (or at every complete character
    for languages written without spaces); it ends where the next token starts.
    """
    groups: list[tuple[str, float, float]] = []  # text, start, end
    pending: list[int] = []
    pending_start = 0.0
    for index, token in enumerate(tokens):
        if token >= eot:  # timestamps and control tokens
            continue
        if not pending:
            pending_start = times[index]
        pending.append(token)
        piece = tokenizer.decode(pending)
        if "\ufffd" in piece and len(pending) < 4:  # a UTF-8 character split across
            continue  # tokens (4 bytes at most): wait for the rest of it
        end = times[index + 1] if index + 1 < len(times) else segment.end
        new_word = language in UNSPACED_LANGUAGES or piece.startswith(" ") or not groups
        if new_word:
            groups.append((piece, pending_start, end))
        else:
            text, start, _ = groups[-1]
            groups[-1] = (text + piece, start, end)
        pending = []
    words = []
    for text, start, end in groups:
        word = text.strip()
        if not word:
            continue
        a = min(max(round(start, 3), segment.start), segment.end)
        b = min(max(round(end, 3), a), segment.end)
        words.append(Word(word=word, start=a, end=b))
    return words


def compression_ratio(text: str) -> float:
    """openai-whisper's gzip ratio: above ~2.4 a text is repeating itself."""
    data = text.encode()
    if not data:
        return 0.0
    return round(len(data) / len(zlib.compress(data)), 6)
