"""``GET /openapi.json``: an OpenAPI 3.1 document built from the routes and the protocol models.

The app's route table gives the paths, methods and path parameters;
:data:`~localinfer.server.route_docs.OPERATIONS` says, per route, which pydantic model its
body is and which its answer is. Schemas come from the models themselves
(``models_json_schema``), so a field added to a model shows up here with nothing else to
edit. A route missing from :data:`OPERATIONS` is still listed, with any JSON in and out
(``tests/server/test_security.py`` fails on one).

The document is built on the first request and kept for the app's lifetime.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from localinfer._version import __version__
from localinfer.server import protocol as p
from localinfer.server.protocol.kserve import KServeError
from localinfer.server.route_docs import OPERATIONS as OPERATIONS
from localinfer.server.route_docs import Operation, Schema

OPENAPI_VERSION = "3.1.0"
_REF = "#/components/schemas/{model}"

_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")


def _documented_methods(route: Route) -> list[str]:
    return sorted(m for m in route.methods or () if m != "HEAD")


def undocumented(routes: Sequence[BaseRoute]) -> list[tuple[str, str]]:
    """Routes of the app that :data:`OPERATIONS` says nothing about."""
    return [
        (method, route.path)
        for route in routes
        if isinstance(route, Route)
        for method in _documented_methods(route)
        if (method, route.path) not in OPERATIONS
    ]


class _Schemas:
    """Component schemas for every model used, named once, referenced by ``$ref``."""

    def __init__(self, operations: Sequence[Operation]):
        wanted: set[tuple[type[BaseModel], JsonSchemaMode]] = {
            (p.ErrorResponse, "serialization"),
            (KServeError, "serialization"),
        }
        for op in operations:
            if op.body is not None:
                wanted.add((op.body, "validation"))
            for answer in op.answers.values():
                for model in (answer.model, answer.events):
                    if model is not None:
                        wanted.add((model, "serialization"))
        ordered = sorted(wanted, key=lambda pair: (pair[0].__name__, pair[1]))
        refs, definitions = models_json_schema(ordered, ref_template=_REF)
        self.refs: dict[tuple[type[Any], JsonSchemaMode], dict[str, Any]] = dict(refs)
        self.components: dict[str, Any] = definitions.get("$defs", {})

    def ref(self, model: type[BaseModel], mode: JsonSchemaMode) -> dict[str, Any]:
        return self.refs[(model, mode)]


def _not_null(field: dict[str, Any]) -> dict[str, Any]:
    """A form field is sent or left out, never null: ``anyOf [X, null]`` becomes ``X``."""
    options = [o for o in field.get("anyOf", ()) if o != {"type": "null"}]
    if len(options) != 1:
        return field
    rest = {k: v for k, v in field.items() if k not in ("anyOf", "default")}
    return {**rest, **options[0]}


def _form_schema(form: type[BaseModel], schemas: _Schemas) -> dict[str, Any]:
    schema = form.model_json_schema(ref_template=_REF, mode="validation")
    schemas.components.update(schema.pop("$defs", {}))
    schema["properties"] = {
        "file": {"type": "string", "format": "binary", "description": "the audio file"},
        **{name: _not_null(field) for name, field in schema.get("properties", {}).items()},
    }
    schema["required"] = ["file", *schema.get("required", [])]
    schema.pop("title", None)
    return schema


def _event_schema(events: Schema, schemas: _Schemas) -> dict[str, Any]:
    """One server-sent event (OpenAPI 3.1: ``schema`` describes each event): its ``data``
    is ``[DONE]``, or JSON: ``events``, or the error that ended the stream."""
    data: dict[str, Any] = {"type": "string"}
    if events is not None:
        data = {
            "anyOf": [
                {"const": "[DONE]"},
                {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": {
                        "anyOf": [
                            schemas.ref(events, "serialization"),
                            schemas.ref(p.ErrorResponse, "serialization"),
                        ]
                    },
                },
            ]
        }
    return {"type": "object", "required": ["data"], "properties": {"data": data}}


def _responses(op: Operation, schemas: _Schemas) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, answer in sorted(op.answers.items()):
        content: dict[str, Any] = {}
        if answer.json:
            body = {} if answer.model is None else schemas.ref(answer.model, "serialization")
            content["application/json"] = {"schema": body}
        if answer.sse:
            content["text/event-stream"] = {"schema": _event_schema(answer.events, schemas)}
        for media in answer.media:
            content[media] = {"schema": {"type": "string"}}
        responses[str(status)] = {"description": answer.description, "content": content}
    error = KServeError if op.kserve_errors else p.ErrorResponse
    responses["default"] = {
        "description": "An error: "
        + ("KServe's {error}" if op.kserve_errors else "OpenAI's shape"),
        "content": {"application/json": {"schema": schemas.ref(error, "serialization")}},
    }
    return responses


def _operation(method: str, route: Route, op: Operation, schemas: _Schemas) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "operationId": re.sub(r"\W+", "_", f"{method} {route.path_format}").strip("_").lower(),
        "summary": op.summary,
        "tags": [op.tag],
        "responses": _responses(op, schemas),
    }
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for name in route.param_convertors
    ]
    if parameters:
        doc["parameters"] = parameters
    if op.body is not None or op.any_body:
        body = {} if op.body is None else schemas.ref(op.body, "validation")
        doc["requestBody"] = {
            "required": op.body_required,
            "content": {"application/json": {"schema": body}},
        }
    elif op.form is not None:
        doc["requestBody"] = {
            "required": True,
            "content": {"multipart/form-data": {"schema": _form_schema(op.form, schemas)}},
        }
    return doc


def build(routes: Sequence[BaseRoute], *, api_key: bool = False) -> dict[str, Any]:
    """The OpenAPI document of ``routes`` (an app's ``routes``)."""
    pairs = [
        (method, route, OPERATIONS.get((method, route.path)) or _fallback(route))
        for route in routes
        if isinstance(route, Route)
        for method in _documented_methods(route)
    ]
    schemas = _Schemas([op for _, _, op in pairs])
    paths: dict[str, dict[str, Any]] = {}
    for method, route, op in pairs:
        path = _PARAM.sub(r"{\1}", route.path)
        paths.setdefault(path, {})[method.lower()] = _operation(method, route, op, schemas)
    document: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "localinfer",
            "version": __version__,
            "description": "Local models behind an OpenAI-compatible API, a generic infer "
            "route, and KServe v2 (open inference protocol).",
        },
        "paths": paths,
        "components": {"schemas": schemas.components},
    }
    if api_key:
        document["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        }
        document["security"] = [{"bearer": []}, {"apiKey": []}]
    return document


def _fallback(route: Route) -> Operation:
    return Operation(route.name.replace("_", " "), "other", any_body=True, body_required=False)


async def openapi_json(request: Request) -> Response:
    cached: bytes | None = getattr(request.app.state, "openapi", None)
    if cached is None:
        settings = request.app.state.settings
        document = build(request.app.routes, api_key=bool(settings.api_key_value))
        cached = json.dumps(document, separators=(",", ":")).encode()
        request.app.state.openapi = cached
    return Response(cached, media_type="application/json")


routes = [Route("/openapi.json", openapi_json, methods=["GET"])]
