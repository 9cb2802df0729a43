"""``models=`` for Server and Engine: aliases, paths, user objects, definitions, names."""

from __future__ import annotations

from pathlib import Path

import pytest

from localinfer.config import Settings
from localinfer.errors import ConfigurationError, ModelNotFound
from localinfer.inprocess import model_definitions, unwrap_group
from tests import models
from tests.support import define


def names(spec: object) -> list[tuple[str, str, int]]:
    return [
        (d.name, d.task, d.worker_count)
        for d in model_definitions(spec, device="cpu", workers=2, settings=Settings())
    ]


def test_every_form_of_models(minilm_dir: Path) -> None:
    assert names(models.Echo) == [("echo", "infer", 2)]
    assert names([models.Echo, minilm_dir]) == [("echo", "infer", 2), ("model", "embeddings", 2)]
    assert names({"minilm": str(minilm_dir), "e": models.Echo()}) == [
        ("minilm", "embeddings", 2),
        ("e", "infer", 2),
    ]
    assert names([[models.Echo(), models.Echo(), models.Echo()]]) == [("echo", "infer", 3)]
    assert names({"renamed": define(models.Sleeper)}) == [("renamed", "infer", 1)]
    assert names("all-minilm") == [("all-minilm", "embeddings", 2)]  # packaged catalog model


def test_unknown_models_and_clashing_names_fail_up_front(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="neither a catalog alias"):
        names("no-such-model")
    with pytest.raises(ConfigurationError, match="named 'echo'"):
        names([models.Echo, models.Echo()])
    with pytest.raises(ConfigurationError, match="neither an 'infer' method"):
        names(object())


def test_single_errors_come_out_of_their_groups() -> None:
    error = ValueError("x")
    assert unwrap_group(BaseExceptionGroup("g", [ExceptionGroup("h", [error])])) is error
    two = ExceptionGroup("g", [error, KeyError()])
    assert unwrap_group(two) is two
