"""Reading what users save: a state_dict file (.safetensors, .pt/.pth), unwrapped from the containers people
put it in, with the facts about the file that later steps need (does it keep module order?).

Layouts handled here, for every library:
- a plain state_dict (`torch.save(model.state_dict())`, `safetensors.torch.save_file`);
- a training checkpoint dict: `{"epoch": ..., "model_state_dict": {...}, "optimizer_state_dict": {...}}`, or the
  state under `state_dict`, `model`, `model_state`, `net` or `module`;
- DataParallel's `module.` prefix and torch-conv-kan's `L1` wrapper (`.module.` infix), dropped from every name.
Any other wrapper prefix (`model.kan.layers.0...`) stays and is found by the library's importer (`layout`).
`.pt` files keep the order in which modules were registered (a pickled OrderedDict); safetensors files sort
their tensors, so for them order must come from names or shapes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kancompress.errors import FormatError

CHECKPOINT_KEYS: tuple[str, ...] = ("model_state_dict", "state_dict", "model", "model_state", "net", "module")
"""Where training scripts keep the model's state_dict inside a checkpoint dict, in the order they are tried."""


@dataclass(frozen=True)
class SourceState:
    """A state_dict as read: `tensors` (names without wrapper prefixes, floats as float32), whether their order
    is the module order (`ordered`), where it came from (`origin`, for messages) and the checkpoint-dict key it
    was found under (`container`, or None)."""

    tensors: dict[str, torch.Tensor]
    ordered: bool
    origin: str
    container: str | None = None


def source_from_state_dict(state: dict[str, Any], origin: str, ordered: bool = True) -> SourceState:
    """A SourceState from an in-memory state_dict (or training checkpoint dict)."""
    state, container = unwrap_checkpoint(state, origin)
    tensors = {strip_wrappers(name): tensor.detach().float() if tensor.is_floating_point() else tensor.detach()
               for name, tensor in state.items()}
    return SourceState(tensors, ordered, origin, container)


def read_source(path: str | os.PathLike[str]) -> SourceState:
    """The state_dict in a .safetensors file, or in a .pt/.pth file loaded with `torch.load(weights_only=True)`
    (never pickled code)."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{path}: no such file; check the path")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state: dict[str, Any] = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise FormatError(f"{path}: not a readable safetensors file ({exc})") from None
        return source_from_state_dict(state, str(path), ordered=False)
    try:
        loaded: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a pickle with code, a truncated archive, ...: all refused the same way
        raise FormatError(f"{path}: not a plain PyTorch state_dict (it does not load with "
                          "torch.load(weights_only=True); arbitrary pickles are never run)") from None
    if not isinstance(loaded, dict):
        raise FormatError(f"{path}: holds a {type(loaded).__name__}, not a state_dict (a mapping of names to "
                          "tensors); save model.state_dict()")
    return source_from_state_dict(loaded, str(path), ordered=True)


def unwrap_checkpoint(state: dict[str, Any], origin: str) -> tuple[dict[str, torch.Tensor], str | None]:
    """The model's tensors of a state_dict or a training checkpoint dict, and the key they were under."""
    if state and all(isinstance(value, torch.Tensor) for value in state.values()):
        return state, None
    for key in CHECKPOINT_KEYS:
        inner = state.get(key)
        if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            return inner, key
    if not state:
        raise FormatError(f"{origin}: the state_dict is empty")
    nested = sorted(key for key, value in state.items() if isinstance(value, dict))
    hint = (f"; it holds dicts under {', '.join(repr(k) for k in nested)} (expected the model's under one of "
            f"{', '.join(CHECKPOINT_KEYS)})" if nested else "")
    raise FormatError(f"{origin}: does not hold a state_dict (a mapping of names to tensors){hint}")


def strip_wrappers(name: str) -> str:
    """Drop DataParallel's `module.` prefix and torch-conv-kan's `.module.` infix (its `L1` wrapper)."""
    name = name.removeprefix("module.")
    return name.replace(".module.", ".")


def read_recorded_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The `kancompress_*` metadata `kancompress export` writes into a .safetensors file (dataset, task), so an
    export imported again keeps them; {} for other files."""
    if Path(path).suffix != ".safetensors":
        return {}
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError):
        return {}
    return {key: value for key, value in metadata.items() if key.startswith("kancompress_")}
