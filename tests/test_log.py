"""Log lines carry the request id and are written in batches, warnings at once."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator

import pytest

from localinfer.log import BatchedStreamHandler, RequestIdFilter, request_id_var


class CountingStream(io.StringIO):
    """A stream that counts its writes (each would be one system call on a real one)."""

    writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, CountingStream, BatchedStreamHandler]]:
    stream = CountingStream()
    handler = BatchedStreamHandler(stream, interval_s=0.05)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(logging.Formatter("[%(request_id)s] %(levelname)s %(message)s"))
    logger = logging.getLogger("localinfer.test_log")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, stream, handler
    handler.close()
    logger.handlers[:] = []


def test_lines_are_written_together_within_the_interval(logged) -> None:  # type: ignore[no-untyped-def]
    logger, stream, _ = logged
    token = request_id_var.set("req-1")
    try:
        for n in range(100):
            logger.info("line %d", n)
    finally:
        request_id_var.reset(token)
    assert stream.getvalue() == "", "nothing is written per line"
    deadline = time.monotonic() + 2
    while stream.getvalue().count("\n") < 100 and time.monotonic() < deadline:
        time.sleep(0.01)
    lines = stream.getvalue().splitlines()
    assert lines == [f"[req-1] INFO line {n}" for n in range(100)]
    assert stream.writes <= 2


def test_a_warning_is_written_at_once_with_the_lines_before_it(logged) -> None:  # type: ignore[no-untyped-def]
    logger, stream, _ = logged
    logger.info("before")
    logger.warning("trouble")
    assert stream.getvalue().splitlines() == ["[-] INFO before", "[-] WARNING trouble"]


def test_closing_writes_what_is_left(logged) -> None:  # type: ignore[no-untyped-def]
    logger, stream, handler = logged
    logger.info("last words")
    handler.close()
    assert stream.getvalue() == "[-] INFO last words\n"
