"""The options of a chat call, declared once for ``Client``, ``SyncClient`` and ``Engine``.

A module with no imports of the runtime, so that the HTTP clients can use it without
loading it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

DEFAULT_TEMPERATURE = 1.0
DEFAULT_TOP_P = 1.0


class ChatOptions(TypedDict, total=False):
    """What a chat call may set besides its messages, model and ``stream``. Left out,
    the server's defaults apply (``max_tokens``: its ``default_max_tokens``; temperature
    and top_p: 1.0)."""

    #: most tokens to generate
    max_tokens: int | None
    #: 0 is greedy; up to 2
    temperature: float | None
    #: nucleus sampling: the smallest set of tokens whose probabilities reach this
    top_p: float | None
    #: generation ends before any of these strings (not included in the text)
    stop: str | Sequence[str] | None
    #: the same seed and request give the same text
    seed: int | None
    #: a system message put first
    system: str | None


def check_options(options: object) -> None:
    """Refuse keywords that are not chat options: ``**options`` would otherwise take any
    name at run time and drop it unseen (other request fields go in ``extra_body``)."""
    assert isinstance(options, dict)
    unknown = sorted(set(options) - set(ChatOptions.__annotations__))
    if unknown:
        raise TypeError(
            f"chat() got unexpected keyword arguments {', '.join(unknown)}; the chat options "
            f"are {', '.join(ChatOptions.__annotations__)} (other request fields: extra_body)"
        )
