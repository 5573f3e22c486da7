"""kancompress: make trained Kolmogorov-Arnold Networks small (MetaCluster, arXiv 2510.19105)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import os

    from kancompress.models import KANModel

__version__ = "0.1.0"


def load(path: str | os.PathLike[str]) -> KANModel:
    """A checkpoint of any kind as a ready `torch.nn.Module` in eval mode: raw inputs in (the stored data transform
    is part of it), logits or regression outputs out.

        >>> import kancompress, torch
        >>> model = kancompress.load("metakan-k16-ft.safetensors")     # doctest: +SKIP
        >>> logits = model(torch.rand(5, 64) * 2 - 1)                   # doctest: +SKIP
    """
    from kancompress.format.checkpoint import load_checkpoint

    return load_checkpoint(path).model.eval()
