#!/usr/bin/env bash
# The system tools some tests use: ffmpeg (audio decoding), espeak-ng (speech for the
# tests) and tmux (the TUI checked in a real terminal), from the system packages when
# running as root and they are missing; otherwise a note, and the tests that need them skip.
# Used by scripts/install.sh and .ci/lowest.
set -euo pipefail

missing=()
for tool in ffmpeg espeak-ng tmux; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "note: ${missing[*]} not found; install them for the audio and terminal tests (they skip without)" >&2
    fi
fi
