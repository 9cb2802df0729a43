"""Every form of user code becomes a model definition with the right workers."""

from __future__ import annotations

import pytest

from localinfer.errors import ConfigurationError, InvalidArguments
from localinfer.handlers.litapi import LitAPIHandler
from localinfer.handlers.user_code import InferHandler, InferRequest
from localinfer.runtime.targets import import_target, user_code_definition
from tests import models


def test_import_target() -> None:
    assert import_target("tests.models:Echo") is models.Echo
    with pytest.raises(ConfigurationError, match="module:attribute"):
        import_target("tests.models")
    with pytest.raises(ConfigurationError, match="cannot import 'no_such_module'"):
        import_target("no_such_module:X")
    with pytest.raises(ConfigurationError, match="no attribute 'Nope'"):
        import_target("tests.models:Nope")


def test_class_target_builds_one_object_per_worker() -> None:
    d = user_code_definition(models.Echo, devices=("cpu",), workers_per_device=3)
    assert (d.name, d.task, d.worker_count) == ("echo", "infer", 3)
    handlers = [d.create_handler(i, "cpu") for i in range(3)]
    assert all(isinstance(h, InferHandler) for h in handlers)
    assert len({id(h.obj) for h in handlers}) == 3  # type: ignore[attr-defined]


def test_instance_target_is_copied_for_extra_workers() -> None:
    instance = models.Echo()
    d = user_code_definition(instance, workers_per_device=2)
    first, second = (d.create_handler(i, "cpu") for i in range(2))
    assert first.obj is instance  # type: ignore[attr-defined]
    assert second.obj is not instance  # type: ignore[attr-defined]


def test_list_of_instances_is_one_worker_each() -> None:
    a, b = models.Echo(), models.Echo()
    d = user_code_definition([a, b], devices=("cpu",))
    assert d.worker_count == 2
    assert [d.create_handler(i, "cpu").obj for i in range(2)] == [a, b]  # type: ignore[attr-defined]


def test_factory_is_called_per_worker() -> None:
    d = user_code_definition(models.make_echo, name="echo")
    assert d.create_handler(0, "cpu").obj is not d.create_handler(1, "cpu").obj  # type: ignore[attr-defined]


def test_infer_arguments_are_checked_before_queueing() -> None:
    d = user_code_definition(models.Echo)
    assert d.prepare is not None
    assert d.prepare({"args": ["x"], "kwargs": {"repeat": 2}}) == InferRequest(
        ("x",), {"repeat": 2}
    )
    with pytest.raises(InvalidArguments, match="missing a required argument"):
        d.prepare({"kwargs": {"repeat": 2}})


def test_litapi_targets() -> None:
    d = user_code_definition(models.NormAPI)
    assert d.max_batch_size == 8 and d.batch_window_ms == pytest.approx(50)
    assert isinstance(d.create_handler(0, "cpu"), LitAPIHandler)
    assert d.prepare is not None
    assert d.prepare({"x": 1, "y": 2}) == models.Point(x=1, y=2)
    with pytest.raises(InvalidArguments, match="Point"):
        d.prepare({"x": 1})
    overridden = user_code_definition(models.NormAPI, max_batch_size=2, batch_timeout_s=0.001)
    assert overridden.max_batch_size == 2 and overridden.batch_window_ms == pytest.approx(1)


def test_objects_without_infer_or_hooks_are_refused() -> None:
    class Nothing:
        pass

    with pytest.raises(ConfigurationError, match="neither an 'infer' method nor LitAPI hooks"):
        user_code_definition(Nothing)
