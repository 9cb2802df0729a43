"""``/v1/embeddings``: the request and the list of vectors it answers."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Field,
    field_validator,
)

from localinfer.server.protocol.base import Request, Usage

# -- embeddings ------------------------------------------------------------------------------


NonEmptyText = Annotated[str, Field(min_length=1)]


class EmbeddingRequest(Request):
    model: str = Field(min_length=1, max_length=512)
    input: NonEmptyText | Annotated[list[NonEmptyText], Field(min_length=1)]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _texts_only(cls, value: Any) -> Any:
        if isinstance(value, list) and value and not all(isinstance(v, str) for v in value):
            raise ValueError(
                "input must be a string or a list of strings (token arrays are not supported)"
            )
        if value == [] or value == "":
            raise ValueError("input must not be empty")
        if isinstance(value, list) and "" in value:
            raise ValueError(f"input[{value.index('')}] is an empty string")
        return value

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage
