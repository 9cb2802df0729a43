"""Each decode's thread count, chosen by timing decodes as they run."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

from llamacpp_support import ask, load_handler
from llamacpp_support import run as answer
from localinfer_llamacpp.handler import LlamaCppChatHandler
from localinfer_llamacpp.model import ContextSettings, thread_counts
from localinfer_llamacpp.threads import TRIAL_EVERY, ThreadChoice


def run(
    choice: ThreadChoice, steps: int, seconds: Callable[[int], float], tokens: int = 1
) -> list[int]:
    """``steps`` decodes of ``tokens`` tokens, each taking ``seconds(threads)``; the counts used."""
    used = []
    for _ in range(steps):
        threads = choice.for_step(tokens)
        choice.record(tokens, threads, seconds(threads))
        used.append(threads)
    return used


def quiet(threads: int) -> float:  # every core is the fastest
    return {1: 0.012, 2: 0.007}[threads]


def loaded(threads: int) -> float:  # other processes want the cores: the spinning pair crawls
    return {1: 0.2, 2: 1.5}[threads]


def test_candidates_start_safe_and_a_fixed_count_is_kept() -> None:
    assert thread_counts(ContextSettings(), 2) == ((1, 2), (1, 2))
    assert thread_counts(ContextSettings(), 1) == ((1,), (1,))
    assert thread_counts(ContextSettings(n_threads=2), 8) == ((2,), (2,))
    assert thread_counts(ContextSettings(n_threads=1, n_threads_batch=2), 8) == ((1,), (2,))
    fixed = ThreadChoice((3,), (4,))
    assert set(run(fixed, 50, lambda t: 1.0)) == {3}
    assert set(run(fixed, 50, lambda t: 1.0, tokens=4)) == {4}


def test_a_quiet_machine_moves_to_every_core_after_one_trial() -> None:
    choice = ThreadChoice((1, 2), (1, 2))
    used = run(choice, 200, quiet)
    assert used[0] == 1 and used[1] == 2  # the first trial follows the first decode
    assert choice.chosen(1) == 2
    assert used[-100:].count(1) <= 100 // TRIAL_EVERY + 3  # only trials of the slower count


def test_under_load_a_losing_trial_ends_at_once_and_comes_ever_more_rarely() -> None:
    choice = ThreadChoice((1, 2), (1, 2))
    used = run(choice, 2000, loaded)
    assert choice.chosen(1) == 1
    trials = [i for i, threads in enumerate(used) if threads == 2]
    assert len(trials) <= 8  # each lost trial is one decode, and the gaps double
    gaps = [b - a for a, b in itertools.pairwise(trials)]
    assert gaps == sorted(gaps)


def test_a_change_of_load_is_followed_and_kinds_of_step_learn_apart() -> None:
    choice = ThreadChoice((1, 2), (1, 2))
    run(choice, 300, quiet)
    assert choice.chosen(1) == 2 and choice.chosen(4) == 1  # batches not measured yet
    run(choice, 300, loaded)
    assert choice.chosen(1) == 1
    run(choice, 3000, quiet)
    assert choice.chosen(1) == 2


class Alternating(ThreadChoice):
    """One thread, then two, then one...: every switch the measured choice could make."""

    def __init__(self) -> None:
        super().__init__((1, 2), (1, 2))
        self.used: list[int] = []

    def for_step(self, tokens: int) -> int:
        self.used.append(1 + len(self.used) % 2)
        return self.used[-1]

    def record(self, tokens: int, threads: int, seconds: float) -> None:
        pass


def test_switching_thread_counts_changes_no_token(handler: LlamaCppChatHandler, gguf: Path) -> None:
    request = ask("Name three rivers.", max_new_tokens=12)  # cold: no other test sends it
    fixed = answer(handler, request)[0]  # one thread throughout
    switching = load_handler(gguf, n_threads=None)
    try:
        assert switching.batcher is not None
        choice = Alternating()
        switching.batcher.threads = choice
        alternated = answer(switching, request)[0]
    finally:
        switching.close()
    assert {1, 2} <= set(choice.used)
    assert alternated.result.text == fixed.result.text
    assert alternated.result.completion_tokens == fixed.result.completion_tokens


def test_a_rare_kind_of_step_is_tried_again_by_decodes_of_every_kind() -> None:
    choice = ThreadChoice((1, 2), (1, 2))

    def requests(count: int, seconds: Callable[[int], float]) -> None:
        for _ in range(count):  # a prompt, then a hundred one-token decodes
            run(choice, 1, seconds, tokens=40)
            run(choice, 100, seconds)

    requests(10, loaded)
    assert choice.chosen(40) == 1
    requests(40, quiet)  # 40 prompts: counted alone, the next trial would be 48+ away
    assert choice.chosen(40) == 2 and choice.chosen(1) == 2
