"""``localinfer tui`` as a person meets it: a real terminal (tmux, 80x24), keys sent, the
pane read back. The app starts its own server with the tiny chat model, each screen is
visited, a chat reply streams in, and ctrl+q leaves a clean terminal (no traceback)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")

ROOT = Path(__file__).resolve().parents[2]


class Pane:
    """One detached tmux session running a command."""

    def __init__(self, command: str, *, width: int = 80, height: int = 24, env: dict[str, str]):
        self.name = f"localinfer-tui-{uuid.uuid4().hex[:8]}"
        self.env = env
        self._tmux("new-session", "-d", "-s", self.name, "-x", str(width), "-y", str(height),
                   command)  # fmt: skip
        self._tmux("set-option", "-t", self.name, "remain-on-exit", "on")

    def _tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", *args], capture_output=True, text=True, env=self.env, check=True, timeout=10
        )
        return done.stdout

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", self.name, *keys)

    def text(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", self.name)

    def wait_for(self, needle: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.text()
            if needle in text:
                return text
            time.sleep(0.2)
        raise AssertionError(f"{needle!r} never showed; the pane:\n{self.text()}")

    def dead(self) -> bool:
        return self._tmux("display-message", "-p", "-t", self.name, "#{pane_dead}").strip() == "1"

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True,
                       env=self.env, check=False)  # fmt: skip


@pytest.fixture
def pane(tiny_llama_dir: Path, tmp_path: Path) -> Iterator[Pane]:
    env = {
        **os.environ,
        "TMUX_TMPDIR": str(tmp_path),  # a tmux server of our own, never the user's
        "TERM": "xterm-256color",
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("TMUX", None)
    log = tmp_path / "tui.log"
    command = " ".join(
        shlex.quote(part)
        for part in (sys.executable, "-m", "localinfer", "tui", "--models", str(tiny_llama_dir),
                     "--device", "cpu", "--log-file", str(log))
    )  # fmt: skip
    running = Pane(f"cd {shlex.quote(str(ROOT))} && {command}; echo EXITED=$?; sleep 60", env=env)
    try:
        yield running
    finally:
        running.close()


def test_every_screen_in_a_real_terminal(pane: Pane, tiny_llama_dir: Path) -> None:
    text = pane.wait_for("local http://127.0.0.1:")
    assert "F2 Models" in text and "F3 Monitor" in text and "F4 Chat" in text
    text = pane.wait_for("Catalog")
    assert "d Download" in text and "^q Quit" in text  # the footer, at 80 columns

    pane.keys("F3")
    text = pane.wait_for("(psutil)")
    assert "Devices" in text and "cores" in text and "tok/s" in text

    pane.keys("F4")
    pane.wait_for("1 chat model(s) loaded")
    pane.keys("H", "e", "l", "l", "o", "Enter")
    text = pane.wait_for("tok/s · ")  # the reply's own line under its box, and the status
    assert f"╭─ {tiny_llama_dir.name}" in text and "first token" in text

    pane.keys("F1")
    pane.wait_for("Everywhere")
    pane.keys("Escape")
    pane.keys("C-q")
    text = pane.wait_for("EXITED=0", timeout=30)
    assert "Traceback" not in text and "Error" not in text
    print(text)
