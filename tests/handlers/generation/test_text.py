"""Incremental detokenisation and stop strings, engine-neutral (no tokenizer library needed)."""

from __future__ import annotations

from collections.abc import Sequence

from localinfer.handlers.generation.text import IncrementalDecoder, StopStringFilter


# a byte-level toy vocabulary: each id is one UTF-8 byte, as byte-fallback tokenizers do
def _bytes_decode(ids: Sequence[int]) -> str:
    return bytes(ids).decode("utf-8", errors="replace")


def test_decoder_holds_back_an_incomplete_character() -> None:
    decoder = IncrementalDecoder(_bytes_decode)
    euro = "€".encode()  # three bytes
    assert decoder.push(ord("a")) == "a"
    assert decoder.push(euro[0]) == ""
    assert decoder.push(euro[1]) == ""
    assert decoder.push(euro[2]) == "€"
    assert decoder.flush() == ""


def test_decoder_flush_releases_the_incomplete_tail() -> None:
    decoder = IncrementalDecoder(_bytes_decode)
    decoder.push("é".encode()[0])
    assert decoder.flush() == "\ufffd"


def test_stop_string_split_across_pieces_is_never_released() -> None:
    stops = StopStringFilter(["END"])
    out = [stops.push(piece) for piece in ["hello E", "N", "D and more"]]
    assert "".join(out) == "hello "
    assert stops.matched
    assert stops.released == "hello "
    assert stops.flush() == ""


def test_a_held_back_prefix_that_does_not_complete_is_released() -> None:
    stops = StopStringFilter(["END"])
    assert stops.push("x EN") == "x "
    assert stops.push("Z") == "ENZ"
    assert not stops.matched


def test_flush_releases_the_tail_when_generation_ends() -> None:
    stops = StopStringFilter(["</s>"])
    assert stops.push("done </") == "done "
    assert stops.flush() == "</"


def test_earliest_of_several_stop_strings_wins() -> None:
    stops = StopStringFilter(["bb", "a"])
    assert stops.push("xxbbya") == "xx"
