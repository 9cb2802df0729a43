"""Sampler chains with the grammar beside them: the pick is checked, a refused one redrawn."""

from __future__ import annotations

import dataclasses
import json

import pytest
from llamacpp_support import run
from localinfer_llamacpp.handler import LlamaCppChatHandler
from test_constraints import OutputConstraint, constrained

#: every document of this schema is short, so a sampled one always ends
BOUNDED = json.dumps(
    {
        "type": "object",
        "properties": {"unit": {"enum": ["celsius", "fahrenheit"]}, "sunny": {"type": "boolean"}},
        "required": ["unit", "sunny"],
        "additionalProperties": False,
    }
)


@pytest.mark.parametrize("temperature", [0.7, 1.5])
def test_sampled_constrained_output_is_always_valid(
    handler: LlamaCppChatHandler, temperature: float
) -> None:
    base = constrained("What is the weather like in Paris?", OutputConstraint(BOUNDED))
    requests = [
        dataclasses.replace(base, temperature=temperature, seed=seed, max_new_tokens=64)
        for seed in range(4)
    ]
    # batched together; the model's own first pick is mostly prose ("The", "Sure"), not
    # JSON: the grammar refuses such a pick and the token is redrawn from what it allows
    for item in run(handler, *requests):
        assert item.error is None
        answer = json.loads(item.result.text)
        assert answer["unit"] in ("celsius", "fahrenheit") and isinstance(answer["sunny"], bool)
        assert item.result.finish_reason == "stop"


def test_a_seeded_constrained_sample_is_reproducible(handler: LlamaCppChatHandler) -> None:
    request = dataclasses.replace(
        constrained("What is the weather like in Paris?", OutputConstraint(BOUNDED)),
        temperature=1.0,
        seed=11,
        max_new_tokens=64,
    )
    first, second = (run(handler, request)[0] for _ in range(2))
    assert first.result.text == second.result.text
