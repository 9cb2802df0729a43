"""Chat messages with ``image_url`` parts, made ready for a vision handler.

Only a model whose handler advertises the ``images`` capability gets images; any other
is refused before an image is read. Each image is fetched (where allowed) and decoded
off the event loop by :func:`localinfer.server.image_urls.load_image_url`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from localinfer.errors import InvalidRequest
from localinfer.handlers.tasks import IMAGE_INPUT
from localinfer.runtime.model import ServedModel
from localinfer.server import protocol as p
from localinfer.server.image_urls import ImageSettings, load_image_url


def accepts_images(model: ServedModel) -> bool:
    return model.capabilities.get(IMAGE_INPUT) == "true"


def check_image_count(count: int, limit: int) -> None:
    if count > limit:
        raise InvalidRequest(
            f"{count} images; at most {limit} per request (max_images)", param="messages"
        )


async def vision_messages(
    model: ServedModel, messages: Sequence[p.ChatMessage], settings: ImageSettings, max_images: int
) -> tuple[dict[str, Any], ...]:
    """The handler's messages: text and decoded images, in the order they were sent."""
    if not accepts_images(model):
        raise InvalidRequest(
            f"the model {model.name!r} does not accept image parts (serve a vision model, "
            "such as smolvlm-256m-instruct)",
            param="messages",
        )
    check_image_count(sum(len(m.images) for m in messages), max_images)
    converted: list[dict[str, Any]] = []
    for message in messages:
        if not isinstance(message.content, list):
            converted.append({"role": message.role, "content": message.content or ""})
            continue
        parts: list[dict[str, Any]] = []
        for part in message.content:
            if isinstance(part, p.TextPart):
                parts.append({"type": "text", "text": part.text})
            else:
                image = await load_image_url(
                    part.image_url.url, settings, detail=part.image_url.detail
                )
                parts.append({"type": "image", "image": image})
        converted.append({"role": message.role, "content": parts})
    return tuple(converted)
