"""The samples every decoder produces (mono float32, :data:`SAMPLE_RATE`), the length check
they all apply, and band-limited resampling between rates.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from localinfer.errors import InvalidRequest, RequestTooLarge

SAMPLE_RATE = 16_000
Audio = npt.NDArray[np.float32]


def resample(audio: npt.NDArray[np.floating], orig_rate: int, new_rate: int) -> Audio:
    """Band-limited resampling (windowed-sinc polyphase filter), numpy only.

    Every output sample is a dot product of the nearest input samples with one of
    ``new_rate / gcd`` precomputed filter phases; the cut-off sits just under the lower
    Nyquist frequency, so downsampling does not alias.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if orig_rate == new_rate or audio.size == 0:
        return audio
    if orig_rate <= 0 or new_rate <= 0:
        raise InvalidRequest(f"invalid sample rate {orig_rate} -> {new_rate}")
    g = math.gcd(orig_rate, new_rate)
    up, down = new_rate // g, orig_rate // g
    bank, half = filter_bank(up, down)
    taps = 2 * half
    n_out = -(-audio.size * up // down)  # ceil
    padded = np.concatenate([np.zeros(half, np.float32), audio, np.zeros(half + taps, np.float32)])
    out = np.empty(n_out, dtype=np.float32)
    offsets = np.arange(taps)
    chunk = max(1, 2_000_000 // taps)  # bound the gathered window matrix to ~8 MB
    for start in range(0, n_out, chunk):
        n = np.arange(start, min(n_out, start + chunk), dtype=np.int64)
        base, phase = np.divmod(n * down, up)
        # input sample k = base - half + 1 + j sits at padded[base + 1 + j]
        windows = padded[(base + 1)[:, None] + offsets[None, :]]
        out[start : start + n.size] = np.einsum("ij,ij->i", windows, bank[phase])
    return out


def check_duration(seconds: float, max_seconds: float) -> None:
    if seconds > max_seconds + 1e-9:
        raise RequestTooLarge(
            f"the audio is {seconds:.1f} s long; this server accepts at most {max_seconds:g} s",
            param="file",
        )


@lru_cache(maxsize=32)
def filter_bank(up: int, down: int) -> tuple[npt.NDArray[np.float32], int]:
    """``up`` phases of a Kaiser-windowed sinc low-pass filter, ``2 * half`` taps each.

    Row ``p`` serves output samples that fall ``p / up`` of the way past an input sample;
    its tap ``j`` weighs the input sample ``half - 1 - j`` positions before that one.
    """
    zero_crossings, rolloff, beta = 16, 0.945, 8.6
    # cut-off as a fraction of the input Nyquist frequency: the lower of the two rates
    cutoff = min(1.0, up / down) * rolloff
    half = math.ceil(zero_crossings / cutoff)
    tau = (np.arange(up, dtype=np.float64) / up)[:, None] + (
        half - 1 - np.arange(2 * half, dtype=np.float64)
    )[None, :]
    x = np.clip(tau / half, -1.0, 1.0)
    window = np.i0(beta * np.sqrt(1.0 - x * x)) / np.i0(beta)
    bank = cutoff * np.sinc(cutoff * tau) * window
    return bank.astype(np.float32), half
