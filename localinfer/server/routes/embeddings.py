"""``POST /v1/embeddings``: texts in, normalised vectors out (float lists or base64 float32).

Each request becomes one job; the scheduler micro-batches concurrent requests into one
forward pass. Repeated inputs are answered from a per-model LRU cache.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import numpy as np
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from localinfer.errors import HandlerFailed
from localinfer.handlers.tasks import EMBEDDINGS, EmbeddingRequest, EmbeddingResult
from localinfer.server import protocol as p
from localinfer.server.bodies import read_json
from localinfer.server.embedding_cache import EmbeddingCache
from localinfer.server.encoding import JSON_CONTENT_TYPE, RawResponse
from localinfer.server.routes.common import model_for_task, run_to_result
from localinfer.server.state import calls_of, settings_of


def cache_for(request: Request, model: str) -> EmbeddingCache:
    caches: dict[str, EmbeddingCache] = request.app.state.embedding_caches
    cache = caches.get(model)
    if cache is None:
        cache = caches[model] = EmbeddingCache(settings_of(request).embedding_cache_size)
    return cache


def encode(vector: Sequence[float] | np.ndarray, encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
    return vector if isinstance(vector, list) else np.asarray(vector).tolist()


async def embeddings(request: Request) -> Response:
    settings = settings_of(request)
    body = p.parse(p.EmbeddingRequest, await read_json(request, settings.max_body_bytes))
    texts = body.texts
    calls_of(request).limits.check_texts(texts)
    model = model_for_task(request, body.model, EMBEDDINGS)
    cache = cache_for(request, model.name)

    vectors: list[Sequence[float] | None] = [None] * len(texts)
    tokens = [0] * len(texts)
    missing: dict[str, list[int]] = {}
    for index, text in enumerate(texts):
        hit = cache.get(text, body.dimensions)
        if hit is None:
            missing.setdefault(text, []).append(index)
        else:
            vectors[index], tokens[index] = hit
    if missing:
        unique = list(missing)
        _, result = await run_to_result(
            request, model, EmbeddingRequest(texts=tuple(unique), dimensions=body.dimensions)
        )
        assert isinstance(result, EmbeddingResult)
        computed = result.vectors  # float32 values, as lists or an array
        per_text = result.text_tokens
        if len(per_text) != len(unique):
            raise HandlerFailed("the embeddings handler did not report tokens per text")
        for text, vector, count in zip(unique, computed, per_text, strict=True):
            cache.put(text, body.dimensions, vector, count)
            for index in missing[text]:
                vectors[index], tokens[index] = vector, count
    prompt_tokens = sum(tokens)
    # built from values made here, so not validated again (384 floats a vector)
    reply = p.EmbeddingList.model_construct(
        data=[
            p.Embedding.model_construct(index=i, embedding=encode(v, body.encoding_format))  # type: ignore[arg-type]
            for i, v in enumerate(vectors)
        ],
        model=body.model,
        usage=p.Usage(prompt_tokens=prompt_tokens, total_tokens=prompt_tokens),
    )
    return RawResponse(reply.model_dump_json().encode(), [JSON_CONTENT_TYPE])


routes = [Route("/v1/embeddings", embeddings, methods=["POST"])]
