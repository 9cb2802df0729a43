"""``POST /v1/rerank`` (also ``/rerank``, ``/v2/rerank``): documents ordered by relevance.

Cohere/Jina shape. The model is a cross-encoder (task ``rerank``) or any embeddings
model, which ranks by cosine similarity (:mod:`localinfer.handlers.rerank`). Each
request is one job; the scheduler micro-batches concurrent ones.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from localinfer.errors import InvalidRequest, ModelNotFound
from localinfer.handlers import tasks
from localinfer.handlers.rerank import check_rerank, ranked, rerank_payload, rerank_result
from localinfer.runtime.model import ServedModel
from localinfer.server import protocol as p
from localinfer.server.bodies import read_json
from localinfer.server.encoding import JSON_CONTENT_TYPE, RawResponse
from localinfer.server.routes.common import model_for_task, run_to_result
from localinfer.server.state import settings_of


def reranker(request: Request, name: str) -> ServedModel:
    """The model ``name`` (or the one a capability selector picks) if it can rerank: a
    reranker, else an embeddings model."""
    try:
        return model_for_task(request, name, tasks.RERANK)
    except (ModelNotFound, InvalidRequest) as refused:
        try:
            return model_for_task(request, name, tasks.EMBEDDINGS)
        except (ModelNotFound, InvalidRequest):
            raise refused from None


async def rerank(request: Request) -> Response:
    settings = settings_of(request)
    body = p.parse(p.RerankRequest, await read_json(request, settings.max_body_bytes))
    documents = body.texts
    check_rerank(
        body.query,
        documents,
        body.top_n,
        max_documents=settings.max_rerank_documents,
        max_chars=settings.max_input_chars,
    )
    model = reranker(request, body.model)
    job_request = tasks.RerankRequest(body.query, tuple(documents))
    job, value = await run_to_result(
        request, model, rerank_payload(model.definition.task, job_request)
    )
    result = rerank_result(job_request, value)
    reply = p.RerankResponse(
        id=job.request_id,
        model=body.model,
        results=[
            p.RerankItem(
                index=i,
                relevance_score=result.scores[i],
                document=p.RerankDocument(text=documents[i]) if body.return_documents else None,
            )
            for i in ranked(result.scores, body.top_n)
        ],
        usage=p.RerankUsage(prompt_tokens=result.prompt_tokens, total_tokens=result.prompt_tokens),
    )
    return RawResponse(reply.model_dump_json(exclude_none=True).encode(), [JSON_CONTENT_TYPE])


routes = [Route(path, rerank, methods=["POST"]) for path in ("/v1/rerank", "/rerank", "/v2/rerank")]
