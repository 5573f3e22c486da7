"""Checking an import against the original model's outputs: the largest deviation, relative to the output scale.

deviation = max |ours - theirs| / max(max |theirs|, 1e-12): a model-wide scale, not per element, so outputs near
zero do not blow it up. An import is accepted within `DEFAULT_TOLERANCE` (1e-4 of the output scale: float32
rounding of the upstream forward is ~1e-7 to 1e-6)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kancompress.errors import FormatError
from kancompress.models import KANModel

DEFAULT_TOLERANCE = 1e-4


@dataclass(frozen=True)
class CheckResult:
    samples: int
    max_abs: float  # largest |ours - theirs|
    scale: float  # largest |theirs|
    deviation: float  # max_abs / scale
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.deviation <= self.tolerance

    def describe(self) -> str:
        return (f"max deviation {self.deviation:.2e} of the output scale ({self.max_abs:.3g} of {self.scale:.3g}) "
                f"on {self.samples} inputs; tolerance {self.tolerance:.0e}")

    def to_json(self) -> dict[str, float | int | bool]:
        return {"samples": self.samples, "max_abs": self.max_abs, "scale": self.scale, "deviation": self.deviation,
                "tolerance": self.tolerance, "passed": self.passed}


def compare(model: KANModel, inputs: torch.Tensor, expected: torch.Tensor,
            tolerance: float = DEFAULT_TOLERANCE) -> CheckResult:
    """Run `model` on `inputs` and measure how far it is from the original's `expected` outputs."""
    if not tolerance > 0:
        raise FormatError(f"the check tolerance must be > 0, not {tolerance}")
    model.eval()
    with torch.no_grad():
        ours = model(inputs.float()).double()
    theirs = expected.double().reshape(ours.shape[0], -1) if expected.dim() != ours.dim() else expected.double()
    if theirs.shape != ours.shape:
        raise FormatError(f"the original's outputs have shape {list(expected.shape)}, the imported model gives "
                          f"{list(ours.shape)}: not the same model (or not its outputs)")
    max_abs = float((ours - theirs).abs().max()) if ours.numel() else 0.0
    scale = max(float(theirs.abs().max()) if theirs.numel() else 0.0, 1e-12)
    if not np.isfinite(max_abs):
        max_abs = float("inf")
    return CheckResult(int(inputs.shape[0]), max_abs, scale, max_abs / scale, tolerance)


def read_check_file(path: str | os.PathLike[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs `x` and the original model's outputs `y` from an .npz file (`np.savez(path, x=..., y=...)`)."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{path}: no such file; --check takes an .npz with the original model's inputs x and "
                          "outputs y")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            missing = [name for name in ("x", "y") if name not in arrays.files]
            if missing:
                raise FormatError(f"{path}: no array {missing[0]!r} (found {', '.join(arrays.files) or 'none'}); "
                                  "save it with np.savez(path, x=inputs, y=original_model(inputs))")
            x, y = arrays["x"], arrays["y"]
    except (OSError, ValueError) as exc:
        raise FormatError(f"{path}: not a readable .npz file ({exc})") from None
    if len(x) != len(y) or len(x) == 0:
        raise FormatError(f"{path}: x has {len(x)} rows and y {len(y)}; they must be the same, non-zero number")
    if not (np.issubdtype(x.dtype, np.number) and np.issubdtype(y.dtype, np.number)):
        raise FormatError(f"{path}: x and y must be numeric arrays")
    return torch.from_numpy(np.asarray(x, dtype=np.float32)), torch.from_numpy(np.asarray(y, dtype=np.float64))
