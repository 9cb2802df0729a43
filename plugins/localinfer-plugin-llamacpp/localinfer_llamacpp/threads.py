"""How many threads each decode gets, chosen by measuring decodes as they run.

ggml's threads meet at an OpenMP barrier after every operation of a decode. On a quiet
machine every core is fastest (llama-server uses every core): the barrier's partners
arrive within microseconds, while libgomp spins (``localinfer/openmp.py`` keeps that
spin short but not zero: asleep at every barrier, two threads decoded slower than one).
When other processes (or the server's own event loop) take a core, the thread left at
the barrier waits until its partner is scheduled again: on a two-core machine at a load
average of 7-15 one token took 0.1-0.9 s on two threads and 0.02-0.2 s on one. Which
count wins changes with the machine's load, minute by minute.

So the engine tries both: every decode's wall time is timed per kind of step (one token,
a few tokens, a prompt chunk) and per thread count; each kind runs on the count with the
lower recent time per token, and now and then a few decodes try the other count, so a
change of load is noticed. Trials are spaced by decodes of every kind (a prompt comes
once per request: counted alone, its trials would come hours apart). A trial costs
little whichever way it goes: it starts on the safe count (every core but one), a trial
decode that is clearly slower ends its trial at once, and trials that keep losing come
ever more rarely (under heavy load one decode on every core can take seconds). A fixed
``n_threads`` / ``n_threads_batch`` turns this off.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: a kind of step tries the other count once this many decodes (of any kind) ran since its
#: last trial...
TRIAL_EVERY = 48
#: ...doubled after each lost trial, up to this many...
TRIAL_EVERY_MAX = 3072
#: ...of this many decodes on the other count
TRIAL_LENGTH = 3
#: a trial decode this many times slower per token than the chosen count ends the trial
CLEARLY_SLOWER = 1.5
#: weight of the newest decode in a count's recent time per token
SMOOTHING = 0.3


def step_kind(tokens: int) -> int:
    """0: one token (one sequence generating); 1: up to 8 (sequences together); 2: prompts."""
    return 0 if tokens <= 1 else 1 if tokens <= 8 else 2


@dataclass
class _Kind:
    """One kind of step: its candidate counts, the one it runs on, and each one's recent
    seconds per token."""

    counts: tuple[int, ...]
    chosen: int
    recent: dict[int, float] = field(default_factory=dict)
    #: the engine's decode count when this kind's last trial began
    trial_at: int = 0
    trial_left: int = 0
    trial_every: int = TRIAL_EVERY


class ThreadChoice:
    """Picks the thread count of each decode and learns from its timing.

    ``one`` are the candidates for one-token decodes, ``many`` for decodes of several
    tokens, each the one to start on first; a kind with one candidate is not measured and
    always runs on it.
    """

    def __init__(self, one: tuple[int, ...], many: tuple[int, ...]) -> None:
        one, many = tuple(dict.fromkeys(one)), tuple(dict.fromkeys(many))
        self._kinds = [_Kind(one, one[0]), _Kind(many, many[0]), _Kind(many, many[0])]
        self._decodes = 0

    def for_step(self, tokens: int) -> int:
        """The thread count for a decode of ``tokens`` tokens."""
        kind = self._kinds[step_kind(tokens)]
        if len(kind.counts) == 1:
            return kind.chosen
        if kind.trial_left:
            return self._other(kind)
        untried = [count for count in kind.counts if count not in kind.recent]
        if untried and kind.chosen in kind.recent:
            kind.trial_left = TRIAL_LENGTH
            return untried[0]
        if self._decodes - kind.trial_at >= kind.trial_every:
            kind.trial_at = self._decodes
            kind.trial_left = TRIAL_LENGTH
            other = self._other(kind)
            kind.recent.pop(other, None)  # judged on this trial alone: the load has changed
            return other
        return kind.chosen

    def record(self, tokens: int, threads: int, seconds: float) -> None:
        """A decode of ``tokens`` tokens on ``threads`` threads took ``seconds``."""
        self._decodes += 1
        kind = self._kinds[step_kind(tokens)]
        if len(kind.counts) == 1:
            return
        per_token = seconds / max(1, tokens)
        before = kind.recent.get(threads)
        kind.recent[threads] = (
            per_token if before is None else before + SMOOTHING * (per_token - before)
        )
        if threads == kind.chosen:
            return
        current = kind.recent.get(kind.chosen)
        if current is not None and per_token > CLEARLY_SLOWER * current:
            kind.recent[threads] = max(kind.recent[threads], per_token)  # lost: no second look
            kind.trial_left = 0
        elif kind.trial_left:
            kind.trial_left -= 1
        if not kind.trial_left:
            best = min(kind.recent, key=kind.recent.__getitem__)
            if best == kind.chosen:
                kind.trial_every = min(TRIAL_EVERY_MAX, kind.trial_every * 2)
            else:
                kind.chosen, kind.trial_every = best, TRIAL_EVERY

    def chosen(self, tokens: int) -> int:
        """The count a kind of step runs on now (for logs and tests)."""
        return self._kinds[step_kind(tokens)].chosen

    def _other(self, kind: _Kind) -> int:
        others = [count for count in kind.counts if count != kind.chosen]
        return others[0]
