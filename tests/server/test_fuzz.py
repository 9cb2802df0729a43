"""Schema fuzzing: schemathesis reads ``/openapi.json`` and throws generated requests, valid
and invalid, at every operation of a live server serving tiny real models.

Every answer must be: not a server error (a 503 only for downloads while offline), in a
status and content type the document declares, conforming to the declared schema, and
every error in its shape (OpenAI's, or KServe's on ``/v2``). Invalid data must be refused.

Most model names in valid generated requests are replaced by a served model of the route's
task, so the requests reach the handlers, not only the "no such model" answer. Bounded: a
fixed number of examples per operation, derandomized (the same requests every run): 50 in
the suite (CI's time), ``LOCALINFER_FUZZ_EXAMPLES=1000 pytest tests/server/test_fuzz.py``
for a deeper run.

Hypothesis tests follow, aimed where no schema can say what is valid: any JSON through user
code, KServe tensors, any Unicode through the chat model's tokenizer and template.
"""

from __future__ import annotations

import os
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

import httpx  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis.specs.openapi import checks  # noqa: E402  (4.0's schemathesis.checks lacks them)

from tests import models  # noqa: E402
from tests.support import ASR, CHAT, EMBED, ThreadedServer, define, tiny_models  # noqa: E402

pytestmark = pytest.mark.slow

#: the served model a route's generated names are sometimes replaced by
SERVED_FOR = {
    "/v1/chat/completions": CHAT,
    "/v1/completions": CHAT,
    "/v1/embeddings": EMBED,
    "/v1/audio/transcriptions": ASR,
    "/v1/audio/translations": ASR,
    "/v1/infer/{model}": "mirror",
    "/v2/models/{name}/infer": EMBED,
    "/v2/models/{name}": CHAT,
    "/v2/models/{name}/ready": ASR,
    "/v1/models/{model}": EMBED,  # GET only: the DELETE keeps its generated names
}
#: 5xx a route may answer by design: (status, code)
EXPECTED_SERVER_STATUSES = {(503, "offline")}
MAX_EXAMPLES = int(os.environ.get("LOCALINFER_FUZZ_EXAMPLES", "50"))
#: (method, path) → statuses answered: proof the generated requests reached the models
ANSWERED: dict[tuple[str, str], Counter[int]] = defaultdict(Counter)


@pytest.fixture(scope="module")
def fuzz_server(
    tiny_llama_dir: Path, tiny_bert_dir: Path, tiny_whisper_dir: Path
) -> Iterator[ThreadedServer]:
    definitions = [
        *tiny_models(tiny_llama_dir, tiny_bert_dir, tiny_whisper_dir, whisper_tokens=4),
        define(models.Mirror),
        define(models.InputNames),
    ]
    with ThreadedServer(
        definitions,
        offline=True,  # downloads answer 503 at once instead of reaching for the network
        max_tokens_limit=16,
        default_max_tokens=4,
        max_body_bytes=256 * 1024,
        max_messages=16,
        max_input_chars=2_000,
        max_embedding_inputs=8,
        max_audio_seconds=2,
        request_timeout_s=30,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def api_schema(fuzz_server: ThreadedServer) -> Any:
    return schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


def _aim_at_served_models(case: Any) -> None:
    """Replace the model named in most valid cases (chosen by a hash: reproducible)."""
    path = case.operation.path
    served = SERVED_FOR.get(path)
    if served is None or (path == "/v1/models/{model}" and case.method.upper() != "GET"):
        return
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return  # a negative case stays as invalid as it was made
    if zlib.crc32(repr(case.body).encode() + repr(case.path_parameters).encode()) % 4 == 0:
        return  # a quarter keep the generated name
    if isinstance(case.body, dict) and isinstance(case.body.get("model"), str):
        case.body["model"] = served
    for name in ("model", "name"):
        if case.path_parameters and name in case.path_parameters:
            case.path_parameters[name] = served


def _check_error_shape(path: str, status: int, body: Any) -> None:
    if path.startswith("/v2"):
        assert isinstance(body, dict) and set(body) == {"error"}, body
        assert isinstance(body["error"], str) and body["error"], body
        return
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert set(error) >= {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["type"], str), error
    assert error["type"] != "server_error" or (status, error["code"]) in EXPECTED_SERVER_STATUSES


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_survives_generated_requests(
    case: Any, fuzz_server: ThreadedServer
) -> None:
    _aim_at_served_models(case)
    response = case.call(base_url=fuzz_server.url, timeout=60)
    status = response.status_code
    ANSWERED[(case.method.upper(), case.operation.path)][status] += 1
    media = next((v[0] for k, v in response.headers.items() if k.lower() == "content-type"), "")
    body = response.json() if media.startswith("application/json") else None
    if status >= 500:
        code = (body or {}).get("error", {}).get("code") if isinstance(body, dict) else None
        assert (status, code) in EXPECTED_SERVER_STATUSES or (
            status == 503 and case.operation.path in ("/ready", "/v2/health/ready")
        ), f"{case.method} {case.formatted_path} -> {status}: {response.text[:500]}"
    if (
        status >= 400
        and case.operation.path not in ("/ready", "/v2/health/ready")
        and not (status == 503 and case.operation.path == "/v2/models/{name}/ready")
    ):
        _check_error_shape(case.operation.path, status, body)
    case.validate_response(
        response,
        checks=[
            checks.status_code_conformance,
            checks.content_type_conformance,
            checks.response_schema_conformance,
            checks.negative_data_rejection,
        ],
    )


# -- hypothesis, aimed where a schema cannot say what is valid ---------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=25,
)
INFER_BODIES = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "args": st.lists(JSON_VALUES, max_size=3),
            "kwargs": st.dictionaries(st.text(min_size=1, max_size=8), JSON_VALUES, max_size=3),
            "stream": st.booleans(),
        },
    ),
    JSON_VALUES,
)
FUZZ_SETTINGS = settings(
    max_examples=100,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def _error_or(response: httpx.Response, *, ok: set[int], errors: set[int]) -> Any:
    assert response.status_code in ok | errors, (response.status_code, response.text[:300])
    if response.status_code in errors:
        _check_error_shape(response.url.path, response.status_code, response.json())
        return None
    return response.json()


@FUZZ_SETTINGS
@given(body=INFER_BODIES)
def test_any_json_round_trips_through_user_code(fuzz_server: ThreadedServer, body: Any) -> None:
    """Whatever JSON a caller sends, user code gets exactly it, and its reply comes back whole."""
    r = httpx.post(f"{fuzz_server.url}/v1/infer/mirror", json=body, timeout=30)
    reply = _error_or(r, ok={200}, errors={400, 413, 422})
    if isinstance(body, dict) and set(body) <= {"args", "kwargs", "stream"}:
        assert reply == {"args": body.get("args", []), "kwargs": body.get("kwargs", {})}
    else:
        assert reply is None  # not an object of args and kwargs: refused


DATATYPES = ["BOOL", "UINT8", "INT8", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"]
ELEMENTS: dict[str, st.SearchStrategy[Any]] = {
    "BOOL": st.booleans(),
    "UINT8": st.integers(-5, 300),
    "INT8": st.integers(-200, 200),
    "INT32": st.integers(-(2**33), 2**33),
    "INT64": st.integers(-(2**70), 2**70),
    "FP16": st.floats(allow_nan=False, allow_infinity=False),
    "FP32": st.floats(allow_nan=False, allow_infinity=False),
    "FP64": st.floats(allow_nan=False, allow_infinity=False),
    "BYTES": st.text(max_size=12),
}


@st.composite
def tensors(draw: st.DrawFn) -> dict[str, Any]:
    datatype = draw(st.sampled_from(DATATYPES))
    shape = draw(st.lists(st.integers(0, 4), max_size=3))
    count = 1
    for dim in shape:
        count *= dim
    if draw(st.booleans()):  # mostly consistent: the decode path runs to the end
        data: Any = draw(st.lists(ELEMENTS[datatype], min_size=count, max_size=count))
    else:
        data = draw(JSON_VALUES)
    return {
        "name": draw(st.text(min_size=1, max_size=8)),
        "shape": shape,
        "datatype": datatype,
        "data": data,
    }


@FUZZ_SETTINGS
@given(
    model=st.sampled_from(["input-names", EMBED]),
    inputs=st.lists(tensors(), min_size=1, max_size=3),
    parameters=st.none() | st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=3),
)
def test_kserve_tensors_are_decoded_or_refused(
    fuzz_server: ThreadedServer, model: str, inputs: list[dict[str, Any]], parameters: Any
) -> None:
    body: dict[str, Any] = {"inputs": inputs}
    if parameters is not None:
        body["parameters"] = parameters
    r = httpx.post(f"{fuzz_server.url}/v2/models/{model}/infer", json=body, timeout=30)
    reply = _error_or(r, ok={200}, errors={400, 413, 422})
    if reply is not None:
        assert reply["model_name"] == model
        for output in reply["outputs"]:
            assert {"name", "datatype", "shape", "data"} <= set(output)


@settings(FUZZ_SETTINGS, max_examples=40)
@given(
    messages=st.lists(
        st.fixed_dictionaries(
            {"role": st.sampled_from(["system", "user", "assistant"]), "content": st.text()}
        ),
        min_size=1,
        max_size=4,
    ),
    stop=st.none() | st.lists(st.text(min_size=1, max_size=4), min_size=1, max_size=4),
    seed=st.none() | st.integers(-(2**70), 2**70),
    stream=st.booleans(),
)
def test_any_text_through_the_chat_model(
    fuzz_server: ThreadedServer, messages: list[Any], stop: Any, seed: Any, stream: bool
) -> None:
    """Any Unicode (control characters, emoji, scripts) through tokenizer and template."""
    body = {"model": CHAT, "messages": messages, "max_tokens": 3, "stream": stream}
    if stop is not None:
        body["stop"] = stop
    if seed is not None:
        body["seed"] = seed
    r = httpx.post(f"{fuzz_server.url}/v1/chat/completions", json=body, timeout=60)
    _error_or(r, ok={200}, errors={400, 413}) if not stream else None
    if stream:
        assert r.status_code in (200, 400, 413), r.text[:300]
        if r.status_code == 200:
            assert r.text.rstrip().endswith("data: [DONE]"), r.text[-300:]
            assert '"error"' not in r.text, r.text[-500:]


def test_the_server_is_whole_after_fuzzing(fuzz_server: ThreadedServer) -> None:
    if ANSWERED:  # the fuzzer ran in this session: it reached the models, not only 404s
        for route in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
            assert ANSWERED[("POST", route)][200] > 0, (route, ANSWERED[("POST", route)])
        assert sum(ANSWERED[("POST", "/v1/audio/transcriptions")].values()) > 0

    health = httpx.get(f"{fuzz_server.url}/health").json()
    for name, model in health["models"].items():
        assert all(w["error"] is None for w in model["workers"]), (name, model)
    r = httpx.post(
        f"{fuzz_server.url}/v1/chat/completions",
        json={"model": CHAT, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
        timeout=60,
    )
    assert r.status_code == 200, r.text
