"""Output constraints as xgrammar token masks, for the transformers engines.

Why xgrammar (over llguidance, both installed): its ``GrammarMatcher`` fills a packed
int32 bitmask per batch row and ``apply_token_bitmask_inplace`` applies a whole batch's
masks in one call (CPU and CUDA kernels) — exactly the per-row mask continuous batching
needs — its JSON-schema compiler is the one vLLM and SGLang ship by default, and compiled
grammars are plain objects we can cache by schema. llguidance is as fast per token, but
its lazy lexer makes worst-case per-token cost harder to bound and it brings no batched
mask helper for torch.

- :class:`GrammarCache` compiles an :class:`OutputConstraint` once per tokenizer (LRU by
  constraint), in a worker thread bounded by ``MAX_COMPILE_SECONDS``: a schema too slow
  to compile is a 400, and the model's worker thread is never held longer than that.
- :class:`ConstrainedSequence` is one request's matcher: it takes each sampled token and
  masks the next step's logits.
"""

from __future__ import annotations

import concurrent.futures
import json
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from localinfer.errors import InvalidRequest
from localinfer.handlers.generation.constraints import (
    MAX_COMPILE_SECONDS,
    REPEAT_SEPARATOR,
    OutputConstraint,
)

if TYPE_CHECKING:
    import torch
    import xgrammar

#: compiled grammars kept per tokenizer
_CACHE_SIZE = 64
#: xgrammar 0.2.9 writes a length-bounded string's characters as this class, which lets
#: control characters through (invalid JSON); they are swapped for the strict class
_LOOSE_CHARACTER = r"[^\"\\\r\n]"
_JSON_CHARACTER = r"[^\0-\x1f\"\\]"
#: the rule a repeated block is renamed to (no xgrammar-generated rule is named so)
_BLOCK_RULE = "localinfer_constraint_block"

#: one compiler thread for every model: a slow schema cannot starve other compilations
#: of CPU, and an abandoned one finishes in the background
_compile_pool = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="localinfer:grammar")


def build_grammar(constraint: OutputConstraint) -> xgrammar.Grammar:
    """The constraint as an xgrammar ``Grammar`` (compact JSON: no free whitespace).

    Free whitespace would let a model (a random one certainly) emit spaces until its
    token budget runs out; compact JSON is valid JSON and ends.
    """
    import xgrammar as xgr

    try:
        grammar = xgr.Grammar.from_json_schema(
            constraint.json_schema, any_whitespace=False, strict_mode=True
        )
    except Exception as exc:
        raise InvalidRequest(
            f"the JSON schema cannot be enforced: {exc}", param="response_format"
        ) from exc
    ebnf = str(grammar)
    if _LOOSE_CHARACTER in ebnf:
        grammar = xgr.Grammar.from_ebnf(ebnf.replace(_LOOSE_CHARACTER, _JSON_CHARACTER))
    if constraint.prefix or constraint.suffix or constraint.repeat:
        parts = [grammar]
        if constraint.prefix:
            parts.insert(0, _literal(constraint.prefix))
        if constraint.suffix:
            parts.append(_literal(constraint.suffix))
        # concat renames the schema's root, so nothing but the new root is named "root"
        grammar = xgr.Grammar.concat(*parts) if len(parts) > 1 else _renamed_root(grammar)
    if constraint.repeat:
        rules = str(grammar).splitlines()
        renamed = [
            _BLOCK_RULE + line[len("root") :] if line.startswith("root ::=") else line
            for line in rules
        ]
        separator = json.dumps(REPEAT_SEPARATOR, ensure_ascii=False)
        renamed.append(f"root ::= {_BLOCK_RULE} ({separator} {_BLOCK_RULE})*")
        grammar = xgr.Grammar.from_ebnf("\n".join(renamed))
    return grammar


def _renamed_root(grammar: xgrammar.Grammar) -> xgrammar.Grammar:
    """The grammar under a fresh root (a recursive schema's ``$ref: "#"`` names ``root``)."""
    import xgrammar as xgr

    return xgr.Grammar.union(grammar)


def _literal(text: str) -> xgrammar.Grammar:
    import xgrammar as xgr

    return xgr.Grammar.from_ebnf("root ::= " + json.dumps(text, ensure_ascii=False))


class GrammarCache:
    """Compiled grammars for one tokenizer, by constraint, compiled off the caller's thread."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_token_ids: frozenset[int]) -> None:
        import xgrammar as xgr

        info = xgr.TokenizerInfo.from_huggingface(
            tokenizer, vocab_size=vocab_size, stop_token_ids=sorted(stop_token_ids) or None
        )
        self.vocab_size = vocab_size
        self._compiler = xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False)
        self._compiled: OrderedDict[OutputConstraint, xgrammar.CompiledGrammar] = OrderedDict()
        self._lock = threading.Lock()

    def compiled(self, constraint: OutputConstraint) -> xgrammar.CompiledGrammar:
        """The compiled grammar, from the cache or compiled within ``MAX_COMPILE_SECONDS``."""
        with self._lock:
            hit = self._compiled.get(constraint)
            if hit is not None:
                self._compiled.move_to_end(constraint)
                return hit
        future = _compile_pool.submit(self._compile, constraint)
        try:
            compiled = future.result(timeout=MAX_COMPILE_SECONDS)
        except concurrent.futures.TimeoutError:
            raise InvalidRequest(
                f"the JSON schema took longer than {MAX_COMPILE_SECONDS:g} s to compile "
                "(MAX_COMPILE_SECONDS); simplify it",
                param="response_format",
                code="schema_too_complex",
            ) from None
        with self._lock:
            self._compiled[constraint] = compiled
            while len(self._compiled) > _CACHE_SIZE:
                self._compiled.popitem(last=False)
        return compiled

    def _compile(self, constraint: OutputConstraint) -> xgrammar.CompiledGrammar:
        grammar = build_grammar(constraint)
        try:
            return self._compiler.compile_grammar(grammar)
        except Exception as exc:
            raise InvalidRequest(
                f"the JSON schema cannot be enforced: {exc}", param="response_format"
            ) from exc

    def sequence(self, constraint: OutputConstraint) -> ConstrainedSequence:
        return ConstrainedSequence(self.compiled(constraint), self.vocab_size)


class ConstrainedSequence:
    """One request's grammar state: accept each sampled token, mask the next logits."""

    def __init__(self, compiled: xgrammar.CompiledGrammar, vocab_size: int) -> None:
        import xgrammar as xgr

        self._matcher = xgr.GrammarMatcher(compiled)
        self._bitmask = xgr.allocate_token_bitmask(1, vocab_size)
        self.accepted = 0

    @property
    def bitmask(self) -> torch.Tensor:
        return self._bitmask

    def accept(self, token_id: int) -> None:
        """Advance past a sampled token (one the mask allowed, or a stop token)."""
        if not self._matcher.is_terminated():
            self._matcher.accept_token(token_id)
        self.accepted += 1

    def fill(self, into: torch.Tensor | None = None, row: int = 0) -> torch.Tensor:
        """Write the allowed next tokens into ``into[row]`` (own buffer by default)."""
        target = self._bitmask if into is None else into
        self._matcher.fill_next_token_bitmask(target, row)
        return target

    def mask(self, scores: torch.Tensor) -> None:
        """Disallow, in place, every token the grammar forbids next (``scores``: 1 x vocab)."""
        import xgrammar as xgr

        self.fill()
        xgr.apply_token_bitmask_inplace(scores, self._bitmask.to(scores.device))


class ConstrainLogits:
    """A generate() logits processor enforcing one request's constraint (sequential path).

    generate() hands it the sequence so far: from the second step on, the last id is the
    token sampled at the previous step, which the matcher takes before masking.
    """

    def __init__(self, sequence: ConstrainedSequence, prompt_length: int) -> None:
        self._sequence = sequence
        self._prompt_length = prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids.shape[1] - self._prompt_length
        while self._sequence.accepted < generated:
            position = self._prompt_length + self._sequence.accepted
            self._sequence.accept(int(input_ids[0, position]))
        self._sequence.mask(scores)
        return scores
