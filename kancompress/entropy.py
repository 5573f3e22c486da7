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


# Context-adaptive coding (format v4, coding "context"): no model in the file; both sides learn it as they go.
#
# Edges are coded in storage order. Edge e's context is the pair (left, up) = (I[e-1], I[e-row]), k standing in for
# a neighbour that does not exist (e at the start of a row, or in the first row); `row` is stored per layer, e.g.
# 28 for the first layer of a KAN on 28×28 images, whose edges (o, i) then see the pixel to the left and the pixel
# above. Each index is binarised most significant bit first (a bit tree of `bits` levels); every (context, tree
# node) owns a 12-bit probability that moves 1/32 of the way toward each coded bit. The bits go through a
# byte-wise range coder with carry propagation (the coder of LZMA); its always-zero first byte is not stored, so
# the decoder reads exactly the stream's bytes.
CONTEXT_MAX_K = 64  # larger codebooks: (k+1)² contexts dilute the statistics and cost memory; rANS is used instead
_CTX_PROB_BITS = 12
_CTX_ONE = 1 << _CTX_PROB_BITS
_CTX_SHIFT = 5
_TOP = 1 << 24
_MASK32 = 0xFFFFFFFF


def _context_tables(k: int, row: int) -> tuple[int, list[int]]:
    """Bits per index and the initial probabilities of every (context, tree node), after checking k and row."""
    if not 2 <= k <= CONTEXT_MAX_K or row < 1:
        raise ValueError(f"context coding needs 2 <= k <= {CONTEXT_MAX_K} and row >= 1 (k={k}, row={row})")
    bits = max(1, (k - 1).bit_length())
    return bits, [_CTX_ONE >> 1] * ((k + 1) * (k + 1) << bits)


def context_encode(symbols: np.ndarray, k: int, row: int) -> bytes:
    """Code symbols in [0, k) with the context-adaptive coder (see above); `row` >= 1 sets the "up" neighbour."""
    bits, probs = _context_tables(k, row)
    values = np.asarray(symbols, dtype=np.int64).tolist()
    out = bytearray()
    low, span, cache, pending = 0, _MASK32, 0, 1

    def shift_low() -> None:
        nonlocal low, cache, pending
        if low < 0xFF000000 or low > _MASK32:  # the top byte is settled: emit it with any carry
            carry = low >> 32
            byte = cache
            while pending:
                out.append((byte + carry) & 0xFF)
                byte = 0xFF
                pending -= 1
            cache = (low >> 24) & 0xFF
        pending += 1
        low = (low & 0x00FFFFFF) << 8

    for e, value in enumerate(values):
        if not 0 <= value < k:
            raise ValueError(f"symbol {value} is outside [0, {k})")
        left = values[e - 1] if e % row else k
        up = values[e - row] if e >= row else k
        base = (left * (k + 1) + up) << bits
        node = 1
        for shift in range(bits - 1, -1, -1):
            bit = (value >> shift) & 1
            p = probs[base + node]
            bound = (span >> _CTX_PROB_BITS) * p
            if bit:
                low += bound
                span -= bound
                probs[base + node] = p - (p >> _CTX_SHIFT)
            else:
                span = bound
                probs[base + node] = p + ((_CTX_ONE - p) >> _CTX_SHIFT)
            while span < _TOP:
                span <<= 8
                shift_low()
            node = (node << 1) | bit
    for _ in range(5):
        shift_low()
    assert out[0] == 0, "the range coder's first byte is always zero"
    return bytes(out[1:])


def context_decode(stream: bytes, k: int, row: int, n: int) -> np.ndarray:
    """Decode n symbols; raises ValueError on a stream that is too short or has bytes left over."""
    bits, probs = _context_tables(k, row)
    if len(stream) < 4:
        raise ValueError("context-coded stream is shorter than its 4-byte start")
    code, span = int.from_bytes(stream[:4], "big"), _MASK32
    position, size = 4, len(stream)
    values = [0] * n
    top = 1 << bits
    for e in range(n):
        left = values[e - 1] if e % row else k
        up = values[e - row] if e >= row else k
        base = (left * (k + 1) + up) << bits
        node = 1
        while node < top:
            p = probs[base + node]
            bound = (span >> _CTX_PROB_BITS) * p
            if code < bound:
                span = bound
                probs[base + node] = p + ((_CTX_ONE - p) >> _CTX_SHIFT)
                node <<= 1
            else:
                code -= bound
                span -= bound
                probs[base + node] = p - (p >> _CTX_SHIFT)
                node = (node << 1) | 1
            while span < _TOP:
                if position >= size:
                    raise ValueError("context-coded stream ended early")
                span <<= 8
                code = ((code << 8) | stream[position]) & _MASK32
                position += 1
        value = node - top
        if value >= k:
            raise ValueError(f"context-coded stream holds index {value} >= k={k}")
        values[e] = value
    if position != size:
        raise ValueError(f"context-coded stream has {size - position} bytes left over")
    return np.asarray(values, dtype=np.int64)
