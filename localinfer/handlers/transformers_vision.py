"""Chat with images: transformers image-text-to-text models (SmolVLM/Idefics3, Qwen2.5-VL, ...).

``AutoModelForImageTextToText`` + ``AutoProcessor``: the processor's chat template places
the images in the prompt and prepares their pixels. Generation, streaming and stop
strings are the text chat handler's own pieces (:class:`Generation` and friends from
:mod:`localinfer.handlers.generation`), so a reply streams token by token and
ends exactly as a text model's would. One request at a time per worker (``generate``).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from localinfer.errors import InvalidRequest
from localinfer.handlers.base import Handler, ModelSource, WorkItem
from localinfer.handlers.generation.constraints import refuse_unenforced
from localinfer.handlers.generation.sequence import Generation, check_fits_context
from localinfer.handlers.generation.text import hf_decode
from localinfer.handlers.generation.transformers_sampling import (
    StreamEachToken,
    sampling_processors,
)
from localinfer.handlers.hub_code import NO_HUB_CODE
from localinfer.handlers.model_facts import context_length, eos_token_ids
from localinfer.handlers.tasks import CHAT, GenerationRequest
from localinfer.handlers.torch_devices import release_cuda_memory_after, resolve_dtype

if TYPE_CHECKING:
    from transformers import GenerationMixin, PreTrainedModel, ProcessorMixin

logger = logging.getLogger(__name__)


class TransformersVisionHandler(Handler):
    """``chat`` handler for image-text-to-text models; messages may carry images.

    Options (``source.options``): ``dtype`` (as the text chat handler: float32 on CPU,
    bfloat16 on CUDA), ``attn_implementation``, ``context_length``.
    """

    task = CHAT
    handler_name = "transformers-vision"

    def __init__(self, source: ModelSource) -> None:
        self.source = source
        self.device = "cpu"
        self.model: PreTrainedModel | None = None
        self.processor: ProcessorMixin | None = None
        self.context_length: int | None = None
        self.eos_token_ids: frozenset[int] = frozenset()
        self._pad_token_id: int | None = None

    def load(self, device: str) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        source, options = self.source, self.source.options
        self.device = device
        common: dict[str, Any] = {
            "revision": source.revision,
            "trust_remote_code": source.trust_remote_code,
            "local_files_only": not Path(source.location).is_dir(),
        }
        self.processor = AutoProcessor.from_pretrained(source.location, **common)  # type: ignore[no-untyped-call]
        if options.get("attn_implementation"):
            common["attn_implementation"] = options["attn_implementation"]
        dtype = resolve_dtype(options.get("dtype"), device)
        model = AutoModelForImageTextToText.from_pretrained(
            source.location, dtype=dtype, **common, **NO_HUB_CODE
        )
        model.to(device)  # type: ignore[arg-type]
        model.eval()  # type: ignore[no-untyped-call]
        self.model = model
        tokenizer = self._tokenizer
        self.context_length = context_length(model, tokenizer, options)
        self.eos_token_ids = eos_token_ids(model, tokenizer)
        pad = model.generation_config.pad_token_id
        if pad is None:
            pad = tokenizer.pad_token_id
        self._pad_token_id = pad if pad is not None else min(self.eos_token_ids, default=None)
        logger.info(
            "loaded vision model %s on %s (%s, context %s)",
            source.location,
            device,
            model.dtype,
            self.context_length,
        )

    @property
    def _tokenizer(self) -> Any:
        assert self.processor is not None, "load() first"
        return cast(Any, self.processor).tokenizer

    def close(self) -> None:
        self.model = None
        self.processor = None
        gc.collect()
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    def process(self, items: Sequence[WorkItem]) -> None:
        for item in items:
            if item.cancelled:
                item.finish(None)
                continue
            try:
                self._generate(item)
            except Exception as exc:
                release_cuda_memory_after(exc, self.device)
                item.fail(exc)

    def encode(self, request: GenerationRequest) -> Mapping[str, Any]:
        """The model's inputs (token ids, pixels, masks) from the chat template."""
        processor = self.processor
        assert processor is not None and self.model is not None, "load() first"
        if request.messages is None:
            raise InvalidRequest("a vision model chats: send messages, not a prompt")
        messages = [
            {"role": m["role"], "content": _parts(m.get("content"))} for m in request.messages
        ]
        try:
            inputs = cast(Any, processor).apply_chat_template(
                messages,
                add_generation_prompt=True,
                tokenize=True,
                return_dict=True,
                return_tensors="pt",
            )
        except Exception as exc:  # a template raising on purpose, or images it cannot take
            raise InvalidRequest(
                f"the model's processor rejected the messages: {exc}", param="messages"
            ) from exc
        # floating inputs (pixels) follow the model's dtype; ids stay integers
        return cast("Mapping[str, Any]", inputs.to(self.model.device, dtype=self.model.dtype))

    def _generate(self, item: WorkItem) -> None:
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        request = item.payload
        if not isinstance(request, GenerationRequest):
            raise InvalidRequest(
                f"{self.handler_name} takes a GenerationRequest, not {type(request).__name__}"
            )
        # grammars, logprobs and tools run on the text chat engines; refused here by name
        refuse_unenforced(request, self.handler_name)
        inputs = self.encode(request)
        prompt_ids = [int(i) for i in inputs["input_ids"][0].tolist()]
        check_fits_context(
            len(prompt_ids),
            request.max_new_tokens,
            self.context_length,
            counted=" (images included)",
        )
        generation = Generation(
            item, request, prompt_ids, hf_decode(self._tokenizer), self.eos_token_ids
        )
        generation.start()
        with torch.inference_mode():
            cast("GenerationMixin", self.model).generate(
                **inputs,
                max_new_tokens=request.max_new_tokens,
                do_sample=False,  # sampling happens in the shared processors, per request
                num_beams=1,
                logits_processor=LogitsProcessorList(sampling_processors(request)),
                stopping_criteria=StoppingCriteriaList([StreamEachToken(generation)]),
                eos_token_id=sorted(self.eos_token_ids) or None,
                pad_token_id=self._pad_token_id,
            )
        generation.finish()


def _parts(content: object) -> list[dict[str, Any]]:
    """Content as the processors' templates expect it: a list of typed parts."""
    if isinstance(content, list):
        return [dict(part) for part in content]
    return [{"type": "text", "text": str(content or "")}]
