"""Command-line plumbing shared by the bench's own servers (bare, peers)."""

from __future__ import annotations

import argparse
from typing import Any

from bench import models

MODELS: dict[str, type[Any]] = {
    "noop": models.NoOp,
    "sleep": models.Sleep,
    "matmul": models.Matmul,
    "stream": models.Stream,
}


def server_arguments(description: str | None) -> argparse.Namespace:
    """``--port``, ``--model`` and ``--workers``: what the bench passes to every server."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", choices=sorted(MODELS), default="noop")
    parser.add_argument("--workers", type=int, default=1)
    return parser.parse_args()


def build_model(name: str) -> Any:
    """An instance of a bench model, set up (the matmul model calibrates itself here)."""
    model = MODELS[name]()
    setup = getattr(model, "setup", None)
    if callable(setup):
        setup()
    return model
