"""The one error hierarchy.

Every layer raises these; ``localinfer.server.errors`` is the single place that maps
them to an HTTP status and an OpenAI error body. Lower layers never mention HTTP.
"""

from __future__ import annotations


class LocalInferError(Exception):
    """Base of every error localinfer reports to a caller."""

    #: short machine-readable code carried in the OpenAI error body
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class InvalidRequest(LocalInferError):
    """The request is malformed or asks for something impossible."""

    code = "invalid_request"


class InvalidArguments(InvalidRequest):
    """The request is well-formed but its arguments do not fit the model's signature or schema."""

    code = "invalid_arguments"


class RequestTooLarge(InvalidRequest):
    """A body, text, list or file exceeds a configured bound."""

    code = "request_too_large"


class UnsupportedMediaType(InvalidRequest):
    """The body is not of a content type the route accepts."""

    code = "unsupported_media_type"


class RequestBodyTimeout(InvalidRequest):
    """The request body did not arrive within ``body_timeout_s`` (a slow or stalled sender)."""

    code = "request_body_timeout"


class HeaderFieldsTooLarge(InvalidRequest):
    """A header line, all headers together, or their number exceed the configured bounds."""

    code = "request_header_fields_too_large"


class MalformedRequest(InvalidRequest):
    """The HTTP framing itself is broken (refused by the HTTP server before the app runs)."""

    code = "malformed_request"


class HostNotAllowed(InvalidRequest):
    """The ``Host`` header names no address this server answers to (DNS rebinding)."""

    code = "host_not_allowed"


class OriginNotAllowed(LocalInferError):
    """A browser page of another origin tried a state-changing request (cross-site request)."""

    code = "origin_not_allowed"


class AuthenticationFailed(LocalInferError):
    """No API key, or the wrong one."""

    code = "invalid_api_key"


class ModelNotFound(LocalInferError):
    """No model is served under that name."""

    code = "model_not_found"


class QueueFull(LocalInferError):
    """The model's queue is at capacity; the caller should retry later."""

    code = "queue_full"

    def __init__(self, message: str, *, retry_after_s: float = 1.0, **kwargs: str | None):
        super().__init__(message, **kwargs)
        self.retry_after_s = retry_after_s


class NoCapabilityMatch(ModelNotFound):
    """No served model advertises the capabilities a request selected by."""

    code = "no_capability_match"

    def __init__(
        self,
        message: str,
        *,
        known: dict[str, dict[str, str]] | None = None,
        **kwargs: str | None,
    ):
        super().__init__(message, **kwargs)
        #: every served model's capabilities, so the caller can see what it could ask for
        self.known = known or {}


class ModelNotDownloaded(ModelNotFound):
    """A catalog model or repo id that is not in the local Hugging Face cache (yet)."""

    code = "model_not_downloaded"

    def __init__(self, message: str, *, model: str, **kwargs: str | None):
        super().__init__(message, **kwargs)
        #: what the user named (alias or repo id): ``localinfer pull <model>`` fetches it
        self.model = model


class DownloadNotFound(LocalInferError):
    """No download is known under that id."""

    code = "download_not_found"


class DownloadFailed(LocalInferError):
    """The Hub could not be reached, refused the repo, or a file could not be written."""

    code = "download_failed"


class DiskFull(DownloadFailed):
    """The disk holding the model cache has no room for a download; nothing partial kept."""

    code = "disk_full"


class DownloadCancelled(LocalInferError):
    """A download stopped because someone cancelled it."""

    code = "download_cancelled"


class OfflineModeEnabled(LocalInferError):
    """A download was asked for while downloads are off (``--offline``, ``HF_HUB_OFFLINE``)."""

    code = "offline"


class ModelNotReady(LocalInferError):
    """The model exists but has no worker able to serve (loading, or every load failed)."""

    code = "model_not_ready"


class ShuttingDown(ModelNotReady):
    """The server (or this model) is stopping: no new requests, and a request not finished
    within the drain timeout is answered with this instead of being dropped."""

    code = "shutting_down"


class ReplicaLost(ModelNotReady):
    """The replica serving this request (another process, maybe another machine) died or
    became unreachable mid-request; its supervisor restarts it, and a retry may succeed."""

    code = "replica_lost"


class EngineStalled(ModelNotReady):
    """A batching engine made no progress while requests waited; it restarts."""

    code = "engine_stalled"


class ResourceExhausted(LocalInferError):
    """The device ran out of memory for this request; the worker survived."""

    code = "resource_exhausted"


class TooManyConnections(LocalInferError):
    """The server holds ``max_connections`` open connections already."""

    code = "too_many_connections"
    #: seconds a client should wait before it connects again
    retry_after_s: float = 1.0


class RequestTimeout(LocalInferError):
    """The request did not finish within its deadline; its job was cancelled."""

    code = "timeout"


class NotSupportedHere(LocalInferError):
    """An operation this deployment of the server cannot do (e.g. loading a model at run
    time on Ray Serve, whose models are set by the application's config)."""

    code = "not_supported"


class HandlerFailed(LocalInferError):
    """The model's own code raised while serving this request."""

    code = "handler_error"


class WorkerCrashed(HandlerFailed):
    """The worker thread died while running this request; it is being restarted."""

    code = "worker_crashed"


class WouldDeadlock(LocalInferError):
    """A handler called a model whose every worker is waiting, directly or not, on the caller."""

    code = "would_deadlock"


class SlowConsumer(LocalInferError):
    """The reader of a stream fell too far behind and was cut off."""

    code = "slow_consumer"


class ConfigurationError(LocalInferError):
    """Settings that cannot work (an unknown device, a non-loopback bind without a key)."""

    code = "configuration_error"


class CorruptModelFile(ConfigurationError):
    """A model file in the cache is truncated or corrupted; the message names the file and
    the command that fetches a whole copy."""

    code = "corrupt_model_file"

    def __init__(self, message: str, *, path: str, **kwargs: str | None):
        super().__init__(message, **kwargs)
        self.path = path


class CapabilityUnavailable(ConfigurationError):
    """A capability the installed version of a dependency cannot give (continuous batching,
    a grammar backend, CUDA), with the package and version that would give it."""

    code = "capability_unavailable"


class IncompatiblePlugin(ConfigurationError):
    """A plugin was written for a plugin API version this localinfer does not provide."""

    code = "incompatible_plugin"
