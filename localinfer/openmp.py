"""How long idle OpenMP threads spin before they sleep: one rule for the whole process.

torch, llama.cpp (llama-cpp-python's ``libggml-cpu``) and CTranslate2 all run their
threads on GNU OpenMP (libgomp), which reads ``OMP_WAIT_POLICY`` and ``GOMP_SPINCOUNT``
once, when it is loaded; torch's copy and llama.cpp's share a soname, so a process loads
only one of them and one setting serves every library in it. A waiting thread spins
``GOMP_SPINCOUNT`` rounds (libgomp's default 300,000, a few milliseconds), then sleeps
on a futex:

- the default spin keeps a thread busy for milliseconds after every parallel region, a
  core the event loop and the other workers need: on a busy 2-core machine torch's
  ``generate`` fell from ~16 to ~0.5 tokens/s (load ~5);
- ``OMP_WAIT_POLICY=PASSIVE`` (no spin at all, what localinfer set before) cures that,
  but llama.cpp meets its threads at an OpenMP barrier after every operation of a
  decode (hundreds per token, microseconds apart), and each one then becomes a futex
  sleep and wake-up: SmolLM2 Q4_1 decoded at 38 tokens/s on two threads instead of
  ~100, slower than on one.

A bounded spin keeps both: a barrier whose partner arrives within ``SPIN_COUNT`` rounds
(tens of microseconds) never sleeps, and a thread left idle gives its core back after
that long. 1000 is the knee of 100-10000 (docs/configuration.md has the numbers):
llama.cpp quiet at ~95% of its spinning speed; under heavy load (load average 10-20 on
two cores) torch and two-thread llama.cpp run at ~0.4-1.3x their passive speed instead of
collapsing 10-30x as with libgomp's default.

Applied on ``import localinfer``, before any handler imports torch or llama_cpp; a
process that loaded libgomp earlier (``import torch`` before ``import localinfer`` in a
notebook) keeps what it read then, and the first model load logs a warning. A user's own
``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` wins: then nothing is set.
"""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping

logger = logging.getLogger(__name__)

#: spin rounds before a waiting OpenMP thread sleeps (chosen by measurement: see above)
SPIN_COUNT = "1000"

#: the variables that decide how OpenMP threads wait; any of them set means the user chose
USER_CHOICES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def apply_defaults(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Bound the spin of waiting OpenMP threads unless the user chose a wait policy;
    returns what was set (for subprocesses that should run on the user's own env)."""
    if any(name in environ for name in USER_CHOICES):
        return {}
    environ["GOMP_SPINCOUNT"] = SPIN_COUNT
    return {"GOMP_SPINCOUNT": SPIN_COUNT}


def libgomp_loaded() -> bool:
    """Whether this process has loaded a libgomp already (Linux; ``False`` elsewhere)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            return any("libgomp" in line for line in maps)
    except OSError:
        return False


#: what :func:`apply_defaults` set on ``import localinfer``
APPLIED: dict[str, str] = {}
#: libgomp was loaded before localinfer set its default, which then does not apply
LOADED_TOO_EARLY = False
_warned = False


def apply_once() -> None:
    """:func:`apply_defaults` on the process's environment, remembering what it did."""
    global LOADED_TOO_EARLY
    if not APPLIED:
        APPLIED.update(apply_defaults())
        LOADED_TOO_EARLY = bool(APPLIED) and libgomp_loaded()


def warn_if_too_late() -> None:
    """Say once that the spin count was set after libgomp had read the environment."""
    global _warned
    if LOADED_TOO_EARLY and not _warned:
        _warned = True
        logger.warning(
            "OpenMP (libgomp) was loaded before localinfer was imported, so its threads "
            "spin for libgomp's default (milliseconds) between operations; set "
            "GOMP_SPINCOUNT=%s (or import localinfer first) to give idle cores back sooner",
            SPIN_COUNT,
        )


def describe(environ: MutableMapping[str, str] = os.environ) -> str:
    """The OpenMP wait settings in force, for benchmark reports."""
    chosen = [f"{name}={environ[name]}" for name in USER_CHOICES if name in environ]
    return " ".join(chosen) or "libgomp's default wait"


def user_environment(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """``environ`` without what :func:`apply_once` set: for a program that is not
    localinfer's (a peer server in a benchmark) to run on its own defaults."""
    return {name: value for name, value in environ.items() if name not in APPLIED}
