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


def test_greedy_read_in_place_picks_what_llama_cpp_picks(
    handler: LlamaCppChatHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The greedy pick skips llama_sampler_sample's copy of the row: the same tokens."""
    from llamacpp_support import ask
    from localinfer_llamacpp.sampling import SamplerChain

    requests = [
        ask(text, max_new_tokens=24, temperature=0.0)
        for text in ("Name three colours.", "Count to ten.", "Write a haiku about tea.")
    ]
    # a first run prefills; later ones find the prompts cached, and a batch of another
    # shape may round a near tie the other way: compare two runs made alike
    run(handler, *requests)
    in_place = [item.result.text for item in run(handler, *requests)]
    picked: list[int] = []

    def by_llama_cpp(self: SamplerChain, ctx: object, index: int) -> int:
        picked.append(index)
        return int(self._lib.llama_sampler_sample(self.handle, ctx, index))

    monkeypatch.setattr(SamplerChain, "most_likely", by_llama_cpp)
    assert [item.result.text for item in run(handler, *requests)] == in_place
    assert len(picked) >= 24  # the greedy picks went through the replacement
