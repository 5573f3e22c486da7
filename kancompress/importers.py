"""Import state_dicts saved by upstream KAN libraries as kancompress dense models.

Each importer maps the library's per-edge parameters onto kancompress edge vectors (coefficients, then base
weight) exactly; see `../shared/research/kan-libraries.md` section 8 for layouts.

- efficient-kan `KAN`: `layers.{l}.{base_weight, spline_weight, spline_scaler, grid}`;
  coeffs[o,i] = spline_weight[o,i,:]·spline_scaler[o,i]; grid (in, G+2k+1) kept when adapted per input.
- FastKAN `FastKAN`: `layers.{l}.{layernorm.*, rbf.grid, spline_linear.weight, base_linear.*}`;
  coeffs[o,i] = spline_linear.weight.view(out, in, G)[o,i]; the RBF width is not stored upstream.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import torch

from kancompress.config import BasisConfig, ModelConfig
from kancompress.errors import FormatError
from kancompress.models import KANModel, build_model

LIBRARIES: tuple[str, ...] = ("efficient-kan", "fastkan")


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """A state_dict from .safetensors, or from .pt/.pth with `torch.load(weights_only=True)` (never pickled code)."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{path}: no such file; check the path")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise FormatError(f"{path}: not a readable safetensors file ({exc})") from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a pickle with code, a truncated archive, ...: all refused the same way
            raise FormatError(f"{path}: not a plain PyTorch state_dict (it does not load with "
                              "torch.load(weights_only=True); arbitrary pickles are never run)") from None
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise FormatError(f"{path}: does not hold a state_dict (a mapping of names to tensors)")
    return {_strip_wrappers(name): tensor.float() if tensor.is_floating_point() else tensor
            for name, tensor in state.items()}


def _strip_wrappers(name: str) -> str:
    """Drop DataParallel's `module.` prefix and torch-conv-kan's `.module.` infix."""
    name = name.removeprefix("module.")
    return name.replace(".module.", ".")


def detect_library(state: dict[str, torch.Tensor]) -> str:
    if any(name.endswith(".spline_scaler") or name.endswith(".spline_weight") for name in state):
        return "efficient-kan"
    if any(name.endswith(".spline_linear.weight") for name in state):
        return "fastkan"
    example = next(iter(state), "<empty>")
    raise FormatError(f"unrecognised state_dict (first key {example!r}); pass --from with one of: "
                      f"{', '.join(LIBRARIES)}")


def _layer_count(state: dict[str, torch.Tensor], marker: str) -> int:
    layers = {int(m.group(1)) for name in state if (m := re.fullmatch(rf"layers\.(\d+)\.{marker}", name))}
    if not layers or layers != set(range(len(layers))):
        raise FormatError(f"expected keys layers.0.{marker}, layers.1.{marker}, ... in the state_dict")
    return len(layers)


def _take(state: dict[str, torch.Tensor], used: set[str], name: str, shape: tuple[int, ...] | None) -> torch.Tensor:
    if name not in state:
        raise FormatError(f"key {name!r} is missing from the state_dict")
    tensor = state[name]
    if shape is not None and tuple(tensor.shape) != shape:
        raise FormatError(f"key {name!r} has shape {list(tensor.shape)}, expected {list(shape)}")
    used.add(name)
    return tensor


def _check_all_used(state: dict[str, torch.Tensor], used: set[str]) -> None:
    extra = sorted(set(state) - used)
    if extra:
        raise FormatError(f"unexpected key {extra[0]!r} in the state_dict")


def import_efficient_kan(state: dict[str, torch.Tensor]) -> KANModel:
    n_layers = _layer_count(state, "spline_weight")
    used: set[str] = set()
    spline = [_take(state, used, f"layers.{l}.spline_weight", None) for l in range(n_layers)]
    if any(s.dim() != 3 for s in spline):
        raise FormatError("spline_weight tensors must have shape (out, in, G+k)")
    widths = [spline[0].shape[1]] + [s.shape[0] for s in spline]
    n_basis = spline[0].shape[2]
    grids = [_take(state, used, f"layers.{l}.grid", None) for l in range(n_layers)]
    order = grids[0].shape[1] - n_basis - 1
    grid_size = n_basis - order
    if order < 0 or grid_size < 1:
        raise FormatError(f"layers.0.grid has {grids[0].shape[1]} knots, inconsistent with {n_basis} coefficients")
    lo, hi = float(grids[0][0, order]), float(grids[0][0, order + grid_size])
    config = ModelConfig(model="kan", widths=tuple(widths),
                         basis=BasisConfig(grid_size=grid_size, spline_order=order, grid_min=lo, grid_max=hi))
    uniform = build_model(config)
    adapted = any(
        g.shape != b.basis.grid.shape or not torch.allclose(g, b.basis.grid, atol=1e-6)
        for g, b in zip(grids, uniform.layers)
    )
    if adapted:  # grids moved by update_grid(): keep them per input
        config = dataclasses.replace(config, basis=dataclasses.replace(config.basis, stored_grid=True))
    model = build_model(config)
    for l, (layer, weight) in enumerate(zip(model.layers, spline)):
        out_f, in_f = layer.edge_shape
        _take(state, used, f"layers.{l}.spline_weight", (out_f, in_f, n_basis))
        scaler = (_take(state, used, f"layers.{l}.spline_scaler", (out_f, in_f))
                  if f"layers.{l}.spline_scaler" in state else torch.ones(out_f, in_f))
        base = _take(state, used, f"layers.{l}.base_weight", (out_f, in_f))
        grid = _take(state, used, f"layers.{l}.grid", (in_f, n_basis + order + 1))
        if adapted:
            layer.basis.grid.copy_(grid)
        vectors = torch.cat([weight * scaler[..., None], base[..., None]], dim=-1)  # (out, in, G+k+1)
        model.edges.vectors[l].data.copy_(vectors.reshape(-1, vectors.shape[-1]))
    _check_all_used(state, used)
    return model


def import_fastkan(state: dict[str, torch.Tensor], denominator: float | None = None) -> KANModel:
    n_layers = _layer_count(state, "spline_linear.weight")
    used: set[str] = set()
    base = [_take(state, used, f"layers.{l}.base_linear.weight", None) for l in range(n_layers)]
    widths = [base[0].shape[1]] + [b.shape[0] for b in base]
    grid = _take(state, used, "layers.0.rbf.grid", None)
    size = grid.numel()
    lo, hi = float(grid[0]), float(grid[-1])
    config = ModelConfig(model="fastkan", widths=tuple(widths),
                         basis=BasisConfig(grid_size=size, grid_min=lo, grid_max=hi, denominator=denominator))
    config.validate()
    model = build_model(config)
    for l, layer in enumerate(model.layers):
        out_f, in_f = layer.edge_shape
        centres = _take(state, used, f"layers.{l}.rbf.grid", (size,))
        if not torch.allclose(centres, layer.basis.grid, atol=1e-6):
            raise FormatError(f"key 'layers.{l}.rbf.grid' is not linspace({lo}, {hi}, {size}); unsupported")
        spline = _take(state, used, f"layers.{l}.spline_linear.weight", (out_f, in_f * size))
        weight = _take(state, used, f"layers.{l}.base_linear.weight", (out_f, in_f))
        layer.bias.data.copy_(_take(state, used, f"layers.{l}.base_linear.bias", (out_f,)))
        layer.input_norm.weight.data.copy_(_take(state, used, f"layers.{l}.layernorm.weight", (in_f,)))
        layer.input_norm.bias.data.copy_(_take(state, used, f"layers.{l}.layernorm.bias", (in_f,)))
        vectors = torch.cat([spline.view(out_f, in_f, size), weight[..., None]], dim=-1)  # (out, in, G+1)
        model.edges.vectors[l].data.copy_(vectors.reshape(-1, vectors.shape[-1]))
    _check_all_used(state, used)
    return model


def import_state_dict(
    state: dict[str, torch.Tensor], library: str | None = None, denominator: float | None = None
) -> KANModel:
    """A dense kancompress model reproducing an upstream library's state_dict (library auto-detected if None)."""
    library = library or detect_library(state)
    if library == "efficient-kan":
        return import_efficient_kan(state)
    if library == "fastkan":
        return import_fastkan(state, denominator)
    raise FormatError(f"unknown library {library!r}; choose from: {', '.join(LIBRARIES)}")
