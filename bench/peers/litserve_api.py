"""Peer: LitServe 0.2 serving the same model objects through a ``LitAPI``.

LitServe runs the HTTP side on uvicorn (FastAPI) and the model in separate worker
processes (``workers_per_device``), fed through multiprocessing queues. We keep its
defaults except: one API server process (like every other server here), no client
file, quiet logs. Run: ``python -m bench.peers.litserve_api --port 8000``.
"""

from __future__ import annotations

from typing import Any

import litserve as ls

from bench.serving import build_model, server_arguments


class BenchAPI(ls.LitAPI):  # type: ignore[misc]
    """``{"args": [x]}`` in, ``model.infer(x)`` out: the same JSON as the other servers."""

    def __init__(self, model_name: str):
        super().__init__(api_path=f"/v1/infer/{model_name}")
        self.model_name = model_name

    def setup(self, device: str) -> None:
        self.model = build_model(self.model_name)

    # LitServe builds its FastAPI route from these two annotations: left off on purpose,
    # so the body arrives as the parsed JSON dict and the reply goes out as plain JSON.
    def decode_request(self, request):  # type: ignore[no-untyped-def]
        return list(request.get("args", []))

    def predict(self, args: list[Any]) -> Any:
        return self.model.infer(*args)

    def encode_response(self, output):  # type: ignore[no-untyped-def]
        return output


def main() -> None:
    args = server_arguments(__doc__)
    server = ls.LitServer(
        BenchAPI(args.model),
        accelerator="cpu",
        workers_per_device=args.workers,
        timeout=120,
    )
    server.run(
        host="127.0.0.1",
        port=args.port,
        num_api_servers=1,
        log_level="warning",
        generate_client_file=False,
    )


if __name__ == "__main__":
    main()
