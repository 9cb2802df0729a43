"""Sentence embeddings from any transformers encoder (BERT, MiniLM, BGE, E5, GTE, ...).

The model is ``AutoModel``; pooling follows the sentence-transformers layout when the
model has one (``modules.json`` -> ``1_Pooling/config.json``), so vectors match what
``SentenceTransformer.encode(..., normalize_embeddings=True)`` returns for the model.

Throughput comes from cross-request micro-batching: the scheduler hands over several
requests at once, their texts are pooled, sorted by token length (so a batch pads to
similar lengths, not to the longest text of the lot) and run ``batch_size`` at a time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from localinfer.errors import ConfigurationError, InvalidRequest
from localinfer.handlers.base import Handler, ModelSource, WorkItem
from localinfer.handlers.hub_code import NO_HUB_CODE
from localinfer.handlers.model_files import verify_model_files
from localinfer.handlers.tasks import EMBEDDINGS, EmbeddingRequest, EmbeddingResult

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

Pooling = Literal["mean", "cls", "max", "lasttoken"]
POOLINGS: tuple[Pooling, ...] = ("mean", "cls", "max", "lasttoken")

#: sentence-transformers pooling flags, in the order they are checked
_POOLING_FLAGS: tuple[tuple[str, Pooling], ...] = (
    ("pooling_mode_cls_token", "cls"),
    ("pooling_mode_mean_tokens", "mean"),
    ("pooling_mode_max_tokens", "max"),
    ("pooling_mode_lasttoken", "lasttoken"),
)
#: models whose positions start after padding_idx (512 usable of 514 position embeddings)
_PADDING_OFFSET_MODELS = frozenset({"roberta", "xlm-roberta", "camembert"})
#: a tokenizer's model_max_length when it does not know (transformers' VERY_LARGE_INTEGER)
_UNSET_MAX_LENGTH = 1_000_000


class SentenceEmbeddingHandler(Handler):
    """L2-normalised sentence vectors; ``dimensions`` truncates Matryoshka-style.

    Options (``ModelSource.options``): ``pooling`` (mean, cls, max, lasttoken; overrides the
    model's own sentence-transformers config), ``batch_size`` (texts per forward pass,
    32), ``max_length`` (tokens, capped by the model), ``dtype`` (float32, float16,
    bfloat16; float16 on CUDA and float32 elsewhere by default).
    """

    task = EMBEDDINGS
    handler_name = "transformers-embeddings"

    def __init__(self, source: ModelSource) -> None:
        self.source = source
        self.batch_size = int(source.options.get("batch_size", 32))
        if self.batch_size < 1:
            raise ConfigurationError(f"batch_size must be at least 1, not {self.batch_size}")
        self.pooling: Pooling = "mean"
        self.max_length = 0
        #: the model's embedding width: the most ``dimensions`` a request may ask for
        self.dimensions = 0
        self._model: Any = None
        self._tokenizer: Any = None
        self._device = "cpu"

    # --- lifecycle ------------------------------------------------------------------------

    def load(self, device: str) -> None:
        from transformers import AutoModel, AutoTokenizer

        directory = local_model_dir(self.source)
        verify_model_files(self.source)
        common: dict[str, Any] = {
            "trust_remote_code": self.source.trust_remote_code,
            "local_files_only": True,
        }
        self._tokenizer = AutoTokenizer.from_pretrained(directory, **common)
        if self._tokenizer.pad_token is None:  # decoder-style embedders (last-token pooling)
            self._tokenizer.pad_token = self._tokenizer.eos_token
        dtype = _torch_dtype(self.source.options.get("dtype"), device)
        model = AutoModel.from_pretrained(directory, dtype=dtype, **common, **NO_HUB_CODE)
        self._model = model.to(device).eval()
        self._device = device

        self.pooling = resolve_pooling(directory, self.source.options.get("pooling"))
        self.max_length = self._max_length(directory)
        self.dimensions = int(self._model.config.hidden_size)
        logger.info(
            "loaded %s on %s: %s pooling, %d dimensions, %d tokens max, %s",
            self.source.location,
            device,
            self.pooling,
            self.dimensions,
            self.max_length,
            dtype,
        )

    def close(self) -> None:
        self._model = None
        self._tokenizer = None

    # --- serving ----------------------------------------------------------------------------

    def process(self, items: Sequence[WorkItem]) -> None:
        """Fail requests that cannot be served before batching, so they cost nothing."""
        valid = []
        for item in items:
            try:
                self._validate(item.payload)
            except InvalidRequest as exc:
                item.fail(exc)
            else:
                valid.append(item)
        super().process(valid)

    def run_batch(self, inputs: list[EmbeddingRequest]) -> list[EmbeddingResult]:
        for request in inputs:
            self._validate(request)
        texts = [text for request in inputs for text in request.texts]
        vectors, lengths = self.embed(texts)
        results = []
        start = 0
        for request in inputs:
            stop = start + len(request.texts)
            block = vectors[start:stop]
            if request.dimensions is not None and request.dimensions < self.dimensions:
                block = _normalise(block[:, : request.dimensions])
            counts = tuple(int(n) for n in lengths[start:stop])
            results.append(
                EmbeddingResult(block.tolist(), prompt_tokens=sum(counts), text_tokens=counts)
            )
            start = stop
        return results

    def embed(self, texts: Sequence[str]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Unit vectors (texts x dimensions, float32) and each text's token count."""
        import torch

        if self._model is None:
            raise RuntimeError("the model is not loaded")
        vectors = np.empty((len(texts), self.dimensions), dtype=np.float32)
        if not texts:
            return vectors, np.zeros(0, dtype=np.int64)
        ids: list[list[int]] = self._tokenizer(
            list(texts),
            truncation=True,
            max_length=self.max_length,
            padding=False,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        lengths = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(ids))
        # longest first: a batch pads to its own longest text, and memory peaks at once
        order = np.argsort(-lengths, kind="stable")
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                index = order[start : start + self.batch_size]
                batch = self._tokenizer.pad(
                    {"input_ids": [ids[i] for i in index]}, padding=True, return_tensors="pt"
                )
                input_ids = batch["input_ids"].to(self._device)
                mask = batch["attention_mask"].to(self._device)
                hidden = self._model(input_ids=input_ids, attention_mask=mask).last_hidden_state
                pooled = pool(hidden, mask, self.pooling)
                vectors[index] = pooled.float().cpu().numpy()
        return _normalise(vectors), lengths

    # --- helpers --------------------------------------------------------------------------------

    def _validate(self, request: EmbeddingRequest) -> None:
        dims = request.dimensions
        if dims is not None and not 1 <= dims <= self.dimensions:
            raise InvalidRequest(
                f"dimensions must be between 1 and {self.dimensions} for this model, not {dims}",
                param="dimensions",
            )

    def _max_length(self, directory: Path) -> int:
        """The fewest tokens any of the model, tokenizer, sentence-transformers config or
        options allows: position embeddings are a hard limit, the rest are the model's
        training length."""
        limits = [int(self.source.options.get("max_length", 0)) or _UNSET_MAX_LENGTH]
        tokenizer_limit = int(getattr(self._tokenizer, "model_max_length", 0) or 0)
        if 0 < tokenizer_limit < _UNSET_MAX_LENGTH:
            limits.append(tokenizer_limit)
        positions = getattr(self._model.config, "max_position_embeddings", None)
        if positions:
            # RoBERTa-style models offset positions by padding_idx + 1 (514 -> 512)
            offset = (getattr(self._model.config, "pad_token_id", None) or 0) + 1
            is_roberta_like = self._model.config.model_type in (
                "roberta",
                "xlm-roberta",
                "camembert",
            )
            limits.append(int(positions) - (offset if is_roberta_like else 0))
        st_config = directory / "sentence_bert_config.json"
        if st_config.is_file():
            seq = json.loads(st_config.read_text()).get("max_seq_length")
            if seq:
                limits.append(int(seq))
        return min(limits)


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """One vector per sequence from token states, ignoring padding on either side."""
    import torch

    hidden = hidden.float()
    if pooling == "mean":
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
    if pooling == "max":
        return hidden.masked_fill(mask.unsqueeze(-1) == 0, float("-inf")).max(1).values
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    if pooling == "cls":  # the first real token (left padding puts pads before it)
        index = torch.where(mask.bool(), positions, mask.shape[1]).min(1).values
    elif pooling == "lasttoken":
        index = torch.where(mask.bool(), positions, -1).max(1).values
    else:
        raise ValueError(f"unknown pooling {pooling!r}")
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), index]


def resolve_pooling(directory: Path, option: object = None) -> Pooling:
    """The ``pooling`` option if set, else the sentence-transformers config, else mean."""
    if option is not None:
        if option not in POOLINGS:
            raise ConfigurationError(
                f"pooling must be one of {', '.join(POOLINGS)}, not {option!r}"
            )
        return option
    config_path = _pooling_config_path(directory)
    if config_path is None:
        return "mean"
    config = json.loads(config_path.read_text())
    for flag, pooling in _POOLING_FLAGS:
        if config.get(flag):
            return pooling
    raise ConfigurationError(
        f"{config_path}: no supported pooling mode is on (supported: {', '.join(POOLINGS)})"
    )


def _pooling_config_path(directory: Path) -> Path | None:
    modules_path = directory / "modules.json"
    folder = "1_Pooling"
    if modules_path.is_file():
        for module in json.loads(modules_path.read_text()):
            if str(module.get("type", "")).endswith(".Pooling"):
                folder = module.get("path") or folder
                break
    path = directory / folder / "config.json"
    return path if path.is_file() else None


def local_model_dir(source: ModelSource) -> Path:
    """``source.location`` as a directory: itself, or its snapshot in the local HF cache.

    Handlers never download: a repo id that is not cached is a configuration error.
    """
    path = Path(source.location).expanduser()
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    try:
        return Path(
            snapshot_download(source.location, revision=source.revision, local_files_only=True)
        )
    except Exception as exc:  # LocalEntryNotFoundError, an invalid repo id, ...
        raise ConfigurationError(
            f"{source.location!r} is neither a directory nor a model in the local "
            f"Hugging Face cache ({exc})"
        ) from exc


def _normalise(vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit: npt.NDArray[np.float32] = vectors / np.maximum(norms, 1e-12)
    return unit


def _torch_dtype(name: object, device: str) -> torch.dtype:
    import torch

    if name is None:
        return torch.float16 if device.startswith("cuda") else torch.float32
    dtypes = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if name not in dtypes:
        raise ConfigurationError(f"dtype must be one of {', '.join(dtypes)}, not {name!r}")
    return dtypes[str(name)]
