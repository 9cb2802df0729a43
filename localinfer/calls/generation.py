"""The handler's generation request, from the options every face offers.

The sampling defaults are written once (in :mod:`.options`, which the HTTP clients read
without loading the runtime); the OpenAI protocol models and ``Engine`` take theirs from
there too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from localinfer.calls.limits import RequestLimits
from localinfer.calls.options import DEFAULT_TEMPERATURE, DEFAULT_TOP_P, ChatOptions
from localinfer.handlers.tasks import GenerationRequest

__all__ = [
    "DEFAULT_TEMPERATURE",
    "DEFAULT_TOP_P",
    "MIN_TEMPERATURE",
    "chat_request",
    "completion_request",
    "sampling_temperature",
    "stop_sequences",
]
#: below this a temperature scales logits to infinities (NaN probabilities): greedy instead
MIN_TEMPERATURE = 1e-4


def sampling_temperature(temperature: float) -> float:
    """The temperature a handler gets: a positive one too small to sample with is 0 (greedy)."""
    return 0.0 if temperature < MIN_TEMPERATURE else temperature


def stop_sequences(stop: str | Sequence[str] | None) -> tuple[str, ...]:
    """``stop`` as the tuple a handler takes (one string or several)."""
    if stop is None:
        return ()
    return (stop,) if isinstance(stop, str) else tuple(stop)


def chat_request(
    limits: RequestLimits, messages: Sequence[Mapping[str, str]], options: ChatOptions
) -> GenerationRequest:
    """A chat generation of text-only ``messages`` (``role``, ``content``; a ``system``
    option is already among them), checked against ``limits``."""
    limits.check_prompt([m["content"] for m in messages], messages=len(messages))
    return _request(
        limits,
        options,
        messages=tuple({"role": m["role"], "content": m["content"]} for m in messages),
    )


def completion_request(
    limits: RequestLimits, prompt: str, options: ChatOptions
) -> GenerationRequest:
    """A plain completion of ``prompt``, checked against ``limits``."""
    limits.check_prompt([prompt])
    return _request(limits, options, prompt=prompt)


def _request(
    limits: RequestLimits,
    options: ChatOptions,
    *,
    messages: tuple[dict[str, str], ...] | None = None,
    prompt: str | None = None,
) -> GenerationRequest:
    temperature = options.get("temperature")
    top_p = options.get("top_p")
    return GenerationRequest(
        messages=messages,
        prompt=prompt,
        max_new_tokens=limits.token_budget(options.get("max_tokens")),
        temperature=sampling_temperature(
            DEFAULT_TEMPERATURE if temperature is None else temperature
        ),
        top_p=DEFAULT_TOP_P if top_p is None else top_p,
        stop=stop_sequences(options.get("stop")),
        seed=options.get("seed"),
    )
