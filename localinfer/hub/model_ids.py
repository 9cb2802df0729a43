"""Model ids are user input: validate them before they get near a path."""

from __future__ import annotations

import re

from localinfer.errors import InvalidRequest

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_ALIAS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def is_repo_id(name: str) -> bool:
    return bool(_REPO_ID.match(name)) and ".." not in name


def is_alias(name: str) -> bool:
    return bool(_ALIAS.match(name)) and ".." not in name


def check_model_id(name: str) -> str:
    """``name`` if it is an alias or ``org/name`` repo id; never a path (no ``..``, no ``/x``)."""
    if is_alias(name) or is_repo_id(name):
        return name
    raise InvalidRequest(
        f"{name[:200]!r} is not a valid model id: use a catalog alias or an 'org/name' "
        "Hugging Face repo id",
        param="model",
    )


_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")


def check_revision(revision: str) -> str:
    """``revision`` if it is a branch, tag or commit name: huggingface-hub stores it as a
    file under the cache's ``refs/``, so it must never climb out (no ``..``, no ``/x``)."""
    if _REVISION.match(revision) and ".." not in revision.split("/"):
        return revision
    raise InvalidRequest(
        f"{revision[:200]!r} is not a valid revision: use a branch, tag or commit hash",
        param="revision",
    )
