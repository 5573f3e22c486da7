"""efficient-kan (Blealtan/efficient-kan) `KAN` / `KANLinear` stacks.

Per layer `{P}base_weight` (out, in), `{P}spline_weight` (out, in, G+k), `{P}spline_scaler` (out, in; absent with
`enable_standalone_scale_spline=False`), `{P}grid` (in, G+2k+1), a buffer that `update_grid` adapts per input.
Forward (`KANLinear.forward`): y = base_weight·act(x) + (spline_weight·spline_scaler)·B(x), so edge (o, i) has
vector (spline_weight[o,i,:]·spline_scaler[o,i], base_weight[o,i]). P is `layers.{l}.` for the `KAN` container,
`{l}.` for an `nn.Sequential` of `KANLinear`s, under any wrapper prefix; LayerNorms between, before or after the
layers are placed by `layout.place_norms`. `base_activation` (a class, `torch.nn.SiLU` by default) is not stored.
"""

from __future__ import annotations

import dataclasses

import torch

from kancompress.bases import BasisConfig
from kancompress.config import ModelConfig
from kancompress.errors import FormatError
from kancompress.interop.layout import (
    ImportOptions,
    Notes,
    StateReader,
    activation_option,
    built,
    edge_vectors,
    fill_norms,
    layer_stack,
    norm_config,
    place_norms,
    prefixes_with,
)
from kancompress.models import KANModel

LIBRARY = "efficient-kan"
USES = frozenset({"base_activation"})


def detect(names: list[str]) -> bool:
    return any(p + "grid" in names for p in prefixes_with(names, "spline_weight"))


def read(reader: StateReader, options: ImportOptions, notes: Notes) -> KANModel:
    state = reader.state
    found = [p for p in prefixes_with(state, "spline_weight") if p + "grid" in state]
    for prefix in found:
        if state[prefix + "spline_weight"].dim() != 3:
            raise FormatError(f"{LIBRARY}: key '{prefix}spline_weight' has shape "
                              f"{list(state[prefix + 'spline_weight'].shape)}, expected (out, in, G+k)")

    def widths_of(prefix: str) -> tuple[int, int]:
        out_f, in_f, _ = state[prefix + "spline_weight"].shape
        return in_f, out_f

    layers, widths = layer_stack(reader, found, widths_of)
    n_basis = state[layers[0] + "spline_weight"].shape[2]
    grids = [reader.take(p + "grid") for p in layers]
    order = grids[0].shape[1] - n_basis - 1
    grid_size = n_basis - order
    if order < 0 or grid_size < 1:
        raise FormatError(f"{LIBRARY}: {layers[0]}grid has {grids[0].shape[1]} knots, inconsistent with "
                          f"{n_basis} coefficients")
    norms = place_norms(reader, layers, widths)
    activation = activation_option(options, notes, LIBRARY, "silu", "KANLinear's default, torch.nn.SiLU")
    lo, hi = float(grids[0][0, order]), float(grids[0][0, order + grid_size])
    config = ModelConfig(model="kan", widths=tuple(widths), base_activation=activation,
                         basis=BasisConfig(grid_size=grid_size, spline_order=order, grid_min=lo, grid_max=hi),
                         **norm_config(norms, len(layers)))
    uniform = built(config, LIBRARY)
    adapted = any(g.shape != b.basis.grid.shape or not torch.allclose(g, b.basis.grid, atol=1e-6)
                  for g, b in zip(grids, uniform.fc_layers()))
    if adapted:  # grids moved by update_grid(): keep them per input
        config = dataclasses.replace(config, basis=dataclasses.replace(config.basis, stored_grid=True))
    model: KANModel = built(config, LIBRARY)
    for l, (prefix, layer) in enumerate(zip(layers, model.fc_layers())):
        out_f, in_f = layer.edge_shape
        weight = reader.take(prefix + "spline_weight", (out_f, in_f, n_basis))
        scaler = reader.take_optional(prefix + "spline_scaler", (out_f, in_f))
        base = reader.take(prefix + "base_weight", (out_f, in_f))
        grid = reader.take(prefix + "grid", (in_f, n_basis + order + 1))
        if adapted:
            layer.basis.grid.copy_(grid)
        if scaler is not None:
            weight = weight * scaler[..., None]
        edge_vectors(model, l, torch.cat([weight, base[..., None]], dim=-1))  # (out, in, G+k+1)
    fill_norms(model, norms)
    return model
