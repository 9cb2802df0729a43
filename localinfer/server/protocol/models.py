"""``/v1/models``: the cards of the served models."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    BaseModel,
)

# -- models ----------------------------------------------------------------------------------


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "localinfer"
    task: str
    #: what serves it, as its handler reports once loaded (e.g. continuous batching or not)
    engine: str | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
