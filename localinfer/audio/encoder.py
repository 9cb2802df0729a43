"""ffmpeg encoder processes, one started ahead for each command line in use.

Starting ffmpeg costs about 0.3 s on a loaded two-core machine (loading its libraries),
longer than synthesising a first sentence: a spoken mp3 answer would wait for it. So once
a command has been used, one more process is started for it at once and waits, ready,
blocked on its empty stdin; the next response takes it and starts the next spare.

Processes are plain :class:`subprocess.Popen` objects with non-blocking pipes, waited
on through :func:`anyio.wait_readable` / :func:`anyio.wait_writable`: a spare started
under one event loop serves a request on another (tests, notebooks, ``Engine``). A spare
outlives no one: the pool kills its spares at exit, and a spare whose parent dies reads
end-of-file on stdin and exits.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import subprocess
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence

import anyio

#: how many command lines keep a spare (formats x sample rates in use)
MAX_SPARES = 8
_READ_SIZE = 64 * 1024
_STDERR_TAIL = 300


class EncoderProcess:
    """One ffmpeg process: raw samples in on stdin, encoded bytes out of stdout."""

    def __init__(self, command: Sequence[str]) -> None:
        self.process = subprocess.Popen(
            list(command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.process.stdin and self.process.stdout and self.process.stderr
        self._stdin = self.process.stdin.fileno()
        self._stdout = self.process.stdout.fileno()
        for fd in (self._stdin, self._stdout, self.process.stderr.fileno()):
            os.set_blocking(fd, False)

    async def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._stdin, view) :]
            except BlockingIOError:
                await anyio.wait_writable(self._stdin)

    def close_stdin(self) -> None:
        assert self.process.stdin is not None
        with contextlib.suppress(OSError):
            self.process.stdin.close()

    async def output(self) -> AsyncIterator[bytes]:
        """What ffmpeg writes, as it writes it, until it closes stdout."""
        while True:
            try:
                data = os.read(self._stdout, _READ_SIZE)
            except BlockingIOError:
                await anyio.wait_readable(self._stdout)
                continue
            if not data:
                return
            yield data

    async def wait(self) -> int:
        """The exit status, once stdout has closed (the process is ending)."""
        while (code := self.process.poll()) is None:
            await anyio.sleep(0.005)
        return code

    def stderr_tail(self) -> bytes:
        assert self.process.stderr is not None
        try:
            return (self.process.stderr.read() or b"")[-_STDERR_TAIL:]
        except (BlockingIOError, ValueError):
            return b""

    def kill(self) -> None:
        """Stop the process now and reap it (at once: it was killed)."""
        if self.process.poll() is None:
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


class SparePool:
    """At most one spare :class:`EncoderProcess` per command line, the last
    :data:`MAX_SPARES` command lines used."""

    def __init__(self, max_commands: int = MAX_SPARES) -> None:
        self.max_commands = max_commands
        self._spares: OrderedDict[tuple[str, ...], EncoderProcess] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, command: Sequence[str]) -> EncoderProcess:
        """A process for ``command``, started earlier if one is spare; a spare for the next
        caller is started before returning."""
        key = tuple(command)
        with self._lock:
            spare = self._spares.pop(key, None)
        if spare is None or spare.process.poll() is not None:
            if spare is not None:
                spare.kill()
            spare = EncoderProcess(key)
        self._keep(key, EncoderProcess(key))
        return spare

    def _keep(self, key: tuple[str, ...], process: EncoderProcess) -> None:
        evicted: list[EncoderProcess] = []
        with self._lock:
            if key in self._spares:
                evicted.append(self._spares.pop(key))
            self._spares[key] = process
            while len(self._spares) > self.max_commands:
                evicted.append(self._spares.popitem(last=False)[1])
        for process in evicted:
            process.kill()

    def close(self) -> None:
        """Kill every spare (at exit; a later :meth:`take` starts afresh)."""
        with self._lock:
            spares = list(self._spares.values())
            self._spares.clear()
        for spare in spares:
            spare.kill()

    def __len__(self) -> int:
        return len(self._spares)


#: the process's pool: responses share it whatever their event loop
SPARES = SparePool()
atexit.register(SPARES.close)
