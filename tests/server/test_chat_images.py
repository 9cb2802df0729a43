"""Images in ``/v1/chat/completions``: a tiny vision model answers, every bad image is a 400."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from tests.support import CHAT, ThreadedServer, define_local

Image = pytest.importorskip("PIL.Image")
VISION = "tiny-vision"


def png_url(size: tuple[int, int] = (48, 32), color: str = "red") -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def with_image(url: str, text: str = "What is in the picture?") -> list[dict[str, object]]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": url}},
                {"type": "text", "text": text},
            ],
        }
    ]


@pytest.fixture(scope="module")
def server(tiny_vlm_dir: Path, tiny_llama_dir: Path) -> Iterator[ThreadedServer]:
    definitions = [define_local(tiny_vlm_dir, VISION), define_local(tiny_llama_dir, CHAT)]
    with ThreadedServer(definitions, max_images=2, max_image_pixels=4_000_000) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: ThreadedServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as c:
        yield c


def test_a_vision_model_answers_about_an_image(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=VISION,
        messages=with_image(png_url()),
        max_tokens=6,
        temperature=0,  # type: ignore[arg-type]
    )
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage is not None and reply.usage.prompt_tokens > 4


def test_a_vision_reply_streams_like_text_chat(client: openai.OpenAI) -> None:
    kwargs = {"model": VISION, "messages": with_image(png_url()), "max_tokens": 8, "temperature": 0}
    whole = client.chat.completions.create(**kwargs)  # type: ignore[call-overload]
    stream = client.chat.completions.create(**kwargs, stream=True)  # type: ignore[call-overload]
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == whole.choices[0].message.content


def test_text_only_messages_still_work_on_a_vision_model(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=VISION, messages=[{"role": "user", "content": "hi"}], max_tokens=3
    )
    assert reply.usage is not None and reply.usage.completion_tokens >= 1


def test_eight_concurrent_image_requests_all_answer(server: ThreadedServer) -> None:
    def one(i: int) -> int:
        body = {
            "model": VISION,
            "messages": with_image(png_url(color=("red", "blue")[i % 2])),
            "max_tokens": 4,
        }
        return httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=120).status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(one, range(8))) == [200] * 8


def _bomb() -> str:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    header = struct.pack(">IIBBBBB", 60_000, 60_000, 1, 0, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0"))
    return "data:image/png;base64," + base64.b64encode(data + chunk(b"IEND", b"")).decode()


@pytest.mark.parametrize(
    ("model", "messages", "message"),
    [
        (CHAT, with_image(png_url()), "does not accept image parts"),
        (VISION, with_image("https://example.com/cat.png"), "remote image URLs are turned off"),
        (VISION, with_image("http://127.0.0.1:1/cat.png"), "remote image URLs are turned off"),
        (VISION, with_image("file:///etc/passwd"), "file: image URLs are never read"),
        (VISION, with_image("data:image/png;base64,!!not*base64"), "not valid base64"),
        (VISION, with_image("data:image/png;base64,aGVsbG8="), "could not be read"),
        (VISION, with_image(_bomb()), "decompression bomb"),
        (VISION, with_image(png_url()) * 3, "3 images; at most 2 per request (max_images)"),
    ],
)
def test_bad_images_are_400s_that_say_why(
    server: ThreadedServer, model: str, messages: list[dict[str, object]], message: str
) -> None:
    body = {"model": model, "messages": messages, "max_tokens": 4}
    reply = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=60)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert message in error["message"] and error["param"] == "messages"
    assert error["type"] == "invalid_request_error"
