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
    n_out = -(-audio.size * up // down)  # ceil
    # input sample k = base - half + 1 + j (base = n * down // up) sits at padded[base + 1 + j]
    padded = np.concatenate(
        [np.zeros(half, np.float32), audio, np.zeros(3 * half + down, np.float32)]
    )
    if up <= _FEW_PHASES:
        return _by_phase(padded, bank, up, down, n_out)
    return _by_window(padded, bank, up, down, n_out)


#: up to this many filter phases (24 or 48 kHz to 16 kHz: 2 and 1), each phase's outputs
#: are computed together from strided views, 4-7x faster than gathering every output's
#: window; with more (22.05 or 44.1 kHz: 320 and 160) the strided pieces are too short to
#: gain, and the windows are gathered.
_FEW_PHASES = 32


def _by_phase(
    padded: Audio, bank: npt.NDArray[np.float32], up: int, down: int, n_out: int
) -> Audio:
    """Outputs ``p, p + up, ...`` share filter phase and sit ``down`` inputs apart."""
    out = np.empty(n_out, dtype=np.float32)
    for first in range(min(up, n_out)):
        base, phase = divmod(first * down, up)
        count = len(range(first, n_out, up))
        acc = np.zeros(count, dtype=np.float32)
        for j, weight in enumerate(bank[phase]):
            start = base + 1 + j
            acc += weight * padded[start : start + (count - 1) * down + 1 : down]
        out[first::up] = acc
    return out


def _by_window(
    padded: Audio, bank: npt.NDArray[np.float32], up: int, down: int, n_out: int
) -> Audio:
    """Each output's window of inputs gathered into a matrix (in bounded chunks)."""
    taps = bank.shape[1]
    out = np.empty(n_out, dtype=np.float32)
    offsets = np.arange(taps)
    chunk = max(1, 2_000_000 // taps)  # bound the gathered window matrix to ~8 MB
    for start in range(0, n_out, chunk):
        n = np.arange(start, min(n_out, start + chunk), dtype=np.int64)
        base, phase = np.divmod(n * down, up)
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
