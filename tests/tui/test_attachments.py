"""Images read from a typed path: each mistake is an AttachmentError that says what."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from localinfer.tui.attachments import AttachmentError, read_image
from tests.tui.canned import PIXEL_URL


def pixel(tmp_path: Path) -> Path:
    path = tmp_path / "pixel.png"
    path.write_bytes(base64.b64decode(PIXEL_URL.partition(",")[2]))
    return path


def test_an_image_becomes_a_data_url_part(tmp_path: Path) -> None:
    image = read_image(str(pixel(tmp_path)))
    assert image.name == "pixel.png"
    assert image.url == PIXEL_URL
    assert image.part() == {"type": "image_url", "image_url": {"url": PIXEL_URL}}


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("missing.png", None, "no such file"),
        ("notes.txt", b"hello, not a picture", "not an image"),
        ("empty.png", b"", "not an image"),
        ("folder", "dir", "is not a file"),
    ],
)
def test_a_bad_path_says_why(
    tmp_path: Path, name: str, content: bytes | str | None, reason: str
) -> None:
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(AttachmentError, match=reason):
        read_image(str(path))


def test_a_huge_file_is_refused_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("localinfer.tui.attachments.MAX_FILE_BYTES", 10)
    with pytest.raises(AttachmentError, match="too large"):
        read_image(str(pixel(tmp_path)))
