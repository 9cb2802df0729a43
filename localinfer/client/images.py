"""Images for chat messages: a path, bytes or a PIL image become an ``image_url`` part.

The part carries the image inline (a ``data:`` URL), which every localinfer server
accepts; a ``http(s)`` or ``data:`` URL string is passed on as it is (a server fetches
remote URLs only where its operator turned that on)::

    await client.chat([user_message("What is in this picture?", "cat.jpg")], model="smolvlm")
"""

from __future__ import annotations

import base64
import io
import os
from typing import TYPE_CHECKING, TypeAlias

from localinfer.errors import InvalidRequest

if TYPE_CHECKING:
    from PIL.Image import Image

    ImageInput: TypeAlias = "str | os.PathLike[str] | bytes | bytearray | Image"
else:
    ImageInput: TypeAlias = object

#: leading bytes of the formats a server decodes, and their media types
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
)


def image_part(image: ImageInput, *, detail: str | None = None) -> dict[str, object]:
    """``{"type": "image_url", "image_url": {"url": ...}}`` for ``image``.

    A path is read here (small, blocking file I/O); bytes are sent as they are; a PIL
    image is encoded as PNG.
    """
    url: dict[str, object] = {"url": image_url(image)}
    if detail is not None:
        url["detail"] = detail
    return {"type": "image_url", "image_url": url}


def user_message(text: str, *images: ImageInput) -> dict[str, object]:
    """A user message: ``images`` first (as vision chat templates expect), then ``text``."""
    parts = [image_part(image) for image in images]
    return {"role": "user", "content": [*parts, {"type": "text", "text": text}]}


def image_url(image: ImageInput) -> str:
    if isinstance(image, str) and image.startswith(("data:", "http://", "https://")):
        return image
    if isinstance(image, str | os.PathLike):
        with open(os.fspath(image), "rb") as file:
            data = file.read()
    elif isinstance(image, bytes | bytearray):
        data = bytes(image)
    elif hasattr(image, "save"):  # a PIL image
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        data = buffer.getvalue()
    else:
        raise InvalidRequest(
            f"an image is a path, bytes or a PIL image, not {type(image).__name__}",
            param="messages",
        )
    return f"data:{media_type(data)};base64,{base64.b64encode(data).decode('ascii')}"


def media_type(data: bytes) -> str:
    """The image's media type from its first bytes (``image/*`` when unknown)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    for signature, media in _SIGNATURES:
        if data.startswith(signature):
            return media
    return "image/*"
