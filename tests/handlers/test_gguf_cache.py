"""The GGUF conversion cache: converted once per file and dtype, rebuilt when the file changes.

The conversion itself is replaced by a stub that writes a marker file: what is under
test is the keying, the locking and the atomic appearance of the directory. The real
conversion runs on SmolLM2 in ``tests/real_models``.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from localinfer.errors import ConfigurationError
from localinfer.handlers import gguf_cache


@pytest.fixture
def conversions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[tuple[Path, str]]:
    """Send the cache to a temporary directory and count stub conversions."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    done: list[tuple[Path, str]] = []

    def convert(gguf_file: Path, dtype: Any, out: Path) -> None:
        done.append((gguf_file, str(dtype)))
        (out / "config.json").write_text("{}")
        (out / gguf_cache.MANIFEST).write_text("{}")

    monkeypatch.setattr(gguf_cache, "_convert", convert)
    return done


def gguf(tmp_path: Path, name: str = "model.Q4_0.gguf", content: bytes = b"GGUF") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def test_the_second_start_reuses_the_conversion(
    tmp_path: Path, conversions: list[tuple[Path, str]]
) -> None:
    source = gguf(tmp_path)
    first = gguf_cache.dense_checkpoint(source, "float32")
    second = gguf_cache.dense_checkpoint(source, "float32")
    assert first == second
    assert len(conversions) == 1
    assert (first / "config.json").is_file()
    assert first.parent.parent == tmp_path / "cache" / "localinfer" / "gguf"
    assert first.name == "float32"
    assert not list(first.parent.glob(".partial-*"))


def test_each_dtype_has_its_own_copy(tmp_path: Path, conversions: list[tuple[Path, str]]) -> None:
    source = gguf(tmp_path)
    a = gguf_cache.dense_checkpoint(source, "float32")
    b = gguf_cache.dense_checkpoint(source, "bfloat16")
    assert a.parent == b.parent and a != b
    assert len(conversions) == 2


def test_a_changed_file_is_converted_again(
    tmp_path: Path, conversions: list[tuple[Path, str]]
) -> None:
    source = gguf(tmp_path)
    before = gguf_cache.dense_checkpoint(source, "float32")
    source.write_bytes(b"GGUF, but longer")
    os.utime(source, ns=(1, 1))
    after = gguf_cache.dense_checkpoint(source, "float32")
    assert before != after
    assert len(conversions) == 2


def test_the_key_follows_the_resolved_path(tmp_path: Path) -> None:
    source = gguf(tmp_path)
    link = tmp_path / "link.gguf"
    link.symlink_to(source)
    assert gguf_cache.cache_key(link) == gguf_cache.cache_key(source)
    assert gguf_cache.cache_key(gguf(tmp_path, "other.gguf")) != gguf_cache.cache_key(source)


def test_concurrent_starts_convert_once(
    tmp_path: Path, conversions: list[tuple[Path, str]]
) -> None:
    source = gguf(tmp_path)
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(gguf_cache.dense_checkpoint(source, "f")))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1 and len(results) == 4
    assert len(conversions) == 1


def test_a_failed_conversion_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def broken(gguf_file: Path, dtype: Any, out: Path) -> None:
        (out / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("unsupported architecture")

    monkeypatch.setattr(gguf_cache, "_convert", broken)
    source = gguf(tmp_path)
    with pytest.raises(RuntimeError, match="unsupported architecture"):
        gguf_cache.dense_checkpoint(source, "float32")
    target = gguf_cache.converted_directory(source, "float32")
    assert not target.exists()
    assert not list(target.parent.glob(".partial-*"))


def test_locate_gguf_in_a_directory(tmp_path: Path) -> None:
    source = gguf(tmp_path)
    assert gguf_cache.locate_gguf(str(tmp_path), source.name) == source
    with pytest.raises(ConfigurationError, match=r"missing\.gguf is not in"):
        gguf_cache.locate_gguf(str(tmp_path), "missing.gguf")


def test_locate_gguf_of_an_uncached_repo_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ConfigurationError, match="not in the local Hugging Face cache"):
        gguf_cache.locate_gguf("someone/nothing-GGUF", "model.Q4_0.gguf")


def test_dtype_names() -> None:
    torch = pytest.importorskip("torch")
    assert gguf_cache.dtype_name(torch.bfloat16) == "bfloat16"
    assert gguf_cache.dtype_name("auto") == "auto"


def _sized_convert(monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    def convert(gguf_file: Path, dtype: Any, out: Path) -> None:
        (out / "model.safetensors").write_bytes(b"\0" * size)
        (out / gguf_cache.MANIFEST).write_text(f'{{"source": "{gguf_file}", "dtype": "{dtype}"}}')

    monkeypatch.setattr(gguf_cache, "_convert", convert)


def test_the_cache_is_bounded_least_recently_used_first(
    tmp_path: Path, conversions: list[tuple[Path, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _sized_convert(monkeypatch, 1000)
    monkeypatch.setenv("LOCALINFER_GGUF_CACHE_MAX_BYTES", "2500")
    a, b, c = (gguf(tmp_path, f"{n}.gguf", n.encode()) for n in "abc")
    copy_a = gguf_cache.dense_checkpoint(a, "float32")
    copy_b = gguf_cache.dense_checkpoint(b, "float32")
    os.utime(copy_b / gguf_cache.MANIFEST, (1, 1))  # b: long unused
    gguf_cache.dense_checkpoint(a, "float32")  # a: used again (its manifest touched)
    copy_c = gguf_cache.dense_checkpoint(c, "float32")  # 3000 bytes > 2500: b goes
    assert copy_a.is_dir() and copy_c.is_dir() and not copy_b.exists()
    copies = gguf_cache.converted_copies()
    assert [Path(copy.source).name for copy in copies] == ["a.gguf", "c.gguf"]
    assert all(copy.size_bytes > 1000 for copy in copies)


def test_the_copy_just_made_is_kept_even_over_the_limit(
    tmp_path: Path, conversions: list[tuple[Path, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _sized_convert(monkeypatch, 5000)
    monkeypatch.setenv("LOCALINFER_GGUF_CACHE_MAX_BYTES", "100")
    copy = gguf_cache.dense_checkpoint(gguf(tmp_path), "float32")
    assert copy.is_dir()
    assert gguf_cache.prune(100, keep=copy) == []


def test_ls_shows_the_conversions(
    tmp_path: Path,
    conversions: list[tuple[Path, str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from localinfer.cli.models import _print_gguf_cache

    _sized_convert(monkeypatch, 2048)
    gguf_cache.dense_checkpoint(gguf(tmp_path, "smol.Q4_0.gguf"), "float32")
    _print_gguf_cache()
    out = capsys.readouterr().out
    assert "GGUF conversions in" in out and "limit" in out
    assert "smol.Q4_0.gguf" in out and "float32" in out
