"""A handler meets a damaged model file as an error naming it and the fix, before its
loader does (the tiny BERT embedder, a real transformers load)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from localinfer.errors import CorruptModelFile
from localinfer.handlers.base import ModelSource
from localinfer.handlers.model_files import verify_model_files
from localinfer.handlers.sentence_embeddings import SentenceEmbeddingHandler


def test_a_truncated_weight_file_fails_the_load_naming_it(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    copy = Path(shutil.copytree(tiny_bert_dir, tmp_path / "bert"))
    weights = next(copy.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    handler = SentenceEmbeddingHandler(ModelSource(str(copy)))
    with pytest.raises(CorruptModelFile, match=f"{weights.name} is truncated"):
        handler.load("cpu")


def test_a_cached_repo_names_the_rm_and_pull_commands(
    tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    snapshot = Path(shutil.copytree(tiny_bert_dir, tmp_path / "snapshot"))
    (snapshot / "tokenizer.json").write_text("{")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: str(snapshot))
    with pytest.raises(CorruptModelFile) as raised:
        verify_model_files(ModelSource("org/tiny-bert"))
    assert "localinfer rm org/tiny-bert" in raised.value.message
    assert str(snapshot / "tokenizer.json") in raised.value.message


def test_whole_files_load(tiny_bert_dir: Path) -> None:
    verify_model_files(ModelSource(str(tiny_bert_dir)))
