"""What every handler's transformers ``from_pretrained`` of a model passes, so that a load
runs no code fetched from the Hub.

transformers 5.2x turns ``use_kernels`` on by default and then downloads kernel code
from the Hub while loading (seen on an H200 with transformers 5.25: an offline load of a
Llama failed with "could not verify publisher trust status" for kernels-community/rotary,
and without the ``kernels`` package with "Kernels are not available"). A server loads the
files its operator pulled, and runs nothing else.
"""

from __future__ import annotations

from typing import Any, Final

#: keyword arguments for a model's ``from_pretrained`` (not a tokenizer's or processor's)
NO_HUB_CODE: Final[dict[str, Any]] = {"use_kernels": False}
