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
    assert openmp.apply_defaults(environ) == {"GOMP_SPINCOUNT": openmp.SPIN_COUNT}
    assert environ["GOMP_SPINCOUNT"] == openmp.SPIN_COUNT
    assert "OMP_WAIT_POLICY" not in environ  # PASSIVE would put llama.cpp's barriers to sleep
    assert openmp.describe(environ) == f"GOMP_SPINCOUNT={openmp.SPIN_COUNT}"


def test_the_users_own_setting_wins() -> None:
    for chosen in ({"OMP_WAIT_POLICY": "PASSIVE"}, {"GOMP_SPINCOUNT": "5"}):
        environ = dict(chosen)
        assert openmp.apply_defaults(environ) == {}
        assert environ == chosen
    assert openmp.describe({}) == "libgomp's default wait"


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
