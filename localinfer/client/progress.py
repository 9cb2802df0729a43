"""Download progress: an updating bar in Jupyter, one rewritten line on a terminal.

In a notebook the bar is an HTML ``<progress>`` element updated in place through a
display handle, so it needs neither ipywidgets nor tqdm.
"""

from __future__ import annotations

import html
import importlib
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol

from localinfer.client.results import Download

#: how often the bar is redrawn at most (a download reports far more often)
_REDRAW_S = 0.1


class ProgressReporter(Protocol):
    def update(self, download: Download) -> None: ...

    def close(self, download: Download | None) -> None: ...


def human_bytes(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(count) < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} GB"  # pragma: no cover - the loop returns


def describe(download: Download) -> str:
    done = human_bytes(download.downloaded_bytes)
    if download.total_bytes:
        fraction = download.fraction or 0.0
        return f"{download.model}: {done} / {human_bytes(download.total_bytes)} ({fraction:.0%})"
    return f"{download.model}: {done} {download.status}".rstrip()


def in_notebook() -> bool:
    """True inside a Jupyter kernel (not in plain IPython or a script)."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    get_ipython = getattr(shell, "get_ipython", None)
    ip = get_ipython() if callable(get_ipython) else None
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


class NotebookBar:
    def __init__(self) -> None:
        display = importlib.import_module("IPython.display")
        self._html: Any = display.HTML
        self._handle: Any = display.display(self._html(""), display_id=True)
        self._drawn = 0.0

    def _render(self, download: Download) -> str:
        value = "" if download.fraction is None else f' value="{download.fraction:.4f}"'
        return (
            f'<progress max="1"{value} style="width: 40ex"></progress> '
            f"<code>{html.escape(describe(download))}</code>"
        )

    def update(self, download: Download) -> None:
        now = time.monotonic()
        if now - self._drawn >= _REDRAW_S and self._handle is not None:
            self._handle.update(self._html(self._render(download)))
            self._drawn = now

    def close(self, download: Download | None) -> None:
        if download is not None and self._handle is not None:
            self._handle.update(self._html(self._render(download)))


class TerminalLine:
    def __init__(self) -> None:
        self._drawn = 0.0

    def update(self, download: Download) -> None:
        now = time.monotonic()
        if now - self._drawn >= _REDRAW_S:
            sys.stderr.write("\r" + describe(download)[:120].ljust(60))
            sys.stderr.flush()
            self._drawn = now

    def close(self, download: Download | None) -> None:
        if download is not None:
            sys.stderr.write("\r" + describe(download)[:120].ljust(60))
        sys.stderr.write("\n")
        sys.stderr.flush()


class CallbackReporter:
    def __init__(self, callback: Callable[[Download], None]):
        self._callback = callback

    def update(self, download: Download) -> None:
        self._callback(download)

    def close(self, download: Download | None) -> None:
        if download is not None:
            self._callback(download)


class SilentReporter:
    def update(self, download: Download) -> None:
        pass

    def close(self, download: Download | None) -> None:
        pass


Progress = bool | Callable[[Download], None]


def reporter_for(progress: Progress) -> ProgressReporter:
    """``True``: a bar fit for where we run; a callable: called with each update."""
    if callable(progress):
        return CallbackReporter(progress)
    if not progress:
        return SilentReporter()
    return NotebookBar() if in_notebook() else TerminalLine()
