"""Logprobs from the llama.cpp engine: read from the rows of the sequences that ask."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest
from llamacpp_support import ask, run
from localinfer_llamacpp.handler import LlamaCppChatHandler
from localinfer_llamacpp.logprobs import best_tokens, log_softmax
from test_constraints import SCHEMA, OutputConstraint, constrained

from localinfer.handlers.tasks import GenerationRequest, TokenLogprob
from localinfer.testing import RecordingItem, catalog_definition, serve

ALIAS = "smollm2-135m-instruct-q4"


def entries(item: RecordingItem) -> list[TokenLogprob]:
    return [chunk for chunk in item.chunks if isinstance(chunk, TokenLogprob)]


def text_of(item: RecordingItem) -> str:
    return "".join(chunk for chunk in item.chunks if isinstance(chunk, str))


def assert_greedy(found: list[TokenLogprob], top: int) -> None:
    """Each chosen token is the most likely one; every value is a log-probability."""
    assert found
    for entry in found:
        assert len(entry.top) == top
        assert entry.logprob <= 0 and all(alt.logprob <= 0 for alt in entry.top)
        assert all(entry.logprob >= alt.logprob - 1e-5 for alt in entry.top)
        if top:
            assert entry.logprob == pytest.approx(entry.top[0].logprob, abs=1e-5)
            assert [a.logprob for a in entry.top] == sorted(
                (a.logprob for a in entry.top), reverse=True
            )


def test_log_softmax_and_best_tokens() -> None:
    logits = np.array([2.0, -np.inf, 0.5, 1.0], dtype=np.float32)
    logprobs = log_softmax(logits)
    assert math.isclose(float(np.exp(logprobs).sum()), 1.0, rel_tol=1e-6)
    assert logprobs[1] == -np.inf
    assert logprobs[0] == pytest.approx(2.0 - math.log(math.e**2 + math.e**0.5 + math.e))
    assert [i for i, _ in best_tokens(logprobs, 3)] == [0, 3, 2]
    assert best_tokens(logprobs, 0) == []


def test_greedy_logprobs_leave_the_answer_alone(handler: LlamaCppChatHandler) -> None:
    # a prompt no other test sends: a cached one would be decoded from reused cells, whose
    # rounding may differ from a cold prefill's (see prompt_cache.py)
    plain = ask("Name three birds.", max_new_tokens=16)
    asked = ask("Name three birds.", max_new_tokens=16, logprobs=5)
    # batched together: the row read for one sequence changes nothing for the other
    without, with_ = run(handler, plain, asked)
    assert with_.result.text == without.result.text
    assert entries(without) == []
    found = entries(with_)
    assert_greedy(found, 5)
    # one entry per streamed token, whose texts make up the answer (EOS has none)
    assert len(found) == with_.result.completion_tokens - (
        1 if with_.result.finish_reason == "stop" else 0
    )
    assert "".join(e.token for e in found) == with_.result.text == text_of(with_)


def test_seeded_sampling_is_unchanged_by_logprobs(handler: LlamaCppChatHandler) -> None:
    settings: dict[str, Any] = {"max_new_tokens": 16, "temperature": 0.9, "top_p": 0.9, "seed": 3}
    plain = run(handler, ask("Invent a name for a cat.", **settings))[0]
    asked = run(handler, ask("Invent a name for a cat.", logprobs=2, **settings))[0]
    assert asked.result.text == plain.result.text  # the same chain, step by step
    found = entries(asked)
    assert found and all(len(e.top) == 2 and e.logprob <= 0 for e in found)
    # sampled, not greedy: each token may be any the model allows, never an impossible one
    assert all(e.logprob > -9999 for e in found)


def test_constrained_logprobs_are_over_the_allowed_tokens(handler: LlamaCppChatHandler) -> None:
    request = constrained("Describe Paris as JSON.", OutputConstraint(SCHEMA))
    plain = run(handler, request)[0]
    asked = run(handler, dataclasses.replace(request, logprobs=20))[0]
    assert asked.result.text == plain.result.text
    assert set(json.loads(asked.result.text)) == {"city", "population"}
    found = entries(asked)
    assert_greedy(found, 20)
    # the grammar forbids most tokens at a `{`: they are reported as impossible, and the
    # chosen token's probability is among the allowed ones (so it is never -inf)
    assert any(alt.logprob == -9999.0 for e in found for alt in e.top)
    assert all(e.logprob > -9999.0 for e in found)


def test_completion_logprobs_match_llama_cpp_python(
    handler: LlamaCppChatHandler, gguf: Path
) -> None:
    from llama_cpp import Llama

    prompt = "The capital of France is"
    item = run(
        handler, GenerationRequest(prompt=prompt, max_new_tokens=6, temperature=0, logprobs=3)
    )[0]
    found = entries(item)
    reference_model = Llama(  # with the engine's attention kernel (flash attention on CPU)
        model_path=str(gguf), n_ctx=256, logits_all=True, flash_attn=True, verbose=False
    )
    try:
        reference = reference_model.create_completion(
            prompt, max_tokens=6, temperature=0, logprobs=3
        )["choices"][0]["logprobs"]
    finally:
        reference_model.close()
    assert [e.token for e in found] == reference["tokens"][: len(found)]
    for entry, expected in zip(found, reference["token_logprobs"], strict=False):
        assert entry.logprob == pytest.approx(expected, abs=2e-3)


@pytest.mark.anyio
async def test_served_chat_logprobs_stream_and_not(gguf: Path) -> None:
    async with serve([catalog_definition(ALIAS)]) as client:
        base = str(client.base_url).rstrip("/")
        api = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
        kwargs: dict[str, Any] = dict(
            model=ALIAS,
            messages=[{"role": "user", "content": "Name three colours."}],
            max_tokens=12,
            temperature=0,
            logprobs=True,
            top_logprobs=4,
        )
        # once first: the requests compared below then both reuse the prompt's cached cells
        # (a repeated prompt's logprobs differ a little from its cold prefill's: llama.cpp's
        # own Llama gives -2.00 then -2.09 for the same token)
        await api.chat.completions.create(**kwargs)
        reply = await api.chat.completions.create(**kwargs)
        content = reply.choices[0].logprobs.content  # type: ignore[union-attr]
        assert content
        for entry in content:
            assert len(entry.top_logprobs) == 4 and entry.logprob <= 0
            assert entry.logprob >= max(t.logprob for t in entry.top_logprobs) - 1e-5
        assert "".join(e.token for e in content) == reply.choices[0].message.content
        streamed = []
        async for chunk in await api.chat.completions.create(stream=True, **kwargs):
            if chunk.choices and chunk.choices[0].logprobs and chunk.choices[0].logprobs.content:
                streamed.extend(chunk.choices[0].logprobs.content)
        assert [(e.token, e.logprob) for e in streamed] == [(e.token, e.logprob) for e in content]
        assert [[t.token for t in e.top_logprobs] for e in streamed] == [
            [t.token for t in e.top_logprobs] for e in content
        ]

        bare = await api.chat.completions.create(**{**kwargs, "top_logprobs": 0})
        assert all(e.top_logprobs == [] for e in bare.choices[0].logprobs.content or [])  # type: ignore[union-attr]
        with pytest.raises(openai.BadRequestError) as refused:
            await api.chat.completions.create(**{**kwargs, "top_logprobs": 21})
        assert "top_logprobs" in str(refused.value)

        completion = await api.completions.create(
            model=ALIAS, prompt="The sea is", max_tokens=6, temperature=0, logprobs=2
        )
        logprobs = completion.choices[0].logprobs
        assert logprobs is not None and logprobs.tokens and logprobs.top_logprobs
        assert "".join(logprobs.tokens) == completion.choices[0].text
        assert all(len(top) == 2 for top in logprobs.top_logprobs)
        await api.close()
