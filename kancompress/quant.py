"""Storage precision of codebooks: float32, float16, bfloat16, or int8 with one symmetric scale per layer."""

from __future__ import annotations

import torch


CODEBOOK_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int8": torch.int8,
}


def to_storage(codebook: torch.Tensor, dtype: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(stored codebook, int8 scale or None). int8: q = round(c / s) in [-127, 127] with s = max|c| / 127."""
    codebook = codebook.detach().float()
    if dtype != "int8":
        return codebook.to(CODEBOOK_DTYPES[dtype]), None
    peak = float(codebook.abs().max()) if codebook.numel() else 0.0
    scale = torch.tensor([peak / 127.0 if peak > 0 else 1.0], dtype=torch.float32)  # (1,)
    return torch.round(codebook / scale).clamp(-127, 127).to(torch.int8), scale


def from_storage(stored: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """The float32 codebook a stored one stands for."""
    values = stored.float()
    return values * scale if scale is not None else values


def round_trip(codebook: torch.Tensor, dtype: str) -> torch.Tensor:
    """`codebook` as it will read back after storage at `dtype` (float32)."""
    return from_storage(*to_storage(codebook, dtype))
