"""``localinfer pull / ls / rm / catalog`` and ``serve``'s downloads, run in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from localinfer.cli.main import main
from localinfer.config import Settings
from localinfer.hub.user_catalog import user_catalog_path
from tests.fixtures.hub_server import TINY_BERT_REPO, HubRepo, HubServer


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_pull_ls_rm(
    tiny_bert_repo: HubRepo, hub: HubServer, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "ls")
    assert status == 0 and "no models" in out

    status, out, err = run(capsys, "pull", TINY_BERT_REPO)
    assert status == 0, err
    assert f"{TINY_BERT_REPO}: " in out and "files" in out
    assert f"{TINY_BERT_REPO}: 100%" in err  # not a terminal: progress as lines

    status, out, _ = run(capsys, "ls")
    row = next(line for line in out.splitlines() if line.startswith(TINY_BERT_REPO))
    assert "embeddings" in row and "transformers-embeddings" in row and "kB" in row

    status, out, _ = run(capsys, "ls", "--json")
    (listed,) = json.loads(out)
    assert listed["repo_id"] == TINY_BERT_REPO and listed["servable"]

    status, out, _ = run(capsys, "pull", TINY_BERT_REPO)  # nothing left to fetch
    assert "already cached" in out

    status, out, _ = run(capsys, "rm", TINY_BERT_REPO)
    assert status == 0 and "freed" in out and "removed" in out
    assert "no models" in run(capsys, "ls")[1]


def test_an_alias_from_the_users_catalog(
    tiny_bert_repo: HubRepo, capsys: pytest.CaptureFixture[str]
) -> None:
    user_catalog_path().write_text(
        f'[models.tiny]\nrepo = "{TINY_BERT_REPO}"\ntask = "embeddings"\ndescription = "mine"\n'
    )
    out = run(capsys, "catalog")[1]
    row = next(line for line in out.splitlines() if line.startswith("tiny "))
    assert "user" in row and "mine" in row and " - " in row  # not cached yet
    assert "whisper-tiny" in out

    assert run(capsys, "pull", "tiny")[0] == 0
    catalog = json.loads(run(capsys, "catalog", "--json")[1])
    assert next(e for e in catalog if e["alias"] == "tiny")["cached"]
    assert "tiny" in run(capsys, "ls")[1]
    assert "removed" in run(capsys, "rm", "tiny")[1]


def test_errors_are_one_line_with_exit_status_2(
    hub: HubServer, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run(capsys, "pull", "org/nothing-here")
    assert status == 2 and "not found" in err
    status, _, err = run(capsys, "rm", "/etc/passwd")
    assert status == 2 and "not a valid model id" in err


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_serve_offline_fails_at_once_naming_the_pull_command(
    tiny_bert_repo: HubRepo,
    hub: HubServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    # in-process: leave the logging set-up of the test run alone
    monkeypatch.setattr("localinfer.cli.serve.configure_logging", lambda level: None)
    flags = ["--offline"] if how == "flag" else []
    if how == "environment":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    status, _, err = run(
        capsys, "serve", "--device", "cpu", "--port", "0", "--models", TINY_BERT_REPO, *flags
    )
    assert status == 2
    assert f"`localinfer pull {TINY_BERT_REPO}`" in err and "downloads are off" in err
    assert hub.requests == []


def test_serve_pulls_a_missing_model_before_serving_it(
    tiny_bert_repo: HubRepo, hub: HubServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from localinfer.cli.definitions import catalog_definitions

    settings = Settings(device="cpu")
    (definition,) = catalog_definitions([TINY_BERT_REPO], [], ["cpu"], settings)
    assert definition.name == TINY_BERT_REPO and definition.task == "embeddings"
    assert "pulling it first" in capsys.readouterr().err
    assert "model.safetensors" in hub.fetched()

    hub.requests.clear()
    catalog_definitions([TINY_BERT_REPO], [], ["cpu"], settings)  # cached now: no request
    assert hub.requests == []


def test_local_paths_are_served_as_given_never_downloaded(
    tiny_bert_dir: Path, hub: HubServer
) -> None:
    from localinfer.cli.definitions import catalog_definitions

    (definition,) = catalog_definitions([str(tiny_bert_dir)], [], ["cpu"], Settings())
    assert definition.task == "embeddings" and hub.requests == []


def test_a_terminal_gets_a_redrawn_rich_bar() -> None:
    import io

    from localinfer.cli.progress import DownloadDisplay
    from localinfer.hub.progress import DownloadProgress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    with DownloadDisplay("org/m", screen) as show:
        show(DownloadProgress("org/m", 2_000_000, 1_000_000, 2, 1, 0.5))
        show(DownloadProgress("org/m", 2_000_000, 2_000_000, 2, 2, 1.0, finished=True))
    drawn = screen.getvalue()
    assert "org/m" in drawn and "2.0/2.0 MB" in drawn and "\r" in drawn  # redrawn in place
