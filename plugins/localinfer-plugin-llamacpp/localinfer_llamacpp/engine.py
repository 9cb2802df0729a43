"""Continuous batching over one llama.cpp context: the loop that steps every sequence at once.

Like llama.cpp's ``tools/server``: a fixed set of slots (sequence ids) shares one context,
each slot with its own stream of the KV cache (see :mod:`~localinfer_llamacpp.model`).
Each step puts the last sampled token of every generating sequence, and as many prompt
tokens of newly admitted ones as fit, into one ``llama_batch``; one ``llama_decode`` runs
them all; each sequence's own C sampler chain then picks its next token from its row of
the logits. Sequences join and leave between steps.

Prompts already seen are not prefilled again. A slot keeps the KV cells of the tokens it
last held, so a new prompt that starts the same way (a system prompt, a continued
conversation) is placed in the slot that shares the longest prefix with it, or gets a
copy of another slot's cells when that one (busy or not) shares a much longer prefix
(``llama_memory_seq_cp``); a slot given to a different prompt first saves its cells in
the host-memory :class:`~localinfer_llamacpp.prompt_cache.PromptCache`, from which a
later prompt that shares more with them gets them back. Only the rest is prefilled.

The handler's worker thread only queues (:meth:`BatchedEngine.submit`); the engine's own
thread owns the context. Text goes out through
:class:`~localinfer.handlers.generation.sequence.Generation` (incremental decode, stop
strings, counts and timings), exactly as from the transformers engines.
"""

from __future__ import annotations

import collections
import ctypes
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field

from localinfer.errors import HandlerFailed
from localinfer.handlers.crossing import emits_together
from localinfer.handlers.generation.sequence import Generation
from localinfer_llamacpp.model import GgufModel
from localinfer_llamacpp.prompt_cache import PromptCache, common_prefix
from localinfer_llamacpp.sampling import SamplerChain
from localinfer_llamacpp.threads import ThreadChoice

logger = logging.getLogger(__name__)

#: another slot's cells are copied (a whole KV stream) only when they spare at least this
#: many more prompt tokens than the slot's own
COPY_WORTH_TOKENS = 64
#: a sequence is moved down into a gap between busy slots (a whole KV stream copied, a few
#: milliseconds) only while it may still generate this many tokens: each step with the gap
#: costs one more pass of the model (about a tenth of a step with four sequences)
MOVE_WORTH_TOKENS = 16


@dataclass(eq=False)
class Slot:
    """A sequence id of the context and the tokens whose KV cells it holds (position = index)."""

    seq_id: int
    tokens: list[int] = field(default_factory=list)
    sequence: Sequence | None = None
    last_used: float = 0.0


@dataclass(eq=False)
class Sequence:
    """A request being generated: its progress, its sampler, its prompt and where it stands."""

    generation: Generation
    sampler: SamplerChain
    prompt: list[int]
    slot: Slot | None = None
    #: prompt tokens whose KV cells the slot holds (reused or prefilled)
    prefilled: int = 0
    #: the token sampled last, fed to the next decode
    next_token: int | None = None
    #: prompt tokens taken from the cache instead of prefilled
    reused: int = 0


class BatchedEngine:
    """Owns a :class:`GgufModel` context and steps up to ``slots`` sequences together."""

    def __init__(self, model: GgufModel) -> None:
        self.model = model
        self.lib = model.lib
        self.slots = [Slot(seq_id) for seq_id in range(model.settings.n_seq)]
        self.n_batch = model.settings.n_batch
        self._batch = self.lib.llama_batch_init(self.n_batch, 0, 1)
        self._arrivals: collections.deque[Sequence] = collections.deque()
        self._waiting: collections.deque[Sequence] = collections.deque()
        self._active: list[Sequence] = []
        self._wake = threading.Condition()
        #: each decode's thread count, measured as it runs (see threads.py)
        self.threads = ThreadChoice(*model.thread_counts)
        self._threads_set = 0
        self._closing = False
        #: cells of prompts whose slot went to another prompt (see the module's docstring)
        self.cache = PromptCache(model.settings.prompt_cache_mib * 2**20)
        #: slots given a copy of another's cells, which llama.cpp makes at the next decode
        self._copy_pending: set[int] = set()
        #: prompt tokens reused from the cache, and decodes run, over the engine's life
        self.reused_tokens = 0
        self.decodes = 0
        #: sequences moved down into a gap between busy slots (_close_gap)
        self.moves = 0
        self._thread = threading.Thread(target=self._run, name="localinfer:llama-cpp", daemon=True)
        self._thread.start()

    @property
    def max_in_flight(self) -> int:
        return len(self.slots)

    def submit(self, generation: Generation, sampler: SamplerChain) -> None:
        """Queue a request for the engine's thread and return at once."""
        self.submit_all([(generation, sampler)])

    def submit_all(self, requests: list[tuple[Generation, SamplerChain]]) -> None:
        """Queue requests that arrived together in one go, so that their prompts are
        prefilled in one decode (as llama-server does) rather than the first alone while
        the others wait behind it."""
        sequences = [Sequence(g, sampler, list(g.prompt_ids)) for g, sampler in requests]
        with self._wake:
            if self._closing:
                for sequence in sequences:
                    sequence.sampler.close()
                raise HandlerFailed("the llama.cpp engine has stopped")
            self._arrivals.extend(sequences)
            self._wake.notify()

    def close(self) -> None:
        """Stop the loop; requests still in flight fail (the model is going away)."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout=30)
        left = [*self._active, *self._waiting, *self._arrivals]
        self._active, self._waiting, self._arrivals = [], collections.deque(), collections.deque()
        for sequence in left:
            sequence.sampler.close()
            if not sequence.generation.item.done:
                sequence.generation.item.fail(
                    HandlerFailed("the model was unloaded before this request ended")
                )
        if self._batch is not None:
            self.lib.llama_batch_free(self._batch)
            self._batch = None

    # -- the engine's thread --------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._wake:
                while not (self._closing or self._arrivals or self._active or self._waiting):
                    self._wake.wait()
                if self._closing:
                    return
                self._waiting.extend(self._arrivals)
                self._arrivals.clear()
            try:
                with emits_together():  # the step's tokens reach the loop in one wakeup
                    self._admit()
                    self._close_gap()
                    if self._active:
                        self._step()
            except Exception as exc:  # the context is in an unknown state: fail what runs
                logger.exception("llama.cpp engine step failed")
                for sequence in list(self._active):
                    self._end(sequence, failure=exc)

    def _admit(self) -> None:
        """Move waiting requests into free slots (the cancelled ones end here)."""
        if any(sequence.generation.item.cancelled for sequence in self._waiting):
            for sequence in [s for s in self._waiting if s.generation.item.cancelled]:
                self._waiting.remove(sequence)
                self._end(sequence)
        while self._waiting:
            free = [slot for slot in self.slots if slot.sequence is None]
            if not free:
                return
            sequence = self._waiting.popleft()
            self._place(sequence, free)
            sequence.generation.start()
            self._active.append(sequence)

    def _place(self, sequence: Sequence, free: list[Slot]) -> None:
        """Give ``sequence`` the free slot whose cached tokens share the most with its
        prompt (on a tie: the one that leaves no gap between busy slots, then the least
        recently used), reusing those cells, or the cells of a longer shared prefix held
        by any slot or by the prompt cache."""
        prompt = sequence.prompt
        limit = len(prompt) - 1  # the last prompt token is decoded: its logits start generation
        busy = [s.seq_id for s in self.slots if s.sequence is not None]
        # between slots that share as much with the prompt, one next to the busy ones: each
        # gap between busy sequence ids costs every step one more pass of the model (_step)
        slot = max(
            free,
            key=lambda s: (
                common_prefix(s.tokens, prompt),
                -passes([*busy, s.seq_id]),
                -s.last_used,
            ),
        )
        own = min(common_prefix(slot.tokens, prompt), limit)
        donor, shared = slot, own
        for other in self.slots:
            if other is not slot:
                length = min(common_prefix(other.tokens, prompt), limit)
                if length >= shared + COPY_WORTH_TOKENS:
                    donor, shared = other, length
        settled = slot.seq_id not in self._copy_pending  # its cells are what it says
        cached = self.cache.take(prompt, shared) if settled else None
        if cached is not None:
            shared = min(cached[1], limit)
        kept = own if cached is None and donor is slot else 0
        if settled and slot.tokens and kept < len(slot.tokens) / 2:
            self._save(slot)
        memory = self.model.memory
        if cached is not None:
            if not self._restore(slot, cached[0].state):
                shared = 0  # prefilled whole: the cut below empties the slot
        elif donor is not slot:  # streams are copied whole (at the next decode), then cut
            self.lib.llama_memory_seq_cp(memory, donor.seq_id, slot.seq_id, -1, -1)
            self._copy_pending.add(slot.seq_id)
        self.lib.llama_memory_seq_rm(memory, slot.seq_id, shared, -1)
        slot.tokens = prompt[:shared]
        slot.sequence = sequence
        sequence.slot = slot
        sequence.prefilled = sequence.reused = shared
        self.reused_tokens += shared

    def _close_gap(self) -> None:
        """Move the sequence in the highest busy slot down into a free slot below it, if
        one is free there: llama.cpp runs the model once per run of consecutive sequence
        ids (:func:`passes`), so a sequence that ended between two busy ones costs every
        later step a pass until a new request fills its slot. One move per step (a KV
        stream is copied whole, at the next decode); only a generating sequence with
        :data:`MOVE_WORTH_TOKENS` left, between slots whose cells are settled."""
        busy = [slot for slot in self.slots if slot.sequence is not None]
        if passes([slot.seq_id for slot in busy]) < 2:
            return
        top = max(busy, key=lambda slot: slot.seq_id)
        hole = min(
            (slot for slot in self.slots if slot.sequence is None), key=lambda slot: slot.seq_id
        )
        sequence = top.sequence
        assert sequence is not None
        generation = sequence.generation
        left = generation.request.max_new_tokens - generation.completion_tokens
        pending = {top.seq_id, hole.seq_id} & self._copy_pending
        if sequence.next_token is None or left < MOVE_WORTH_TOKENS or pending:
            return
        if hole.tokens:
            self._save(hole)  # what it held may start a later prompt
        memory = self.model.memory
        self.lib.llama_memory_seq_rm(memory, hole.seq_id, -1, -1)
        self.lib.llama_memory_seq_cp(memory, top.seq_id, hole.seq_id, -1, -1)
        # both streams are in flux until the copy is made: nothing reads or restores them
        self._copy_pending.update((hole.seq_id, top.seq_id))
        hole.tokens, hole.sequence, sequence.slot = list(top.tokens), sequence, hole
        top.sequence, top.last_used = None, time.monotonic()
        self.moves += 1

    def _save(self, slot: Slot) -> None:
        """Copy a slot's cells into the prompt cache (unless it holds them already)."""
        if not self.cache.limit_bytes or self.cache.holds(slot.tokens):
            return
        ctx = self.model.ctx
        size = int(self.lib.llama_state_seq_get_size(ctx, slot.seq_id))
        if not 0 < size <= self.cache.limit_bytes:
            return
        state = bytearray(size)
        view = (ctypes.c_uint8 * size).from_buffer(state)
        written = int(self.lib.llama_state_seq_get_data(ctx, view, size, slot.seq_id))
        del view  # the bytearray is exported while a view exists
        if written <= 0:
            return
        self.cache.put(slot.tokens, state if written == size else state[:written])

    def _restore(self, slot: Slot, state: bytearray) -> bool:
        """Put saved cells back into a slot; whether llama.cpp took them all."""
        view = (ctypes.c_uint8 * len(state)).from_buffer(state)
        read = int(self.lib.llama_state_seq_set_data(self.model.ctx, view, len(state), slot.seq_id))
        del view
        if read != len(state):
            logger.warning("llama.cpp did not take back %d cached bytes; prefilling", len(state))
        return read == len(state)

    def _step(self) -> None:
        """One decode: every generating sequence's next token and, as far as they fit,
        prompt chunks of the sequences being prefilled, in sequence-id order."""
        for sequence in list(self._active):
            if sequence.generation.item.cancelled:
                self._end(sequence)
        if not self._active:
            return
        # what each sequence feeds: its last sampled token, or the next chunk of its prompt
        # (as many prompt tokens as fit after every sequence's one token)
        feeds: list[tuple[Sequence, list[int], bool]] = []  # + whether it is being prefilled
        count = 0
        for sequence in self._active:
            if sequence.next_token is not None:
                feeds.append((sequence, [sequence.next_token], False))
                count += 1
        for sequence in self._active:
            if count >= self.n_batch:
                break
            if sequence.next_token is not None or sequence.prefilled >= len(sequence.prompt):
                continue
            start = sequence.prefilled
            chunk = sequence.prompt[start : start + self.n_batch - count]
            feeds.append((sequence, chunk, True))
            count += len(chunk)
        # one KV stream per sequence: llama.cpp runs a batch in one pass only while its
        # sequence ids come in consecutive order (llama_batch_allocr::split_equal), and one
        # more pass of the whole model for every break; slots are taken in any order
        feeds.sort(key=lambda feed: _seq_id(feed[0]))
        batch = self._batch
        index = 0
        rows: list[tuple[Sequence, int]] = []
        fed: list[tuple[Slot, list[int]]] = []
        for sequence, tokens, prefilling in feeds:
            slot = sequence.slot
            assert slot is not None
            # logits for a generating token, and for the last prompt token: it starts generation
            last = not prefilling or sequence.prefilled + len(tokens) == len(sequence.prompt)
            position = len(slot.tokens)
            for offset, token in enumerate(tokens):
                final = last and offset == len(tokens) - 1
                self._add(batch, index, token, position + offset, slot.seq_id, final)
                index += 1
            if last:
                rows.append((sequence, index - 1))
            if prefilling:
                sequence.prefilled += len(tokens)
            fed.append((slot, tokens))
        batch.n_tokens = count
        threads = self.threads.for_step(count)
        if threads != self._threads_set:  # llama.cpp takes n_threads for one token, else _batch
            self.lib.llama_set_n_threads(self.model.ctx, threads, threads)
            self._threads_set = threads
        started = time.perf_counter()
        status = self.lib.llama_decode(self.model.ctx, batch)
        self.threads.record(count, threads, time.perf_counter() - started)
        self.decodes += 1
        self._copy_pending.clear()  # made by this decode, whether it succeeded or not
        if status != 0:
            self._recover(status, fed)
            return
        for slot, tokens in fed:
            slot.tokens.extend(tokens)
        ctx = self.model.ctx
        for sequence, row in rows:
            token = sequence.sampler.sample(ctx, row)
            sequence.next_token = token
            if sequence.generation.on_token(token):
                self._end(sequence)

    def _add(
        self, batch: object, index: int, token: int, pos: int, seq_id: int, logits: bool
    ) -> None:
        batch.token[index] = token  # type: ignore[attr-defined]
        batch.pos[index] = pos  # type: ignore[attr-defined]
        batch.n_seq_id[index] = 1  # type: ignore[attr-defined]
        batch.seq_id[index][0] = seq_id  # type: ignore[attr-defined]
        batch.logits[index] = logits  # type: ignore[attr-defined]

    def _recover(self, status: int, fed: list[tuple[Slot, list[int]]]) -> None:
        """A decode failed: its sequences fail, their cells are dropped; the engine goes on.

        Each request was checked to fit its sequence's cells, so this is llama.cpp
        refusing for a reason of its own (memory, an abort), reported as such.
        """
        error = HandlerFailed(f"llama_decode failed with status {status}")
        for slot, _ in fed:
            if slot.sequence is not None:
                self._end(slot.sequence, failure=error)

    def _end(self, sequence: Sequence, failure: BaseException | None = None) -> None:
        """Finish (or fail) a sequence and free its slot at once; its cells stay for reuse."""
        if sequence in self._active:
            self._active.remove(sequence)
        slot = sequence.slot
        if slot is not None:
            slot.sequence = None
            slot.last_used = time.monotonic()
            if failure is not None:
                self.lib.llama_memory_seq_rm(self.model.memory, slot.seq_id, -1, -1)
                slot.tokens = []
            sequence.slot = None
        sequence.sampler.close()
        item = sequence.generation.item
        if item.done:
            return
        if failure is not None:
            item.fail(failure)
        else:
            sequence.generation.finish()


def passes(seq_ids: list[int]) -> int:
    """How many passes of the model llama.cpp makes for a batch of these sequences, one
    token each, in order: one per run of consecutive ids."""
    ordered = sorted(seq_ids)
    return 1 + sum(1 for a, b in itertools.pairwise(ordered) if b != a + 1) if ordered else 0


def _seq_id(sequence: Sequence) -> int:
    assert sequence.slot is not None  # only placed sequences are stepped
    return sequence.slot.seq_id
