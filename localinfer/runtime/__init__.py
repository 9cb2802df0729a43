"""The engine: model registry, job queues, micro-batching, device-bound worker threads.

Imports no web framework; the server and the in-process engine both sit on top of it.
"""

from localinfer.runtime.job import Chunk, Done, Job
from localinfer.runtime.model import ModelDefinition, ServedModel
from localinfer.runtime.registry import ModelRegistry

__all__ = ["Chunk", "Done", "Job", "ModelDefinition", "ModelRegistry", "ServedModel"]
