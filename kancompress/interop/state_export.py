"""Export: a kancompress model (any kind, decoded) as a dense state_dict in an upstream library's own layout,
which that library's container loads with `load_state_dict` and runs to the same outputs."""

from __future__ import annotations

from collections.abc import Callable

import torch

from kancompress.errors import FormatError
from kancompress.layers import KANLinear
from kancompress.models import KANModel

EXPORT_LIBRARIES: tuple[str, ...] = ("efficient-kan", "fastkan")


def export_state_dict(model: KANModel, library: str) -> dict[str, torch.Tensor]:
    """A dense state_dict in the library's own key layout, decoded from any kind of kancompress model, that the
    library's `KAN` / `FastKAN` container loads with `load_state_dict` and runs to the same outputs."""
    exporters: dict[str, tuple[str, Callable[[KANModel], dict[str, torch.Tensor]]]] = {
        "efficient-kan": ("kan", _efficient_kan_layout), "fastkan": ("fastkan", _fastkan_layout),
    }
    if library not in exporters:
        raise FormatError(f"unknown export target {library!r}; choose from: {', '.join(EXPORT_LIBRARIES)}")
    wanted, layout = exporters[library]
    config = model.config
    if model.normalize is not None:
        raise FormatError(f"this model applies a stored data transform (it was trained with --data or on "
                          f"{config.task} data); {library}'s layout has no place for it, so the export would "
                          "silently change its outputs")
    if config.conv is not None or config.model != wanted or config.base_activation != "silu":
        raise FormatError(f"only fully-connected {wanted} models with SiLU export to {library}; this one is "
                          f"{config.arch} {config.model}")
    if config.norm_between or config.layer_norms or config.basis_norm is not None:
        raise FormatError(f"this model has LayerNorms where {library}'s container has none (or lacks one it has); "
                          "its layout has no place for them")
    with torch.no_grad():
        state = layout(model)
    return {name: t.contiguous().float() for name, t in state.items()}


def _layer_vectors(model: KANModel) -> list[tuple[int, KANLinear, torch.Tensor]]:
    """(index, layer, its (out, in, |w|) edge vectors) of a fully-connected model."""
    return [(l, layer, vectors.reshape(*layer.edge_shape, -1))
            for l, (layer, vectors) in enumerate(zip(model.fc_layers(), model.edge_vectors()))]


def _efficient_kan_layout(model: KANModel) -> dict[str, torch.Tensor]:
    if model.config.output_bias:
        raise FormatError("this model has output biases (e.g. imported from pykan), which efficient-kan lacks")
    state: dict[str, torch.Tensor] = {}
    for l, layer, w in _layer_vectors(model):
        nb = layer.num_basis
        state[f"layers.{l}.base_weight"] = w[..., nb].clone()
        state[f"layers.{l}.spline_weight"] = w[..., :nb].clone()
        state[f"layers.{l}.spline_scaler"] = torch.ones(layer.edge_shape)  # folded into the coefficients
        state[f"layers.{l}.grid"] = layer.basis.grid.clone()
    return state


def _fastkan_layout(model: KANModel) -> dict[str, torch.Tensor]:
    basis = model.config.basis
    if basis.denominator is not None:
        default = (basis.grid_max - basis.grid_min) / (basis.grid_size - 1)
        if abs(basis.denominator - default) > 1e-12:
            raise FormatError("FastKAN's container cannot set a custom RBF width; this model uses one")
    state: dict[str, torch.Tensor] = {}
    for l, layer, w in _layer_vectors(model):
        out_f, in_f = layer.edge_shape
        nb, p = layer.num_basis, f"layers.{l}."
        state[p + "layernorm.weight"] = _built_norm(layer.input_norm).weight.detach().clone()
        state[p + "layernorm.bias"] = _built_norm(layer.input_norm).bias.detach().clone()
        state[p + "rbf.grid"] = layer.basis.grid.clone()
        state[p + "spline_linear.weight"] = w[..., :nb].reshape(out_f, in_f * nb).clone()  # input-major
        state[p + "base_linear.weight"] = w[..., nb].clone()
        state[p + "base_linear.bias"] = _built_bias(layer.bias).detach().clone()
    return state


def _built_norm(norm: torch.nn.LayerNorm | None) -> torch.nn.LayerNorm:
    assert norm is not None
    return norm


def _built_bias(bias: torch.nn.Parameter | None) -> torch.nn.Parameter:
    assert bias is not None
    return bias
