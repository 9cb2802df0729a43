"""transformers ``generate()`` hooks: stream each token as it is sampled, seeded sampling.

Torch is imported inside the calls, so importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from localinfer.handlers.generation.sequence import Generation
from localinfer.handlers.tasks import GenerationRequest

if TYPE_CHECKING:
    import torch


class StreamEachToken:
    """A generate() stopping criterion that feeds each sampled token to its :class:`Generation`.

    A stopping criterion rather than a ``BaseStreamer``: generate() calls its stopping
    criteria for a token before it hands that token to the streamer, so a streamer that
    spots a stop string could only stop generation one (wasted) forward pass later.
    (generate() takes any callable with ``StoppingCriteria``'s signature; not subclassing
    it keeps this module free of torch until a model loads.)
    """

    def __init__(self, generation: Generation) -> None:
        self._generation = generation

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor | None, **kwargs: object
    ) -> torch.BoolTensor:
        import torch

        stop = self._generation.on_token(int(input_ids[0, -1]))
        return torch.full(  # type: ignore[return-value]
            (input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device
        )


class SampleWithOwnGenerator:
    """A logits processor that draws the next token from the request's own generator.

    It leaves only the drawn token standing, so generate() (run greedy) takes it. generate()
    would sample from torch's global RNG, which every thread shares: a seed set there does
    not survive two requests running at once.
    """

    def __init__(self, seed: int | None) -> None:
        self._seed = seed
        self._generator: torch.Generator | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        import torch

        if self._generator is None:
            self._generator = torch.Generator(device=scores.device)
            if self._seed is None:
                self._generator.seed()
            else:
                self._generator.manual_seed(self._seed)
        probs = torch.softmax(scores.float(), dim=-1)
        chosen = torch.multinomial(probs, num_samples=1, generator=self._generator)
        only = torch.full_like(scores, float("-inf"))
        return only.scatter_(1, chosen, 0.0)  # type: ignore[return-value]


def sampling_processors(request: GenerationRequest) -> list[Callable[..., Any]]:
    """Temperature / top-p warpers and the seeded sampler; none for greedy decoding."""
    from transformers import TemperatureLogitsWarper, TopPLogitsWarper

    if request.temperature <= 0:
        return []
    processors: list[Callable[..., Any]] = []
    if request.temperature != 1.0:
        processors.append(TemperatureLogitsWarper(float(request.temperature)))
    if request.top_p < 1.0:
        processors.append(TopPLogitsWarper(float(request.top_p)))
    processors.append(SampleWithOwnGenerator(request.seed))
    return processors
