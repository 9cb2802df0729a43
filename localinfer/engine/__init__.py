"""``localinfer.Engine``: the same models and handlers as the server, called without HTTP.

The lowest-overhead face: a call submits a job straight to the model's queue and reads
its result stream, exactly what a route does minus parsing, JSON and sockets. Results
and errors are the ones :class:`~localinfer.Client` gives, so code moves between the
two unchanged::

    async with localinfer.Engine(models={"minilm": path}) as engine:
        vectors = await engine.embed(["a", "b"])
        async for delta in engine.chat("Hi", stream=True): ...

``await engine.start()`` / ``await engine.stop()`` keep it open across notebook cells.
Leaving, stopping or an interrupted cell stops the workers and frees the models.
"""

from __future__ import annotations

from localinfer.engine.engine import Engine

__all__ = ["Engine"]
