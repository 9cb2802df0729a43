"""Where things live: the Hugging Face cache and endpoint, localinfer's own config dir.

huggingface-hub reads ``HF_HOME`` / ``HF_ENDPOINT`` / ``HF_HUB_OFFLINE`` once, when it is
first imported. These functions read them at call time instead, and every hub call in
localinfer passes the result explicitly, so a changed environment (a test, a notebook
that sets ``HF_HOME`` after importing transformers) is always honoured.
"""

from __future__ import annotations

import os
from pathlib import Path

_DEFAULT_ENDPOINT = "https://huggingface.co"
_TRUE = {"1", "on", "yes", "true"}


def hf_home() -> Path:
    explicit = os.environ.get("HF_HOME")
    if explicit:
        return Path(os.path.expandvars(explicit)).expanduser()
    cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(cache_home).expanduser() / "huggingface"


def hf_cache_dir() -> Path:
    """The hub cache shared with transformers and every other HF tool (``HF_HUB_CACHE``)."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(os.path.expandvars(explicit)).expanduser()
    return hf_home() / "hub"


def hf_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or _DEFAULT_ENDPOINT).rstrip("/")


def offline_mode(requested: bool = False) -> bool:
    """True when downloads are off: asked for (``--offline``) or ``HF_HUB_OFFLINE=1``."""
    if requested:
        return True
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in _TRUE


def config_dir() -> Path:
    """``platformdirs.user_config_dir("localinfer")``: config.toml and catalog.toml live here."""
    import platformdirs

    return Path(platformdirs.user_config_dir("localinfer"))
