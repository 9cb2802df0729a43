"""``/rerank`` (Cohere/Jina): the request, its checks and the ranked results."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from localinfer.server.protocol.base import Request

# -- rerank ----------------------------------------------------------------------------------


class RerankDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str


class RerankRequest(Request):
    """Cohere/Jina ``/rerank``. Unknown fields are refused: none of theirs goes unheeded."""

    model_config = ConfigDict(extra="forbid", str_max_length=10_000_000)

    model: str = Field(min_length=1, max_length=512)
    query: str = Field(min_length=1)
    documents: list[str | RerankDocument]
    top_n: int | None = Field(None, ge=1)
    return_documents: bool = False

    @field_validator("documents", mode="before")
    @classmethod
    def _texts_only(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value  # pydantic says what it should be
        if not value:
            raise ValueError("documents must not be empty")
        for index, document in enumerate(value):
            text = document.get("text") if isinstance(document, dict) else document
            if not isinstance(text, str):
                raise ValueError(
                    f"documents[{index}] must be a string or an object with a string 'text'"
                )
        return value

    @model_validator(mode="after")
    def _top_n_in_range(self) -> RerankRequest:
        if self.top_n is not None and self.top_n > len(self.documents):
            raise ValueError(
                f"top_n must be between 1 and the number of documents ({len(self.documents)}), "
                f"not {self.top_n}"
            )
        return self

    @property
    def texts(self) -> list[str]:
        return [d if isinstance(d, str) else d.text for d in self.documents]


class RerankUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class RerankItem(BaseModel):
    index: int
    relevance_score: float
    #: with ``return_documents: true`` only
    document: RerankDocument | None = None


class RerankResponse(BaseModel):
    """Results best first, at most ``top_n`` of them."""

    id: str
    object: Literal["rerank"] = "rerank"
    model: str
    results: list[RerankItem]
    usage: RerankUsage
