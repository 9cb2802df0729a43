"""The process-wide OpenMP wait: a bounded spin unless the user chose, set on import."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from localinfer import openmp


def test_a_bounded_spin_when_the_user_chose_nothing() -> None:
    environ = {"PATH": "/bin"}
    ours = {"GOMP_SPINCOUNT": openmp.SPIN_COUNT, openmp.SET_BY_LOCALINFER: openmp.SPIN_COUNT}
    assert openmp.apply_defaults(environ) == ours
    assert environ == {"PATH": "/bin", **ours}
    assert "OMP_WAIT_POLICY" not in environ  # PASSIVE would put llama.cpp's barriers to sleep
    assert openmp.describe(environ) == f"GOMP_SPINCOUNT={openmp.SPIN_COUNT}"


def test_the_users_own_setting_wins() -> None:
    for chosen in ({"OMP_WAIT_POLICY": "PASSIVE"}, {"GOMP_SPINCOUNT": "5"}):
        environ = dict(chosen)
        assert openmp.apply_defaults(environ) == {}
        assert environ == chosen
    assert openmp.describe({}) == "libgomp's default wait"


def test_a_localinfer_process_started_by_another_inherits_the_default_not_a_choice() -> None:
    parent = {"PATH": "/bin"}
    openmp.apply_defaults(parent)
    child = dict(parent)  # what a subprocess of the parent sees
    assert openmp.apply_defaults(child) == {
        "GOMP_SPINCOUNT": openmp.SPIN_COUNT,
        openmp.SET_BY_LOCALINFER: openmp.SPIN_COUNT,
    }  # so the child may still fit it to its models
    changed = {**parent, "GOMP_SPINCOUNT": "5"}  # the user changed it in between
    assert openmp.apply_defaults(changed) == {}
    assert changed == {"PATH": "/bin", "GOMP_SPINCOUNT": "5"}


def test_import_sets_it_before_any_library_reads_it() -> None:
    env = {k: v for k, v in os.environ.items() if k not in openmp.USER_CHOICES}
    code = (
        "import os, localinfer, localinfer.openmp as o; "
        "print(os.environ.get('GOMP_SPINCOUNT'), o.LOADED_TOO_EARLY)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == [openmp.SPIN_COUNT, "False"]
    chosen = {**env, "OMP_WAIT_POLICY": "PASSIVE"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=chosen, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["None", "False"]


def test_a_peer_program_gets_the_users_environment() -> None:
    environ = {**os.environ, **openmp.APPLIED}
    peer = openmp.user_environment(environ)
    assert not set(openmp.APPLIED) & set(peer)
    assert peer.get("PATH") == os.environ.get("PATH")


def test_a_late_setting_is_reported_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(openmp, "LOADED_TOO_EARLY", True)
    monkeypatch.setattr(openmp, "_warned", False)
    with caplog.at_level(logging.WARNING, logger="localinfer.openmp"):
        openmp.warn_if_too_late()
        openmp.warn_if_too_late()
    assert [r.message.count("GOMP_SPINCOUNT") for r in caplog.records] == [1]


@pytest.fixture
def fitting(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An environment as ``import localinfer`` left it, libgomp not loaded yet."""
    ours = {"GOMP_SPINCOUNT": openmp.SPIN_COUNT, openmp.SET_BY_LOCALINFER: openmp.SPIN_COUNT}
    environ = {"PATH": "/bin", **ours}
    monkeypatch.setattr(openmp, "APPLIED", dict(ours))
    monkeypatch.setattr(openmp, "LONG_SPIN_FOR", ())
    monkeypatch.setattr(openmp, "libgomp_loaded", lambda: False)
    return environ


def test_a_process_serving_only_llama_cpp_spins_as_libgomp_would(
    fitting: dict[str, str],
) -> None:
    assert openmp.fit_to_engines(["llama.cpp", "llama.cpp"], fitting)
    assert fitting == {"PATH": "/bin"} and not openmp.APPLIED
    assert openmp.LONG_SPIN_FOR == ("llama.cpp",)
    assert openmp.describe(fitting) == "libgomp's default wait"
    assert openmp.user_environment(fitting) == fitting  # a peer program: the same wait


@pytest.mark.parametrize(
    "engines",
    [["llama.cpp", "transformers"], ["llama.cpp", None], []],
    ids=["with torch", "with user code", "no model"],
)
def test_any_other_model_keeps_the_short_spin(
    fitting: dict[str, str], engines: list[str | None]
) -> None:
    assert not openmp.fit_to_engines(engines, fitting)
    assert fitting["GOMP_SPINCOUNT"] == openmp.SPIN_COUNT and not openmp.LONG_SPIN_FOR


def test_the_users_choice_and_a_loaded_libgomp_are_left_alone(
    fitting: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = {**fitting, "GOMP_SPINCOUNT": "5"}  # the user's own, after import
    assert not openmp.fit_to_engines(["llama.cpp"], chosen)
    assert chosen["GOMP_SPINCOUNT"] == "5"
    monkeypatch.setattr(openmp, "libgomp_loaded", lambda: True)  # it read the env already
    assert not openmp.fit_to_engines(["llama.cpp"], fitting)
    assert fitting["GOMP_SPINCOUNT"] == openmp.SPIN_COUNT


def test_a_torch_model_loaded_later_is_warned_about_once(
    fitting: dict[str, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(openmp, "_warned_engines", set())
    with caplog.at_level(logging.WARNING, logger="localinfer.openmp"):
        openmp.warn_if_spinning_long("smollm2", "llama.cpp (batched)")
        assert not caplog.records  # nothing fitted yet
        openmp.fit_to_engines(["llama.cpp"], fitting)
        openmp.warn_if_spinning_long("smollm2", "llama.cpp (batched)")
        openmp.warn_if_spinning_long("minilm", "sentence-transformers")
        openmp.warn_if_spinning_long("minilm-2", "sentence-transformers")
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["model minilm"]
    assert f"GOMP_SPINCOUNT={openmp.SPIN_COUNT}" in caplog.records[0].getMessage()


SERVE = """
import os, sys, localinfer
from localinfer.config import load_settings
from localinfer.runtime.model import ModelDefinition
from localinfer.server.app import create_app
from localinfer import openmp
engine = sys.argv[1]
definition = ModelDefinition(name="m", create_handler=None, capabilities={"engine": engine})
create_app([definition], load_settings(), owns_process=True)
print(os.environ.get("GOMP_SPINCOUNT"), openmp.libgomp_loaded())
"""


@pytest.mark.parametrize(("engine", "spin"), [("llama.cpp", "None"), ("torch", "1000")])
def test_the_server_fits_the_spin_before_any_model_loads(engine: str, spin: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in openmp.USER_CHOICES}
    out = subprocess.run(
        [sys.executable, "-c", SERVE, engine], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [spin, "False"]  # and libgomp has not read it yet
