"""The one rule for a capability an installed package cannot give: refuse, or take the slower
path only when the operator allows it.

A missing capability (continuous batching on an older transformers, the llama.cpp engine
not installed, a llama.cpp built without GPU offload) is never dropped silently: loading
refuses with :class:`~localinfer.errors.CapabilityUnavailable`, naming what to install and
how to allow the slower path. With ``allow_slow_fallback`` set the caller serves the slower
way, a WARNING says so, and the handler's ``engine`` (shown by ``/health``, ``/v1/models``,
``/v1/stats`` and the TUI) names what actually serves.
"""

from __future__ import annotations

import logging

from localinfer.config import slow_fallback_allowed
from localinfer.errors import CapabilityUnavailable

logger = logging.getLogger(__name__)

#: how an operator allows every model its slower path
ALLOW_SLOWER_PATH = "--allow-slow-fallback or LOCALINFER_ALLOW_SLOW_FALLBACK=1"


def take_slower_path(
    missing: str, *, install: str, slower: str, per_model: str | None = None, refuse: bool = False
) -> None:
    """Return (after a WARNING) when the operator allows the slower path; otherwise raise.

    ``missing`` says what the installed packages cannot give, ``install`` what gives it
    (a sentence), ``slower`` what serving does instead ("serve one request at a time"),
    ``per_model`` a model option that allows it for one model; ``refuse`` refuses even when
    allowed (the model's own options asked for the capability by name).
    """
    if refuse or not slow_fallback_allowed():
        every = f"{ALLOW_SLOWER_PATH} (every model), or {per_model}" if per_model else ""
        raise CapabilityUnavailable(
            f"{missing}. {install}, or, to {slower} instead, allow the slower path: "
            f"{every or ALLOW_SLOWER_PATH}"
        )
    logger.warning("%s; allowed by allow_slow_fallback: %s instead", missing, slower)
