"""Which files a download fetches."""

from __future__ import annotations

import pytest

from localinfer.errors import ConfigurationError
from localinfer.hub.selection import entry_patterns, exact_patterns, select_files

REPO = [
    ".gitattributes",
    "README.md",
    "config.json",
    "model.safetensors",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "tf_model.h5",
    "flax_model.msgpack",
    "onnx/model.onnx",
    "onnx/config.json",
    "original/consolidated.pth",
    "1_Pooling/config.json",
    "tokenizer.json",
    "vocab.txt",
    "tokenizer.model",
]


def test_default_selection_is_weights_config_and_tokenizer() -> None:
    assert select_files(REPO) == [
        "1_Pooling/config.json",
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer.model",
        "vocab.txt",
    ]


def test_pickled_weights_only_when_there_are_no_safetensors() -> None:
    assert select_files(["config.json", "pytorch_model.bin"]) == [
        "config.json",
        "pytorch_model.bin",
    ]
    assert "pytorch_model.bin" not in select_files(["model.safetensors", "pytorch_model.bin"])


def test_catalog_patterns_replace_the_defaults_but_still_drop_pickles() -> None:
    chosen = select_files(REPO, ["*.json", "*.safetensors", "*.bin"])
    assert "tokenizer.model" not in chosen
    assert "pytorch_model.bin" not in chosen
    assert "model.safetensors" in chosen


def test_a_gguf_only_repo_asks_for_a_file_unless_one_is_named() -> None:
    ggufs = ["README.md", "m-q4_k_m.gguf", "m-q8_0.gguf"]
    with pytest.raises(ConfigurationError, match=r"GGUF .*m-q4_k_m.gguf"):
        select_files(ggufs)
    assert select_files(ggufs, entry_patterns((), "m-q8_0.gguf")) == ["m-q8_0.gguf"]


def test_exact_patterns_match_only_their_own_file() -> None:
    odd = ["weights[1].safetensors", "weights1.safetensors"]
    assert select_files(odd, exact_patterns(["weights[1].safetensors"])) == [
        "weights[1].safetensors"
    ]


def test_an_entry_that_names_onnx_files_gets_them_and_only_them() -> None:
    # hibari and Kokoro serve ONNX graphs: their entries name them, broad patterns do not
    repo = [*REPO, "onnx/model_quantized.onnx", "voices/af_heart.bin", "voices/heart.onnx"]
    assert select_files(repo, ["onnx/model.onnx", "voices/*.bin"]) == [
        "onnx/model.onnx",
        "voices/af_heart.bin",
    ]
    assert select_files(repo, ["voices/*.onnx"]) == ["voices/heart.onnx"]
    assert "onnx/config.json" not in select_files(repo, ["*.json", "voices/*.onnx"])
    assert "onnx/model.onnx" not in select_files(repo, ["*"])
