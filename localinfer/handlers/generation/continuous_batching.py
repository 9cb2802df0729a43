"""Continuous batching through transformers' ``ContinuousBatchingManager``.

The manager runs one background loop that batches every in-flight request per forward
pass; :class:`ContinuousBatchingEngine` queues requests with it and owns the reader
thread that turns the manager's per-token outputs into each request's
:class:`~localinfer.handlers.generation.sequence.Generation` steps.

The reader thread is also the engine's watchdog: while requests wait, the manager must
produce an output (one token of some request) every ``stall_s`` seconds. One that does
not is stalled (a hung kernel, a deadlock in its loop): its requests fail with 503
``engine_stalled`` and a fresh manager takes its place. The stuck loop's thread cannot
be killed: it is stopped without waiting and left behind, counted in the handler's
:class:`~localinfer.handlers.base.ThreadLedger` (``max_abandoned_workers``). With no room
left there, the engine restarts only once that thread has ended by itself; until then it
refuses its requests (503) and the worker shows hung.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast

from localinfer.errors import ConfigurationError, EngineStalled, HandlerFailed
from localinfer.handlers.base import ThreadLedger
from localinfer.handlers.generation.batch_rows import SLOT_KEY, RowGrammars, install, rows_supported
from localinfer.handlers.generation.batching_setup import engine_generation_config, size_cache
from localinfer.handlers.generation.sequence import Generation

if TYPE_CHECKING:
    from transformers import GenerationMixin, PreTrainedModel
    from transformers.generation.continuous_batching import ContinuousBatchingManager
    from transformers.generation.continuous_batching.requests import GenerationOutput

logger = logging.getLogger(__name__)

#: seconds without any output while requests wait before the engine counts as stalled
DEFAULT_STALL_S = 120.0


class ContinuousBatchingEngine:
    """transformers' ContinuousBatchingManager plus the thread that turns its outputs into emits.

    Per-request sampling goes through the manager's per-request logits processors
    (temperature, top-k, top-p): it samples for every request, and greedy requests ask for
    ``top_k=1``, which leaves the argmax as the only candidate.
    """

    def __init__(
        self,
        manager: ContinuousBatchingManager,
        max_in_flight: int,
        vocab_size: int,
        eos_token_ids: frozenset[int],
        sequential_attention: str,
        rows: RowGrammars | None = None,
        *,
        stall_s: float = DEFAULT_STALL_S,
        restart: Callable[[], tuple[ContinuousBatchingManager, RowGrammars | None]] | None = None,
        ledger: ThreadLedger | None = None,
    ) -> None:
        self.manager = manager
        #: where a stuck loop's thread is left (and asked whether it may be)
        self._ledger = ledger if ledger is not None else ThreadLedger()
        #: a stalled manager whose thread may not be left behind: waited out, not replaced
        self._stuck: ContinuousBatchingManager | None = None
        #: per-row grammars and logprobs (None where the batch cannot run them)
        self._rows = rows
        self._slots: dict[str, int] = {}
        self.stall_s = stall_s
        #: builds a fresh manager (and its row processor) after a stall (``None``: a
        #: stalled engine only fails)
        self._restart = restart
        #: stalls found so far (each one restarted the manager)
        self.stalls = 0
        #: when the manager last showed progress, or work began waiting (``time.monotonic``)
        self._last_step = time.monotonic()
        self._paused = False
        self.max_in_flight = max_in_flight
        self._sequential_attention = sequential_attention
        self._vocab_size = vocab_size
        self._eos = sorted(eos_token_ids) or -1
        self._live: dict[str, Generation] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._closing = threading.Event()
        self._reader = threading.Thread(
            target=self._read_outputs, name="localinfer:cb-outputs", daemon=True
        )
        self._reader.start()

    @classmethod
    def start(
        cls,
        model: PreTrainedModel,
        eos_token_ids: frozenset[int],
        context_length: int | None,
        options: Mapping[str, Any],
        ledger: ThreadLedger | None = None,
    ) -> ContinuousBatchingEngine:
        """Create the manager with per-request sampling, size its cache, start its loop."""
        import torch
        from transformers import ContinuousBatchingConfig

        on_cpu = model.device.type == "cpu"
        max_in_flight = int(options.get("max_in_flight", 8 if on_cpu else 32))
        if max_in_flight < 2:
            raise ConfigurationError("continuous batching needs max_in_flight >= 2")
        settings: dict[str, Any] = {
            "per_request_processors": True,
            "max_requests_per_batch": max_in_flight,
        }
        settings.update(options.get("continuous_batching_config") or {})
        if "kv_cache_gib" in options:
            settings["kv_cache_gib"] = options["kv_cache_gib"]
        size_cache(settings, model, max_in_flight, context_length)
        sequential_attention = str(model.config._attn_implementation)
        vocab_size = int(model.config.get_text_config().vocab_size)

        def new_manager() -> tuple[ContinuousBatchingManager, RowGrammars | None]:
            manager = cast("GenerationMixin", model).init_continuous_batching(
                generation_config=engine_generation_config(model, eos_token_ids),
                continuous_batching_config=ContinuousBatchingConfig(**settings),
            )
            rows = install(manager, vocab_size) if rows_supported(manager) else None
            try:
                with torch.inference_mode():  # the manager's loop inherits the caller's mode
                    manager.warmup()  # builds the cache: a model that cannot batch fails now
                    manager.start()
            except BaseException:
                # the manager may have switched the model's attention (eager -> paged|eager);
                # put it back so sequential generate() still works
                original = getattr(manager, "_original_attn_impl", None)
                if original is not None:
                    model.set_attn_implementation(original)
                raise
            return manager, rows

        manager, rows = new_manager()
        return cls(
            manager,
            max_in_flight,
            vocab_size,
            eos_token_ids,
            sequential_attention,
            rows,
            stall_s=float(options.get("engine_stall_s", DEFAULT_STALL_S)),
            restart=new_manager,
            ledger=ledger,
        )

    def can_serve(self, generation: Generation) -> bool:
        """False for a seeded sample, and for a constraint or logprobs without per-row masks."""
        if generation.needs_own_generator:
            return False
        per_row = generation.grammar is not None or generation.logprobs is not None
        return self._rows is not None or not per_row

    def submit(self, generation: Generation) -> None:
        """Queue a request with the manager and return at once."""
        if self._stuck is not None:
            generation.item.fail(EngineStalled(self._ledger.stuck_reason or "engine stalled"))
            return
        request = generation.request
        sampling: dict[str, Any]
        if request.temperature > 0:
            sampling = {
                "temperature": float(request.temperature),
                "top_p": float(request.top_p),
                "top_k": self._vocab_size,
            }
        else:
            sampling = {"temperature": 1.0, "top_p": 1.0, "top_k": 1}
        request_id = f"{generation.item.request_id}#{next(self._ids)}"
        if self._rows is not None and (
            generation.grammar is not None or generation.logprobs is not None
        ):
            slot = self._rows.add(generation.grammar, generation.logprobs)
            sampling[SLOT_KEY] = slot
        with self._lock:
            if not self._live:  # work begins waiting now: the stall clock starts here
                self._last_step = time.monotonic()
            if SLOT_KEY in sampling:
                self._slots[request_id] = sampling[SLOT_KEY]
            self._live[request_id] = generation
        generation.start()
        try:
            added = self.manager.add_request(
                generation.prompt_ids,
                request_id=request_id,
                max_new_tokens=request.max_new_tokens,
                streaming=True,
                eos_token_id=self._eos,
                **sampling,
            )
        except BaseException:
            self._forget(request_id)
            raise
        if added is None:  # the manager's loop stopped (it logged why)
            with self._lock:
                dropped = self._live.pop(request_id, None)
            if dropped is not None:
                dropped.item.fail(HandlerFailed("the continuous-batching engine is not running"))
        elif request_id not in self._live:
            # the reader dropped it (cancelled) before the manager knew of it
            self.manager.cancel_request(request_id)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Hold the batching loop (keeping its requests) while this thread uses the model.

        The manager may have switched the model to a paged attention (``paged|eager``),
        which generate() cannot use: the model's own attention is back for the pause.
        """
        model = self.manager.model
        batched_attention = str(model.config._attn_implementation)
        self._paused = True  # no outputs while paused: not a stall
        try:
            with self.manager.pause():
                if batched_attention != self._sequential_attention:
                    model.set_attn_implementation(self._sequential_attention)
                try:
                    yield
                finally:
                    if batched_attention != self._sequential_attention:
                        model.set_attn_implementation(batched_attention)
        finally:
            self._last_step = time.monotonic()
            self._paused = False

    def close(self) -> None:
        self._closing.set()
        self._reader.join(timeout=10)
        if self.manager.is_running():
            self.manager.stop(block=True, timeout=30, hard_stop=True)
        self.manager.destroy()
        with self._lock:
            left = list(self._live.values())
            self._live.clear()
        for generation in left:
            generation.item.fail(HandlerFailed("the model was unloaded before this request ended"))

    # reader thread -----------------------------------------------------------------------

    def _read_outputs(self) -> None:
        while not self._closing.is_set():
            if self._stuck is not None:
                self._wait_out_stuck()
                continue
            try:
                output = self.manager.get_result(timeout=0.05)
                if output is not None:
                    self._last_step = time.monotonic()
                    self._deliver(output)
                elif not self.manager.is_running():
                    self._fail_all(self.manager.background_thread_status.fatal_error)
                    self._closing.wait(0.1)
                elif self._stalled():
                    self._recover_from_stall()
                self._drop_cancelled()
            except Exception:
                logger.exception("continuous batching: delivering outputs failed")

    def _deliver(self, output: GenerationOutput) -> None:
        with self._lock:
            generation = self._live.get(output.request_id)
        if generation is None:
            return  # finished or cancelled on our side already
        if output.error is not None:
            self._forget(output.request_id)
            generation.item.fail(HandlerFailed(f"generation failed: {output.error}"))
            return
        try:
            for token in output.generated_tokens[generation.completion_tokens :]:
                if generation.on_token(int(token)):
                    break
            if generation.stopped or output.is_finished():
                self._forget(output.request_id)
                if not output.is_finished():
                    self.manager.cancel_request(output.request_id)
                generation.finish()
        except Exception as exc:
            self._forget(output.request_id)
            self.manager.cancel_request(output.request_id)
            generation.item.fail(exc)

    def _drop_cancelled(self) -> None:
        """Cancel, in the manager, requests whose caller went away (queued ones included)."""
        with self._lock:
            gone = [(rid, g) for rid, g in self._live.items() if g.item.cancelled]
            for rid, _ in gone:
                del self._live[rid]
        for rid, generation in gone:
            self._forget(rid)
            self.manager.cancel_request(rid)
            generation.finish()

    def _stalled(self) -> bool:
        """Requests wait and the manager has shown nothing for ``stall_s``."""
        if self._paused:
            return False
        with self._lock:
            waiting = bool(self._live)
        return waiting and time.monotonic() - self._last_step > self.stall_s

    def _recover_from_stall(self) -> None:
        """Fail the stalled engine's requests (503), then start a fresh manager."""
        self.stalls += 1
        stuck = self.manager
        logger.error(
            "continuous batching: no step for %.0f s while requests waited; failing them and %s",
            self.stall_s,
            "restarting the engine" if self._restart is not None else "leaving it stopped",
        )
        with self._lock:
            left = list(self._live.values())
            self._live.clear()
        for generation in left:
            generation.item.fail(
                EngineStalled(
                    f"the continuous-batching engine made no progress for {self.stall_s:g} s; "
                    "it restarts: retry the request"
                )
            )
        with contextlib.suppress(Exception):
            stuck.stop(block=False)
        if self._restart is not None and self._ledger.may_abandon():
            self._leave_behind(stuck)
        elif self._restart is not None:
            self._stuck = stuck
            self._ledger.stuck_in_place(
                f"the continuous-batching engine stalled (no step for {self.stall_s:g} s) and "
                "is not restarted: max_abandoned_workers threads are left behind already; it "
                "restarts when its stuck loop returns"
            )
            logger.error("continuous batching: %s", self._ledger.stuck_reason)
        self._last_step = time.monotonic()

    def _leave_behind(self, stuck: ContinuousBatchingManager) -> None:
        """Count the stuck loop's thread as abandoned, and start a fresh manager."""
        reason = f"continuous-batching loop stalled (no step for {self.stall_s:g} s)"
        self._ledger.abandon("localinfer:cb-loop", reason, stuck.is_running)
        self._start_fresh()

    def _start_fresh(self) -> None:
        assert self._restart is not None
        try:
            self.manager, self._rows = self._restart()
        except Exception:
            logger.exception("continuous batching: the engine could not be restarted")

    def _wait_out_stuck(self) -> None:
        """Restart once the stalled loop that could not be left behind has ended, or once
        there is room to leave it behind (another abandoned thread returned)."""
        stuck = self._stuck
        if stuck is None:
            return
        if not stuck.is_running():
            logger.warning("continuous batching: the stalled loop returned; restarting")
            self._start_fresh()
        elif self._ledger.may_abandon():
            logger.warning("continuous batching: room to leave the stalled loop; restarting")
            self._leave_behind(stuck)
        else:
            self._closing.wait(0.1)
            return
        self._stuck = None
        self._last_step = time.monotonic()
        self._ledger.stuck_in_place(None)

    def _fail_all(self, error: BaseException | None) -> None:
        with self._lock:
            left = list(self._live.values())
            self._live.clear()
        for generation in left:
            failure = HandlerFailed(f"the continuous-batching loop stopped: {error}")
            generation.item.fail(failure)

    def _forget(self, request_id: str) -> None:
        with self._lock:
            self._live.pop(request_id, None)
            slot = self._slots.pop(request_id, None)
        if slot is not None and self._rows is not None:
            self._rows.remove(slot)
