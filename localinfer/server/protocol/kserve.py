"""The KServe v2 (open inference protocol) bodies: the inference request, and every answer
the ``/v2`` routes send — metadata, health, inference results and errors.

The routes build these models to send them and ``/openapi.json`` documents them, so each
answer's shape is written once, here. Tensor data is checked against its shape and
datatype by :mod:`localinfer.server.tensors`, which turns tensors into arrays and back.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: the tensor datatypes localinfer reads and writes (``BYTES``: JSON strings)
DATATYPES = (
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
)

# -- the inference request ---------------------------------------------------------------


class InputTensor(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=256)
    shape: list[int] = Field(max_length=32)
    datatype: str
    parameters: dict[str, Any] | None = None
    data: Any

    @field_validator("datatype")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in DATATYPES:
            raise ValueError(f"unsupported datatype {value!r}; one of {', '.join(DATATYPES)}")
        return value

    @field_validator("shape")
    @classmethod
    def _sizes(cls, value: list[int]) -> list[int]:
        if any(d < 0 for d in value):
            raise ValueError("dimensions must not be negative")
        return value


class RequestedOutput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    """The inference request JSON object."""

    model_config = ConfigDict(extra="ignore")

    id: str | None = Field(None, max_length=256)
    parameters: dict[str, Any] | None = None
    inputs: list[InputTensor] = Field(min_length=1, max_length=256)
    outputs: list[RequestedOutput] | None = None


# -- answers -------------------------------------------------------------------------------


class KServeError(BaseModel):
    """Every ``/v2`` error, with the status the OpenAI routes would use."""

    error: str


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class Liveness(BaseModel):
    live: bool


class KServeReadiness(BaseModel):
    ready: bool


class ModelReadiness(BaseModel):
    name: str
    ready: bool


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    #: -1: any size
    shape: list[int]
    #: sent only where there is something to say (``{"optional": true}``)
    parameters: dict[str, Any] | None = None


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, Any]


class OutputTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    #: flat, row-major
    data: list[Any]


class InferenceResponse(BaseModel):
    model_name: str
    id: str
    outputs: list[OutputTensor]


def answer_body(answer: BaseModel) -> dict[str, Any]:
    """An answer as sent: optional fields that were never set are left out."""
    return answer.model_dump(mode="json", exclude_unset=True)
