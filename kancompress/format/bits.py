"""Bit packing of codebook indices: n indices of `bits` bits each, least-significant bit first."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def index_bits(k: int) -> int:
    """Bits per stored index for a codebook of k entries: max(1, ceil(log2 k))."""
    return max(1, math.ceil(math.log2(k)))


def packed_length(n: int, bits: int) -> int:
    """Bytes taken by n indices of `bits` bits, padded to a whole byte: ceil(n·bits/8)."""
    return (n * bits + 7) // 8


def pack_bits(indices: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack non-negative integers < 2**bits into bytes, least-significant bit first.

    Index j occupies bits j·bits .. j·bits+bits-1 of a little-endian bit stream; bit p of the stream is bit
    p % 8 of byte p // 8; the last byte is zero-padded.

    Example:
        >>> import torch
        >>> pack_bits(torch.tensor([1, 2, 3]), 2).tolist()  # stream 10 01 11 00 -> 0b00111001
        [57]
    """
    import torch

    if not 1 <= bits <= 16:
        raise ValueError(f"bits must be in 1..16, got {bits}")
    values = indices.detach().cpu().numpy().astype(np.int64).reshape(-1)
    if values.size and (values.min() < 0 or values.max() >= (1 << bits)):
        raise ValueError(f"indices must lie in [0, {1 << bits}) to be packed in {bits} bits")
    stream = ((values[:, None] >> np.arange(bits)) & 1).astype(np.uint8).reshape(-1)  # (n·bits,)
    return torch.from_numpy(np.packbits(stream, bitorder="little"))


def unpack_bits(packed: torch.Tensor, bits: int, n: int) -> torch.Tensor:
    """Inverse of `pack_bits`: the first n indices, as int64."""
    import torch

    if packed.numel() != packed_length(n, bits):
        raise ValueError(f"expected {packed_length(n, bits)} packed bytes for {n} indices of {bits} bits")
    stream = np.unpackbits(packed.detach().cpu().numpy().astype(np.uint8), bitorder="little")[: n * bits]
    weights = (1 << np.arange(bits)).astype(np.int64)
    return torch.from_numpy(stream.reshape(n, bits).astype(np.int64) @ weights)  # (n,)
