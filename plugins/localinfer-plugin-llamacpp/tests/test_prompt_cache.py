"""The prompt cache's bookkeeping: what it keeps, what it gives back, what it drops."""

from __future__ import annotations

from localinfer_llamacpp.prompt_cache import PromptCache


def state(size: int) -> bytearray:
    return bytearray(size)


def test_the_entry_sharing_most_with_a_prompt_is_taken_out() -> None:
    cache = PromptCache(1000)
    cache.put([1, 2, 3, 4], state(10))
    cache.put([1, 2, 9, 9, 9], state(10))
    taken = cache.take([1, 2, 9, 9, 5], better_than=2)
    assert taken is not None
    entry, length = taken
    assert entry.tokens == [1, 2, 9, 9, 9] and length == 4
    assert len(cache) == 1 and cache.size_bytes == 10  # it went back to a slot
    assert cache.restored == 1


def test_nothing_is_taken_that_a_slot_gives_already() -> None:
    cache = PromptCache(1000)
    cache.put([1, 2, 3, 4], state(10))
    assert cache.take([1, 2, 3, 7], better_than=3) is None
    assert cache.take([5, 6], better_than=0) is None
    assert len(cache) == 1


def test_a_long_entry_is_not_spent_on_a_prompt_that_needs_little_of_it() -> None:
    cache = PromptCache(1000)
    cache.put(list(range(100)), state(10))
    assert cache.take([0, 1, 2, 99], better_than=0) is None  # 3 of 100 tokens
    assert cache.take([*range(30), -1], better_than=0) is not None


def test_the_oldest_entries_go_first_to_stay_within_the_limit() -> None:
    cache = PromptCache(25)
    cache.put([1], state(10))
    cache.put([2], state(10))
    cache.put([3], state(10))
    assert len(cache) == 2 and cache.size_bytes == 20
    assert cache.take([1, 0], better_than=0) is None
    assert cache.take([3, 0], better_than=0) is not None


def test_an_entry_holding_another_replaces_it_and_is_not_saved_twice() -> None:
    cache = PromptCache(1000)
    cache.put([1, 2], state(10))
    cache.put([1, 2, 3, 4], state(20))  # the conversation went on
    assert len(cache) == 1 and cache.size_bytes == 20
    assert cache.holds([1, 2, 3]) and cache.holds([1, 2, 3, 4])
    assert not cache.holds([1, 2, 3, 4, 5])


def test_an_entry_larger_than_the_cache_and_a_cache_of_zero_keep_nothing() -> None:
    assert not PromptCache(5).put([1], state(10))
    off = PromptCache(0)
    assert not off.put([1], state(1))
    assert len(off) == 0 and off.take([1, 2], better_than=0) is None


def test_usage_reports_bytes_limit_and_entries() -> None:
    cache = PromptCache(25)
    assert cache.usage() == {"bytes": 0, "limit_bytes": 25, "entries": 0}
    cache.put([1], state(10))
    cache.put([2], state(10))
    cache.put([3], state(10))  # the oldest goes
    assert cache.usage() == {"bytes": 20, "limit_bytes": 25, "entries": 2}
