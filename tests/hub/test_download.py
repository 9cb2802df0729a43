"""Downloads with the real huggingface-hub client against a local Hub."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from localinfer.errors import (
    DownloadCancelled,
    DownloadFailed,
    InvalidRequest,
    ModelNotFound,
    OfflineModeEnabled,
)
from localinfer.hub.cache import cached_snapshot
from localinfer.hub.download import DownloadTarget, download_model, download_target, pull
from localinfer.hub.progress import DownloadProgress
from tests.fixtures.hub_server import TINY_BERT_REPO, HubRepo, HubServer

SHARDS = {
    "config.json": b'{"model_type": "bert"}',
    "model-00001-of-00002.safetensors": os.urandom(600_000),
    "model-00002-of-00002.safetensors": os.urandom(600_000),
}


def test_pull_fetches_only_what_the_handler_needs_into_the_hf_cache(
    tiny_bert_repo: HubRepo, hub: HubServer, hf_home: Path
) -> None:
    result = download_model(download_target(TINY_BERT_REPO, {}))

    assert result.path.is_relative_to(hf_home / "hub")
    fetched = set(hub.fetched())
    assert "model.safetensors" in fetched and "1_Pooling/config.json" in fetched
    assert not fetched & {"pytorch_model.bin", "onnx/model.onnx", "README.md"}
    for name in fetched:
        assert (result.path / name).read_bytes() == tiny_bert_repo.files[name]
    assert cached_snapshot(TINY_BERT_REPO) == result.path
    assert (
        result.fetched_bytes
        == result.total_bytes
        == sum(len(tiny_bert_repo.files[name]) for name in fetched)
    )


def test_progress_runs_from_zero_to_the_known_total(hub: HubServer) -> None:
    hub.add_repo("org/sharded", SHARDS)
    hub.faults.chunk_delay_s = 0.02  # 0.4 s in all: several reports on the way
    reports: list[DownloadProgress] = []

    download_model(download_target("org/sharded", {}), on_progress=reports.append)

    total = sum(len(data) for data in SHARDS.values())
    assert reports[0].done_bytes == 0 and reports[0].total_bytes == total
    done = [report.done_bytes for report in reports]
    assert done == sorted(done), "progress never goes backwards"
    assert any(0 < value < total for value in done), "intermediate progress was reported"
    final = reports[-1]
    assert final.finished and final.done_bytes == total
    assert final.files_done == final.files_total == 3


def test_a_dropped_connection_resumes_with_a_range_request(hub: HubServer) -> None:
    repo = hub.add_repo("org/flaky", SHARDS)
    hub.faults.drop_after["model-00001-of-00002.safetensors"] = 300_000

    result = download_model(download_target("org/flaky", {}))

    resumed = [r.range for r in hub.requests if r.range]
    assert len(resumed) == 1
    offset = int(resumed[0].removeprefix("bytes=").rstrip("-"))
    assert 0 < offset <= 300_000
    shard = "model-00001-of-00002.safetensors"
    assert (result.path / shard).read_bytes() == repo.files[shard]


def test_an_interrupted_pull_keeps_finished_files_and_fetches_only_the_rest(
    hub: HubServer,
) -> None:
    hub.add_repo("org/sharded", SHARDS)
    hub.faults.chunk_delay_s = 0.03  # a shard takes 0.3 s: several progress reports
    target = download_target("org/sharded", {})
    cancel = threading.Event()
    first_shard = len(SHARDS["config.json"]) + len(SHARDS["model-00001-of-00002.safetensors"])

    def cancel_in_second_shard(progress: DownloadProgress) -> None:
        if progress.done_bytes > first_shard:
            cancel.set()

    with pytest.raises(DownloadCancelled):
        download_model(target, on_progress=cancel_in_second_shard, cancel=cancel, max_workers=1)
    assert cached_snapshot("org/sharded") is None, "a partial snapshot is not a cached model"

    hub.requests.clear()
    result = download_model(target)

    assert hub.fetched() == ["model-00002-of-00002.safetensors"]
    assert result.fetched_bytes == len(SHARDS["model-00002-of-00002.safetensors"])
    assert cached_snapshot("org/sharded") == result.path


def test_offline_mode_fails_at_once_without_a_request(
    hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.add_repo("org/sharded", SHARDS)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineModeEnabled, match="HF_HUB_OFFLINE"):
        download_model(download_target("org/sharded", {}))
    with pytest.raises(OfflineModeEnabled):
        download_model(DownloadTarget("x", "org/sharded"), offline=True)
    assert hub.requests == []


def test_hub_errors_are_told_in_the_project_hierarchy(
    hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ModelNotFound, match=r"org/missing .* not found"):
        download_model(download_target("org/missing", {}))
    hub.add_repo("org/sharded", SHARDS)
    with pytest.raises(ModelNotFound, match="no revision 'v9'"):
        download_model(download_target("org/sharded", {}, revision="v9"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(DownloadFailed, match=r"127\.0\.0\.1:9"):
        download_model(download_target("org/sharded", {}))


def test_names_that_are_not_repo_ids_never_reach_the_hub() -> None:
    with pytest.raises(ModelNotFound, match="neither a catalog alias"):
        download_target("../../etc/passwd", {})
    for revision in ("../../../tmp/x", "/abs", "main/../../x"):
        with pytest.raises(InvalidRequest, match="not a valid revision"):
            download_target("org/name", {}, revision=revision)
    assert download_target("org/name", {}, revision="refs/pr/1").revision == "refs/pr/1"


def test_pull_from_python_draws_a_tqdm_bar(
    tiny_bert_repo: HubRepo, capsys: pytest.CaptureFixture[str]
) -> None:
    result = pull(TINY_BERT_REPO, catalog={})
    assert result.repo_id == TINY_BERT_REPO
    bar = capsys.readouterr().err
    assert TINY_BERT_REPO in bar and "100%" in bar


def test_a_full_disk_stops_the_download_cleanly_and_counts_nothing_cached(
    hub: HubServer, hf_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from huggingface_hub import file_download

    from localinfer.errors import DiskFull

    hub.add_repo("org/too-big", SHARDS)
    original = file_download.http_get

    class FullDisk:
        """A file that takes 100 KB, then finds the disk full."""

        def __init__(self, file: Any) -> None:
            self.file, self.written = file, 0

        def write(self, data: bytes) -> int:
            self.written += len(data)
            if self.written > 100_000:
                raise OSError(errno.ENOSPC, "No space left on device")
            return int(self.file.write(data))

        def __getattr__(self, name: str) -> Any:
            return getattr(self.file, name)

    def http_get(url: str, temp_file: Any, **kwargs: Any) -> None:
        original(url, FullDisk(temp_file), **kwargs)

    monkeypatch.setattr(file_download, "http_get", http_get)
    with pytest.raises(DiskFull) as raised:
        download_model(download_target("org/too-big", {}))
    message = raised.value.message
    assert "is full" in message and "localinfer rm" in message and "HF_HOME" in message
    assert raised.value.code == "disk_full"
    assert cached_snapshot("org/too-big") is None  # nothing counts as complete
    assert not list(hf_home.rglob("*.incomplete"))  # no partial blob left taking room


def test_a_download_larger_than_the_free_space_is_refused_before_it_starts(
    hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil
    from collections import namedtuple

    from localinfer.errors import DiskFull

    hub.add_repo("org/huge", SHARDS)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(DiskFull, match="needs 1200"):
        download_model(download_target("org/huge", {}))
