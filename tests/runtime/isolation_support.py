"""What the isolation tests share: a scripted handler served from a process of its own."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from localinfer.handlers.base import ModelSource
from localinfer.plugins import HandlerSpec
from localinfer.runtime import ModelDefinition, ModelRegistry
from localinfer.runtime.isolated_child import HandlerRecipe
from localinfer.runtime.isolation import ProcessHandler
from localinfer.runtime.model import ServedModel

SCRIPTED = HandlerSpec("scripted", "infer", "tests.runtime.isolated_handlers:Scripted")
IN_FLIGHT = HandlerSpec("in-flight", "infer", "tests.runtime.isolated_handlers:InFlight")
LOAD_S = 60  # a child starts Python and imports localinfer: seconds on a loaded machine


def isolated(
    spec: HandlerSpec = SCRIPTED, *, name: str = "iso", kill_after_s: float = 20.0, **options: Any
) -> ModelDefinition:
    recipe = HandlerRecipe(spec, ModelSource("unused", options=options))
    return ModelDefinition(
        name=name,
        create_handler=lambda i, d: ProcessHandler(recipe, kill_after_s=kill_after_s),
        max_batch_size=4,
    )


@asynccontextmanager
async def served(*definitions: ModelDefinition, **registry: Any) -> AsyncIterator[ModelRegistry]:
    async with ModelRegistry(**registry) as reg:
        for definition in definitions:
            reg.add(definition)
        await reg.wait_ready(LOAD_S)
        yield reg


def model(reg: ModelRegistry, name: str = "iso") -> ServedModel:
    return reg.get(name)


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
