"""Structural checks of model files: truncated or corrupted safetensors, GGUF and JSON are
named, with the command that fixes them; whole files pass."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from localinfer.errors import CorruptModelFile
from localinfer.hub.integrity import check_directory, file_problem


def _safetensors(path: Path) -> Path:
    from safetensors.numpy import save_file

    save_file({"w": np.ones((64, 64), dtype=np.float32)}, str(path))
    return path


def _gguf(path: Path) -> Path:
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_tensor("w", np.ones((64, 64), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _cut(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def test_whole_files_pass(tmp_path: Path) -> None:
    _safetensors(tmp_path / "model.safetensors")
    _gguf(tmp_path / "model.gguf")
    (tmp_path / "tokenizer.json").write_text(json.dumps({"model": {}}))
    check_directory(tmp_path, "org/name")


def test_a_truncated_safetensors_file_is_named(tmp_path: Path) -> None:
    path = _safetensors(tmp_path / "model.safetensors")
    _cut(path, path.stat().st_size - 100)
    assert "is truncated" in (file_problem(path) or "")
    _cut(path, 5)
    assert "shorter than a safetensors header" in (file_problem(path) or "")


def test_a_corrupted_safetensors_header_is_named(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", 10) + b"not json!!" + b"\0" * 100)
    assert "not valid JSON" in (file_problem(path) or "")
    path.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    assert "broken safetensors header" in (file_problem(path) or "")


def test_a_truncated_or_foreign_gguf_file_is_named(tmp_path: Path) -> None:
    path = _gguf(tmp_path / "model.gguf")
    _cut(path, path.stat().st_size - 1000)
    assert "truncated or corrupted" in (file_problem(path) or "")
    path.write_bytes(b"NOPE" + b"\0" * 100)
    assert "not a GGUF file" in (file_problem(path) or "")


def test_a_truncated_tokenizer_json_is_named_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text('{"model": {"vocab": {"a": 1, "b"')
    with pytest.raises(CorruptModelFile) as raised:
        check_directory(tmp_path, "org/name")
    error = raised.value
    assert error.path == str(tmp_path / "tokenizer.json")
    assert "tokenizer.json is not valid JSON" in error.message
    assert "`localinfer rm org/name` then `localinfer pull org/name`" in error.message
    assert error.code == "corrupt_model_file"


def test_a_users_own_directory_is_told_to_replace_the_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_bytes(b"\xff\xfe")
    with pytest.raises(CorruptModelFile, match="replace the file with a whole copy"):
        check_directory(tmp_path, None)
