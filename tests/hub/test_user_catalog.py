"""The user's catalog.toml, and how it merges with the plugins' catalogs."""

from __future__ import annotations

from pathlib import Path

import pytest

from localinfer.errors import ConfigurationError
from localinfer.hub.user_catalog import load_user_catalog, user_catalog_path
from localinfer.plugins import USER_CATALOG, discover

GOOD = """
[models.tiny]
repo = "test-org/tiny-bert"
task = "embeddings"
description = "a tiny BERT"
options = { pooling = "cls" }

[models.bge-small]            # replaces the built-in alias
repo = "BAAI/bge-small-en-v1.5"
task = "embeddings"
files = ["*.json", "*.safetensors", "*.txt"]

[models.local-coder]
repo = "/opt/models/coder"
task = "chat"
trust_remote_code = true
"""


@pytest.fixture
def catalog_file(hf_home: Path) -> Path:
    path = user_catalog_path()
    assert path.name == "catalog.toml" and not path.exists()
    return path


def test_entries_are_read_with_their_fields(catalog_file: Path) -> None:
    catalog_file.write_text(GOOD)
    tiny, bge, coder = load_user_catalog()
    assert (tiny.alias, tiny.repo, tiny.task, tiny.origin) == (
        "tiny",
        "test-org/tiny-bert",
        "embeddings",
        "user",
    )
    assert tiny.options == {"pooling": "cls"} and tiny.handler == ""
    assert bge.files == ("*.json", "*.safetensors", "*.txt")
    assert coder.repo == "/opt/models/coder" and coder.trust_remote_code


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[models.x]\ntask = "chat"\n', "missing repo"),
        ('[models.x]\nrepo = "a/b"\ntask = "chat"\nfiles = "*.json"\n', "files must be a list"),
        ('[models.x]\nrepo = "a/b"\ntask = "chat"\nrevison = "v1"\n', "unknown field"),
        ('[models.x]\nrepo = "../up/there"\ntask = "chat"\n', "absolute local path"),
        ('[models."../x"]\nrepo = "a/b"\ntask = "chat"\n', "not a valid alias"),
        ("[models.x\n", "cannot read"),
    ],
)
def test_mistakes_are_named_with_file_and_entry(
    catalog_file: Path, text: str, problem: str
) -> None:
    catalog_file.write_text(text)
    with pytest.raises(ConfigurationError, match=problem) as caught:
        load_user_catalog()
    assert str(catalog_file) in caught.value.message


def test_user_entries_join_the_catalog_and_win_over_plugins(catalog_file: Path) -> None:
    catalog_file.write_text(GOOD)
    plugins = discover()
    assert plugins.catalog["tiny"].handler == "transformers-embeddings"  # the task's default
    assert plugins.catalog["bge-small"].origin == "user"
    assert plugins.catalog["whisper-tiny"].origin == "builtin"  # the others stay
    assert USER_CATALOG not in plugins.errors


def test_a_broken_user_catalog_is_reported_not_fatal(catalog_file: Path) -> None:
    catalog_file.write_text('[models.x]\nrepo = "a/b"\ntask = "painting"\n')
    plugins = discover()
    assert "x" not in plugins.catalog and "whisper-tiny" in plugins.catalog
    assert "painting" in plugins.errors[USER_CATALOG]


def test_remote_code_is_trusted_only_from_the_users_own_catalog(
    catalog_file: Path, tmp_path: Path
) -> None:
    from dataclasses import replace

    from localinfer.runtime.resolve import resolve

    model_dir = tmp_path / "coder"
    model_dir.mkdir()
    catalog_file.write_text(
        f'[models.coder]\nrepo = "{model_dir}"\ntask = "chat"\ntrust_remote_code = true\n'
    )
    plugins = discover()
    assert resolve("coder", plugins).source.trust_remote_code
    plugins.catalog["coder"] = replace(plugins.catalog["coder"], origin="some-plugin")
    assert not resolve("coder", plugins).source.trust_remote_code
