"""Entropy coding of codebook indices: a byte-wise rANS coder with a static, exactly reproducible model.

The model is the symbol counts of the layer (stored in the file); both sides derive the same 16-bit quantized
frequencies from them with `quantize_counts`, so the coded stream depends on nothing but the counts.
Coder: range asymmetric numeral systems (Duda 2013) in the byte-renormalising form — state x in [2^23, 2^31),
encode symbol s as x' = (x // f_s)·2^16 + (x mod f_s) + c_s after emitting low bytes while x >= f_s·2^15.
The stream is written so that decoding reads it front to back.
"""

from __future__ import annotations

import math

import numpy as np

PROB_BITS = 16
PROB_SCALE = 1 << PROB_BITS
RANS_L = 1 << 23


def entropy_bits(counts: np.ndarray | list[int]) -> float:
    """Empirical entropy H(I) in bits per symbol of a count vector."""
    c = np.asarray(counts, dtype=np.float64)
    c = c[c > 0]
    p = c / c.sum()
    return float(-(p * np.log2(p)).sum())


def quantize_counts(counts: np.ndarray | list[int]) -> np.ndarray:
    """Frequencies summing to 2^16, proportional to `counts`, at least 1 for every used symbol (deterministic)."""
    c = np.asarray(counts, dtype=np.int64)
    total = int(c.sum())
    if total <= 0:
        raise ValueError("counts must have a positive sum")
    freq = np.where(c > 0, np.maximum(1, (c * PROB_SCALE) // total), 0).astype(np.int64)
    # Hand the rounding surplus or deficit to the most frequent symbols, largest first (ties: lower index).
    order = sorted(range(len(c)), key=lambda s: (-int(c[s]), s))
    diff = PROB_SCALE - int(freq.sum())
    i = 0
    while diff != 0:
        s = order[i % len(order)]
        if c[s] > 0 and (diff > 0 or freq[s] > 1):
            step = 1 if diff > 0 else -1
            freq[s] += step
            diff -= step
        i += 1
    return freq


def rans_encode(symbols: np.ndarray, counts: np.ndarray | list[int]) -> bytes:
    """Encode symbols (each with a positive count) into a byte stream."""
    freq = quantize_counts(counts)
    cum = np.concatenate([[0], np.cumsum(freq)[:-1]])
    freq_l, cum_l = freq.tolist(), cum.tolist()
    out = bytearray()
    x = RANS_L
    shift = (RANS_L >> PROB_BITS) << 8
    for s in reversed(np.asarray(symbols, dtype=np.int64).tolist()):
        f = freq_l[s]
        if f == 0:
            raise ValueError(f"symbol {s} has count 0")
        x_max = shift * f
        while x >= x_max:
            out.append(x & 0xFF)
            x >>= 8
        x = ((x // f) << PROB_BITS) + (x % f) + cum_l[s]
    out += x.to_bytes(4, "little")  # after the reversal below: the state comes first, big-endian
    out.reverse()
    return bytes(out)


def rans_decode(stream: bytes, counts: np.ndarray | list[int], n: int) -> np.ndarray:
    """Decode n symbols; raises ValueError on a stream that is too short or does not end cleanly."""
    freq = quantize_counts(counts)
    cum = np.concatenate([[0], np.cumsum(freq)[:-1]])
    slot_symbol = np.repeat(np.arange(len(freq)), freq).tolist()  # (2^16,) slot -> symbol
    freq_l, cum_l = freq.tolist(), cum.tolist()
    if len(stream) < 4:
        raise ValueError("rANS stream is shorter than its 4-byte state")
    x = int.from_bytes(stream[:4], "big")
    position, size = 4, len(stream)
    mask = PROB_SCALE - 1
    result = [0] * n
    for i in range(n):
        slot = x & mask
        s = slot_symbol[slot]
        result[i] = s
        x = freq_l[s] * (x >> PROB_BITS) + slot - cum_l[s]
        while x < RANS_L:
            if position >= size:
                raise ValueError("rANS stream ended early")
            x = (x << 8) | stream[position]
            position += 1
    if x != RANS_L or position != size:
        raise ValueError("rANS stream does not end in its initial state")
    return np.asarray(result, dtype=np.int64)


def rans_size_estimate(counts: np.ndarray | list[int]) -> int:
    """Bytes the stream will take, within a few bytes: n·H under the quantized model, plus the 4-byte state."""
    c = np.asarray(counts, dtype=np.float64)
    freq = quantize_counts(counts).astype(np.float64)
    used = c > 0
    bits = float(-(c[used] * np.log2(freq[used] / PROB_SCALE)).sum())
    return math.ceil(bits / 8) + 4
