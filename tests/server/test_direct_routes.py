"""The hot routes skip the router: same answers and errors; all else falls through."""

from __future__ import annotations

import logging

import httpx
import pytest
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from localinfer.errors import ModelNotFound
from localinfer.server.app import LocalInferApp
from localinfer.server.direct_routes import DirectRoutes
from localinfer.server.middleware import RequestContextMiddleware

pytestmark = pytest.mark.anyio


async def hello(request: Request) -> Response:
    return JSONResponse({"method": request.method, **request.path_params})


async def missing(request: Request) -> Response:
    raise ModelNotFound(f"the model {request.path_params['name']!r} does not exist")


async def broken(request: Request) -> Response:
    raise RuntimeError("a bug")


ROUTES = [
    Route("/v1/hello", hello, methods=["POST"]),
    Route("/v1/things/{name}", hello, methods=["POST"]),
    Route("/v1/missing/{name}", missing, methods=["POST"]),
    Route("/v1/broken", broken, methods=["POST"]),
]


def app() -> LocalInferApp:
    return LocalInferApp(
        routes=ROUTES,
        middleware=[
            Middleware(RequestContextMiddleware),
            Middleware(DirectRoutes, routes=ROUTES),
        ],
    )


def client() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app(), raise_app_exceptions=False),
        base_url="http://127.0.0.1",
    )


async def test_exact_and_parameter_routes_are_answered() -> None:
    async with client() as c:
        r = await c.post("/v1/hello")
        assert r.status_code == 200 and r.json() == {"method": "POST"}
        r = await c.post("/v1/things/a.b-c")
        assert r.json() == {"method": "POST", "name": "a.b-c"}
        assert len(r.headers["x-request-id"]) == 32


async def test_requests_take_the_direct_path_only_where_they_match() -> None:
    stack = app()
    direct = stack.build_middleware_stack().app  # RequestContextMiddleware -> DirectRoutes
    assert isinstance(direct, DirectRoutes)
    reached: list[str] = []
    below = direct.app

    async def router(scope, receive, send):  # type: ignore[no-untyped-def]
        reached.append(scope["path"])
        await below(scope, receive, send)

    direct.app = router
    transport = httpx.ASGITransport(app=direct)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        assert (await c.post("/v1/hello")).status_code == 200
        assert (await c.post("/v1/things/x")).json() == {"method": "POST", "name": "x"}
        assert reached == []  # neither went through the router
        assert (await c.get("/v1/hello")).status_code == 405
        assert (await c.post("/v1/things/x/y")).status_code == 404
        assert (await c.post("/v1/things/")).status_code == 404
        assert reached == ["/v1/hello", "/v1/things/x/y", "/v1/things/"]


async def test_errors_are_answered_as_on_the_router_path(caplog: pytest.LogCaptureFixture) -> None:
    async with client() as c:
        r = await c.post("/v1/missing/nope", headers={"x-request-id": "trace-1"})
        assert r.status_code == 404
        assert r.json()["error"]["message"] == "the model 'nope' does not exist"
        assert r.json()["error"]["code"] == "model_not_found"
        assert r.headers["x-request-id"] == "trace-1"
        with caplog.at_level(logging.ERROR):
            r = await c.post("/v1/broken")
        assert r.status_code == 500
        assert r.json()["error"]["code"] == "internal_error"
        assert "a bug" not in r.text  # details stay in the log
        assert any("a bug" in str(rec.exc_info[1]) for rec in caplog.records if rec.exc_info)


def test_only_a_trailing_parameter_can_be_routed_directly() -> None:
    route = Route("/v1/{name}/infer", hello, methods=["POST"])
    with pytest.raises(ValueError, match="trailing"):
        DirectRoutes(app(), routes=[route])
    with pytest.raises(ValueError, match="trailing"):
        DirectRoutes(app(), routes=[Route("/v2/{name:path}", hello, methods=["POST"])])
