"""kancompress: make trained Kolmogorov-Arnold Networks small (MetaCluster, arXiv 2510.19105)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import os

    import torch

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


def from_module(module: torch.nn.Module, example_inputs: torch.Tensor, library: str | None = None, *,
                tolerance: float = 1e-4) -> KANModel:
    """A dense kancompress model of a live upstream KAN (efficient-kan, FastKAN, pykan, ChebyKAN, FourierKAN,
    torch-conv-kan), its base activation, RBF width, strides and module order read from the object, checked
    against `module(example_inputs)` before it is returned (a `FormatError` names the deviation beyond
    `tolerance` of the output scale).

        >>> kan = efficient_kan.KAN([64, 16, 10], base_activation=torch.nn.GELU)     # doctest: +SKIP
        >>> model = kancompress.from_module(kan, torch.rand(100, 64) * 2 - 1)         # doctest: +SKIP
    """
    from kancompress.interop.live import from_module as live_from_module

    return live_from_module(module, example_inputs, library, tolerance=tolerance)
