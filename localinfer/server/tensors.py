"""KServe v2 (open inference protocol) tensors over JSON: typed, shape-checked, to numpy and back.

A request tensor is ``{"name", "shape", "datatype", "data"}`` with ``data`` flat or nested
in row-major order; its length must be the product of the shape, and every element must
fit the datatype (an ``INT8`` of 300, a ``BOOL`` of 1, a number in ``BYTES`` are refused).
``BYTES`` elements are JSON strings. The binary-data extension is not supported.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import BaseModel

from localinfer.errors import HandlerFailed, InvalidRequest
from localinfer.server.protocol.kserve import DATATYPES, InputTensor, OutputTensor

#: datatype → numpy dtype (``BYTES`` stays a list of str)
NUMPY_TYPES: dict[str, Any] = dict(
    zip(
        DATATYPES,
        (
            np.bool_,
            np.uint8,
            np.uint16,
            np.uint32,
            np.uint64,
            np.int8,
            np.int16,
            np.int32,
            np.int64,
            np.float16,
            np.float32,
            np.float64,
            object,
        ),
        strict=True,
    )
)
_MAX_ELEMENTS = 64 * 1024 * 1024


def _flatten(data: Any, into: list[Any], depth: int = 0) -> None:
    if depth > 32:
        raise InvalidRequest("tensor data is nested deeper than 32 levels")
    for item in data:
        if isinstance(item, list):
            _flatten(item, into, depth + 1)
        else:
            into.append(item)


def _check_element(datatype: str, value: Any) -> bool:
    if datatype == "BYTES":
        return isinstance(value, str)
    if datatype == "BOOL":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if datatype.startswith("FP"):  # and finite in it: 1e10 is no FP16 (it would be inf)
        return isinstance(value, int | float) and abs(value) <= float(
            np.finfo(NUMPY_TYPES[datatype]).max
        )
    if not isinstance(value, int):
        return False
    info = np.iinfo(NUMPY_TYPES[datatype])
    return int(info.min) <= value <= int(info.max)


def decode(tensor: InputTensor) -> np.ndarray:
    """The tensor as a numpy array of its shape (``object`` of str for ``BYTES``)."""
    expected = math.prod(tensor.shape)
    if expected > _MAX_ELEMENTS:
        raise InvalidRequest(f"input {tensor.name!r}: shape {tensor.shape} is too large")
    flat: list[Any] = []
    if isinstance(tensor.data, list):
        _flatten(tensor.data, flat)
    else:
        flat.append(tensor.data)
    if len(flat) != expected:
        raise InvalidRequest(
            f"input {tensor.name!r}: shape {tensor.shape} holds {expected} element(s), "
            f"data has {len(flat)}",
            param=tensor.name,
        )
    for index, value in enumerate(flat):
        if not _check_element(tensor.datatype, value):
            raise InvalidRequest(
                f"input {tensor.name!r}: element {index} ({value!r:.40}) is not a valid "
                f"{tensor.datatype}",
                param=tensor.name,
            )
    array = np.empty(len(flat), dtype=NUMPY_TYPES[tensor.datatype])
    array[:] = flat
    return array.reshape(tensor.shape)


def as_python(array: np.ndarray) -> Any:
    """A decoded tensor as a handler's argument, the JSON-like value ``/v1/infer`` would pass:
    a one-element tensor is its scalar, others are (nested) lists."""
    if array.size == 1 and array.ndim <= 1:
        return array.reshape(-1)[0].item() if array.dtype != object else array.reshape(-1)[0]
    return array.tolist()


def _datatype_of(array: np.ndarray) -> str:
    if array.dtype == object or array.dtype.kind in "US":
        return "BYTES"
    for name, dtype in NUMPY_TYPES.items():
        if dtype is not object and array.dtype == np.dtype(dtype):
            return name
    raise HandlerFailed(f"outputs of dtype {array.dtype} cannot be sent as a KServe tensor")


def encode(name: str, value: Any) -> OutputTensor:
    """One output tensor from a handler's value (a scalar, a list, an array)."""
    try:
        array = np.asarray(value)
    except ValueError as exc:  # ragged lists
        raise HandlerFailed(f"output {name!r} is not a rectangular tensor: {exc}") from exc
    datatype = _datatype_of(array)
    data = array.reshape(-1).tolist()
    if datatype == "BYTES":
        data = [v.decode() if isinstance(v, bytes) else v for v in data]
        if not all(isinstance(v, str) for v in data):
            raise HandlerFailed(f"output {name!r} mixes text with other values")
    return OutputTensor(name=name, datatype=datatype, shape=list(array.shape) or [1], data=data)


def encode_outputs(value: Any) -> list[OutputTensor]:
    """A handler's result as output tensors: one per key of a dict, else one ``output``."""
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if isinstance(value, dict):
        return [encode(str(key), item) for key, item in value.items()]
    return [encode("output", value)]
