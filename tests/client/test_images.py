"""``image_part`` / ``user_message``: paths, bytes and PIL images as chat parts, end to end."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from localinfer import errors as e
from localinfer.client import Client, SyncClient, image_part, user_message
from localinfer.client.images import media_type
from tests.support import CHAT, ThreadedServer, define_local

Image = pytest.importorskip("PIL.Image")
pytestmark = pytest.mark.anyio
VISION = "tiny-vision"


def png_bytes(color: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 16), color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_paths_bytes_and_pil_images_become_data_urls(tmp_path: Path) -> None:
    data = png_bytes()
    path = tmp_path / "cat.png"
    path.write_bytes(data)
    for image in (path, str(path), data, bytearray(data)):
        url = image_part(image)["image_url"]["url"]  # type: ignore[index]
        assert url == "data:image/png;base64," + base64.b64encode(data).decode()
    from_pil = image_part(Image.new("RGB", (3, 2)), detail="low")
    assert from_pil["image_url"]["url"].startswith("data:image/png;base64,")  # type: ignore[index]
    assert from_pil["image_url"]["detail"] == "low"  # type: ignore[index]


def test_urls_pass_through_and_other_objects_are_refused() -> None:
    assert image_part("https://example.com/a.png")["image_url"] == {
        "url": "https://example.com/a.png"
    }
    with pytest.raises(e.InvalidRequest, match="path, bytes or a PIL image"):
        image_part(42)  # type: ignore[arg-type]


def test_media_types_from_the_first_bytes() -> None:
    assert media_type(b"\xff\xd8\xff\xe0rest") == "image/jpeg"
    assert media_type(b"RIFF\0\0\0\0WEBPVP8 ") == "image/webp"
    assert media_type(b"GIF89a...") == "image/gif"
    assert media_type(b"unknown") == "image/*"


def test_user_message_puts_images_before_the_text() -> None:
    message = user_message("what?", png_bytes(), png_bytes("blue"))
    kinds = [part["type"] for part in message["content"]]  # type: ignore[union-attr]
    assert message["role"] == "user" and kinds == ["image_url", "image_url", "text"]


@pytest.fixture(scope="module")
def server(tiny_vlm_dir: Path, tiny_llama_dir: Path) -> Iterator[ThreadedServer]:
    definitions = [define_local(tiny_vlm_dir, VISION), define_local(tiny_llama_dir, CHAT)]
    with ThreadedServer(definitions) as running:
        yield running


def test_sync_client_chats_about_an_image(server: ThreadedServer, tmp_path: Path) -> None:
    path = tmp_path / "cat.png"
    path.write_bytes(png_bytes())
    with SyncClient(server.url) as client:
        reply = client.chat([user_message("what is it?", path)], model=VISION, max_tokens=4)
        assert reply.usage.prompt_tokens > 4 and reply.usage.completion_tokens >= 1
        with pytest.raises(e.InvalidRequest, match="does not accept image parts"):
            client.chat([user_message("what is it?", path)], model=CHAT, max_tokens=4)


async def test_async_client_streams_about_a_pil_image(server: ThreadedServer) -> None:
    async with Client(server.url) as client:
        message = user_message("what is it?", Image.new("RGB", (40, 40), "green"))
        stream = client.chat([message], model=VISION, max_tokens=5, temperature=0, stream=True)
        pieces = [piece async for piece in stream]
        whole = await client.chat([message], model=VISION, max_tokens=5, temperature=0)
        assert "".join(p for p in pieces if isinstance(p, str)) == whole.text
