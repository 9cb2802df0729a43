"""Image bytes to a bounded RGB picture: what a vision handler is handed.

Decoding is CPU work: callers on an event loop run it in a thread
(:func:`localinfer.server.image_urls.load_image_url` does). The pixel count is read from the
header and checked before any pixel is decoded, so a small file that claims a huge
canvas (a decompression bomb) is refused for the price of its header.
"""

from __future__ import annotations

import io
import warnings
from typing import TYPE_CHECKING

from localinfer.errors import InvalidRequest

if TYPE_CHECKING:
    from PIL.Image import Image


def decode_image(data: bytes, *, max_pixels: int, max_side: int, param: str = "messages") -> Image:
    """The first frame of ``data`` as RGB, its longer side at most ``max_side`` pixels.

    Raises ``InvalidRequest`` for bytes that are no image, and for a canvas larger than
    ``max_pixels``.
    """
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # PIL's own bomb check warns (then raises at 2x); ours below is stricter
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(data)) as probe:  # reads the header only
                width, height = probe.size
                if width * height > max_pixels:
                    raise InvalidRequest(
                        f"the image is {width}x{height} pixels ({width * height:,}); at most "
                        f"{max_pixels:,} are accepted (a decompression bomb guard: "
                        "max_image_pixels)",
                        param=param,
                    )
                probe.seek(0)  # animations: the first frame only
                picture = probe.convert("RGB")  # decodes
    except InvalidRequest:
        raise
    except (
        UnidentifiedImageError,
        PILImage.DecompressionBombError,
        PILImage.DecompressionBombWarning,
    ) as exc:
        raise InvalidRequest(f"the image could not be read: {exc}", param=param) from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # truncated or corrupt data
        raise InvalidRequest(f"the image could not be decoded: {exc}", param=param) from None
    if max(picture.size) > max_side:
        picture.thumbnail((max_side, max_side), PILImage.Resampling.BICUBIC)
    return picture
