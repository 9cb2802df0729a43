"""Bodies are decoded exactly as ``json.loads`` decodes bytes, only faster for UTF-8."""

from __future__ import annotations

import json

import pytest

from localinfer.errors import InvalidRequest
from localinfer.server.bodies import _encoding_of, parse_json

TEXT = '{"a": "é", "b": [1, 2]}'


@pytest.mark.parametrize(
    "raw",
    [
        TEXT.encode(),
        b"[1]",
        b"1",
        b"12",
        b" {}",
        *(TEXT.encode(codec) for codec in ("utf-8-sig", "utf-16", "utf-16-le", "utf-16-be")),
        *(TEXT.encode(codec) for codec in ("utf-32", "utf-32-le", "utf-32-be")),
        "1".encode("utf-16-le"),
        b"\xc3\xa9",
        b"\x00",
    ],
)
def test_the_encoding_is_the_one_json_loads_picks(raw: bytes) -> None:
    assert _encoding_of(raw) == json.detect_encoding(raw)


def test_every_encoding_json_accepts_parses_to_the_same_value() -> None:
    for codec in ("utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32-be"):
        assert parse_json(TEXT.encode(codec)) == json.loads(TEXT)


def test_invalid_utf8_is_refused_with_a_clear_message() -> None:
    with pytest.raises(InvalidRequest, match="not valid UTF-8"):
        parse_json(b'{"a": "\xff"}')
