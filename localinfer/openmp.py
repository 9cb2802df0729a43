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

A server process whose every model runs on llama.cpp gives the spin back to libgomp
(:func:`fit_to_engines`, before any model loads): nothing in it runs Python between
OpenMP regions the way torch does, and served with the short spin its two decode
threads slept at a barrier 1,400-9,600 times per four-stream round (a core idle while
each sleeper is woken): 0.92x llama-server's tokens/s against 1.06x with libgomp's own
spin, what llama-server runs with (docs/benchmarks.md). Under load (two busy processes
on two cores) the long spin made 0.83x of the short one's tokens/s, still several times
llama-server's, since the engine then moves its decodes to one thread.

Applied on ``import localinfer``, before any handler imports torch or llama_cpp; a
process that loaded libgomp earlier (``import torch`` before ``import localinfer`` in a
notebook) keeps what it read then, and the first model load logs a warning. A user's own
``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` wins: then nothing is set.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, MutableMapping

logger = logging.getLogger(__name__)

#: spin rounds before a waiting OpenMP thread sleeps (chosen by measurement: see above)
SPIN_COUNT = "1000"

#: the variables that decide how OpenMP threads wait; any of them set means the user chose
USER_CHOICES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")

#: engines (a model's ``engine`` capability) whose CPU work is OpenMP regions that meet at
#: a barrier every few microseconds with no Python of theirs in between: a process serving
#: only these spins as libgomp would (see :func:`fit_to_engines`)
BARRIER_ENGINES = frozenset({"llama.cpp"})


#: set beside ``GOMP_SPINCOUNT`` when localinfer set it: a localinfer process started by
#: another (a benchmark's server, a worker) inherits localinfer's default, not a user's choice
SET_BY_LOCALINFER = "LOCALINFER_SET_GOMP_SPINCOUNT"


def apply_defaults(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Bound the spin of waiting OpenMP threads unless the user chose a wait policy;
    returns what was set (for subprocesses that should run on the user's own env)."""
    inherited = environ.get(SET_BY_LOCALINFER)
    if inherited is not None and inherited == environ.get("GOMP_SPINCOUNT"):
        del environ["GOMP_SPINCOUNT"]  # a parent localinfer's default: not the user's
    if any(name in environ for name in USER_CHOICES):
        environ.pop(SET_BY_LOCALINFER, None)
        return {}
    environ["GOMP_SPINCOUNT"] = environ[SET_BY_LOCALINFER] = SPIN_COUNT
    return {"GOMP_SPINCOUNT": SPIN_COUNT, SET_BY_LOCALINFER: SPIN_COUNT}


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
#: the short spin was taken back for a process serving only llama.cpp (fit_to_engines)
LONG_SPIN_FOR: tuple[str, ...] = ()
_warned = False
_warned_engines: set[str] = set()


def apply_once() -> None:
    """:func:`apply_defaults` on the process's environment, remembering what it did."""
    global LOADED_TOO_EARLY
    if not APPLIED:
        APPLIED.update(apply_defaults())
        LOADED_TOO_EARLY = bool(APPLIED) and libgomp_loaded()


def fit_to_engines(
    engines: Collection[str | None], environ: MutableMapping[str, str] = os.environ
) -> bool:
    """For a process that only serves models (``localinfer serve``), before any of them
    loads: when every one runs on a :data:`BARRIER_ENGINES` engine, take back the short
    spin that :func:`apply_once` set, so libgomp's own applies (llama-server's); returns
    whether it did. Not when the user chose a wait, nor once libgomp has read the
    environment (it would change nothing)."""
    global LONG_SPIN_FOR
    ours = APPLIED.get("GOMP_SPINCOUNT")
    if ours is None or environ.get("GOMP_SPINCOUNT") != ours:  # not set by us, or changed
        return False
    if not engines or not all(engine in BARRIER_ENGINES for engine in engines):
        return False
    if libgomp_loaded():
        return False
    for name in ("GOMP_SPINCOUNT", SET_BY_LOCALINFER):
        environ.pop(name, None)
        APPLIED.pop(name, None)
    LONG_SPIN_FOR = tuple(sorted({str(engine) for engine in engines}))
    logger.info(
        "every model here runs on %s: its OpenMP threads spin as libgomp's default has "
        "them (as llama-server's do) instead of GOMP_SPINCOUNT=%s; set GOMP_SPINCOUNT "
        "yourself to choose",
        ", ".join(LONG_SPIN_FOR),
        SPIN_COUNT,
    )
    return True


def warn_if_spinning_long(model: str, engine: str | None) -> None:
    """Say once per engine that a model which is not llama.cpp's loaded into a process
    whose spin was fitted to llama.cpp (:func:`fit_to_engines`): its threads then hold
    cores for milliseconds after each parallel region, which on a busy machine can cost
    it most of its speed."""
    name = (engine or "").split(" ")[0]
    if not LONG_SPIN_FOR or name in BARRIER_ENGINES or name in _warned_engines:
        return
    _warned_engines.add(name)
    logger.warning(
        "model %s (%s) loaded into a process whose OpenMP threads spin for libgomp's "
        "default, chosen at start for %s only: under load its threads can slow down "
        "several times; restart with GOMP_SPINCOUNT=%s to share the cores better",
        model,
        engine or "Python",
        ", ".join(LONG_SPIN_FOR),
        SPIN_COUNT,
    )


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
