"""FastKAN (ZiyaoLi/fast-kan) `FastKAN` / `FastKANLayer` stacks.

Per layer `{P}rbf.grid` (G,) = linspace(grid_min, grid_max, G), `{P}spline_linear.weight` (out, in·G)
input-major, and with the constructor's defaults `{P}layernorm.{weight,bias}` (in,) (`use_layernorm`; on the RBF
path only) and `{P}base_linear.{weight,bias}` (`use_base_update`; on act(x)). Forward (`FastKANLayer.forward`):
y = spline_linear(RBF(LayerNorm(x))) + base_linear(act(x)); edge (o, i) has vector
(spline_linear.weight.view(out, in, G)[o, i], base_linear.weight[o, i]). Without `base_linear` the base weight
and bias are 0; without `layernorm` the RBF sees x itself. Not stored: the RBF width (default (max-min)/(G-1))
and `base_activation` (`F.silu` by default).
"""

from __future__ import annotations

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

LIBRARY = "fastkan"
USES = frozenset({"base_activation", "denominator"})


def detect(names: list[str]) -> bool:
    return bool(prefixes_with(names, "spline_linear.weight"))


def read(reader: StateReader, options: ImportOptions, notes: Notes) -> KANModel:
    state = reader.state
    found = prefixes_with(state, "spline_linear.weight")
    for prefix in found:
        if prefix + "rbf.grid" not in state:
            raise FormatError(f"{LIBRARY}: key '{prefix}rbf.grid' is missing from the state_dict")

    def widths_of(prefix: str) -> tuple[int, int]:
        out_f, flat = state[prefix + "spline_linear.weight"].shape
        size = state[prefix + "rbf.grid"].numel()
        if flat % size:
            raise FormatError(f"{LIBRARY}: '{prefix}spline_linear.weight' has {flat} columns, not a multiple of "
                              f"the {size} RBF centres")
        return flat // size, out_f

    layers, widths = layer_stack(reader, found, widths_of)
    grid = state[layers[0] + "rbf.grid"]
    size, lo, hi = grid.numel(), float(grid[0]), float(grid[-1])
    with_norm = [reader.has(p + "layernorm.weight") for p in layers]
    if len(set(with_norm)) > 1:
        raise FormatError(f"{LIBRARY}: some layers have a layernorm and some do not; kancompress needs all or none")
    with_base = [reader.has(p + "base_linear.weight") for p in layers]
    if len(set(with_base)) > 1:
        raise FormatError(f"{LIBRARY}: some layers have base_linear and some do not; kancompress needs all or none")
    norms = place_norms(reader, layers, widths)
    activation = (activation_option(options, notes, LIBRARY, "silu", "FastKANLayer's default, F.silu")
                  if with_base[0] else "silu")
    if not with_base[0] and options.base_activation is not None:
        raise FormatError(f"{LIBRARY}: this model has no base branch (use_base_update=False), so "
                          "--base-activation does not apply; drop it")
    if options.denominator is None:
        notes.assume("rbf_denominator", None, f"{LIBRARY} stores no RBF width: assumed its default (max - min)/(G - 1) "
                                              f"= {(hi - lo) / (size - 1):.6g}; pass --rbf-denominator if it was set")
    config = ModelConfig(model="fastkan", widths=tuple(widths), base_activation=activation,
                         basis=BasisConfig(grid_size=size, grid_min=lo, grid_max=hi, denominator=options.denominator),
                         basis_norm=None if with_norm[0] else False, **norm_config(norms, len(layers)))
    model: KANModel = built(config, LIBRARY)
    for l, (prefix, layer) in enumerate(zip(layers, model.fc_layers())):
        out_f, in_f = layer.edge_shape
        centres = reader.take(prefix + "rbf.grid", (size,))
        if not torch.allclose(centres, layer.basis.grid, atol=1e-6):
            raise FormatError(f"{LIBRARY}: key '{prefix}rbf.grid' is not linspace({lo}, {hi}, {size}) like the first "
                              "layer's; layers with their own grids are unsupported")
        spline = reader.take(prefix + "spline_linear.weight", (out_f, in_f * size))
        bias = layer.bias
        assert bias is not None
        if with_base[0]:
            weight = reader.take(prefix + "base_linear.weight", (out_f, in_f))
            bias.data.copy_(reader.take(prefix + "base_linear.bias", (out_f,)))
        else:
            weight = torch.zeros(out_f, in_f)
            bias.data.zero_()
        if layer.input_norm is not None:
            layer.input_norm.weight.data.copy_(reader.take(prefix + "layernorm.weight", (in_f,)))
            layer.input_norm.bias.data.copy_(reader.take(prefix + "layernorm.bias", (in_f,)))
        edge_vectors(model, l, torch.cat([spline.view(out_f, in_f, size), weight[..., None]], dim=-1))  # (out, in, G+1)
    fill_norms(model, norms)
    return model
