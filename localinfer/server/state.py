"""What routes reach through ``request.app.state``."""

from __future__ import annotations

from starlette.requests import Request

from localinfer.calls.calls import Calls
from localinfer.config import Settings
from localinfer.runtime.registry import ModelRegistry


def registry_of(request: Request) -> ModelRegistry:
    registry: ModelRegistry = request.app.state.registry
    return registry


def calls_of(request: Request) -> Calls:
    """The call layer over the app's registry: every route goes through it."""
    calls: Calls = request.app.state.calls
    return calls


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def request_id_of(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))
