"""A server that owns its process shortens the GIL's switch interval (the loop waits less
for model threads running Python); an embedded one leaves the interpreter alone."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator

import pytest

from localinfer.config import Settings
from localinfer.server.app import create_app
from tests import models
from tests.support import define

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def restored() -> Iterator[None]:
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)
    gc.unfreeze()  # the owned server froze the heap too


async def test_only_a_server_that_owns_its_process_sets_the_switch_interval() -> None:
    default = sys.getswitchinterval()
    settings = Settings(port=0, gil_switch_interval_ms=0.5)
    for owns_process, expected in ((False, default), (True, 0.0005)):
        app = create_app([define(models.Echo)], settings, owns_process=owns_process)
        async with app.router.lifespan_context(app):
            assert sys.getswitchinterval() == pytest.approx(expected)
