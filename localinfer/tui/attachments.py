"""Images attached to the next chat message, read from a path the person typed.

A typo, a folder, a text file or a huge file is an :class:`AttachmentError` with a reason
for the screen, never an exception that reaches the app. The part itself is built by the
client's :func:`~localinfer.client.image_part`, so the TUI sends images exactly as any
other client does; the server still applies its own limits (``max_image_bytes``).
"""

from __future__ import annotations

from pathlib import Path

from localinfer.client.images import image_part, media_type
from localinfer.tui.conversation import Attachment

#: refused before reading: far above any server's default, so only mistakes hit it
MAX_FILE_BYTES = 50 * 1024 * 1024
#: what a server decodes (media_type knows these by their first bytes)
FORMATS = "PNG, JPEG, GIF, BMP or WebP"


class AttachmentError(ValueError):
    """A path that cannot be attached as an image; the message says why."""


def read_image(path: str) -> Attachment:
    """The image at ``path`` as an attachment (blocking file I/O: run it in a worker)."""
    target = Path(path).expanduser()
    try:
        if not target.is_file():
            raise AttachmentError(
                f"{path}: no such file" if not target.exists() else f"{path} is not a file"
            )
        size = target.stat().st_size
        if size > MAX_FILE_BYTES:
            raise AttachmentError(f"{path} is {size:,} bytes: too large for an image")
        data = target.read_bytes()
    except OSError as exc:
        raise AttachmentError(f"cannot read {path}: {exc.strerror or exc}") from None
    if media_type(data) == "image/*":
        raise AttachmentError(f"{path} is not an image ({FORMATS})")
    url = image_part(data)["image_url"]
    assert isinstance(url, dict)
    return Attachment(target.name, str(url["url"]))
