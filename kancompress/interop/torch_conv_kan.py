"""torch-conv-kan (IvanDrokin/torch-conv-kan) convolutional models: the `SimpleConv*` baselines' stacks of
`KAGNConv2DLayer` (v1), `KALNConv2DLayer`, `KANConv2DLayer` or `FastKANConv2DLayer`, global pooling and the head:
linear `output.1.*` (`degree_out < 2`), or with `degree_out >= 2` SimpleConvKAGN's KAGN head (one GRAMLayer
`output.layers.{0|1}.*`, after a Dropout when dropout_linear > 0) or SimpleConvKALN's KALN head (one KALNLayer;
its range normalisation is per sample here, as in `torch_conv_kan_fc`).

Per layer: `poly_weights` (groups, Og, Cg·(D+1), k, k), degree-major d·Cg + c (KAGN, with `beta_weights`; KALN
without), or `spline_conv.{g}.weight` (Og, Cg·nb, k, k), channel-major c·nb + j (KANConv, FastKANConv);
`base_conv.{g}.weight`; `layer_norm.{g}.*` (BatchNorm); `prelus.{g}.weight` (KANConv) / `rbf.grid` (FastKANConv).
Not stored, so options (defaults: torch-conv-kan's) and said in a note: the strides, KANConv's grid and base
activation (GELU). Refused with the reason: `KAGNConv2DLayerV2` (`poly_conv`), WavKAN conv layers.
"""

from __future__ import annotations

import re

import torch

from kancompress.bases import BasisConfig
from kancompress.config import ConvConfig, ModelConfig
from kancompress.errors import FormatError
from kancompress.interop.layout import (
    ImportOptions,
    Notes,
    StateReader,
    activation_option,
    built,
    edge_vectors,
    prefixes_with,
)
from kancompress.interop import torch_conv_kan_fc
from kancompress.models import KANModel

LIBRARY = "torch-conv-kan"
USES = frozenset({"base_activation", "strides", "grid_size", "spline_order", "grid_range"})
DEFAULT_STRIDES = (1, 2, 2, 1)  # SimpleConv* baselines
DROPOUT, DROPOUT_LINEAR = 0.25, 0.5  # the baselines' (used in training only)


def detect(names: list[str]) -> bool:
    return any(name.endswith((".poly_weights", ".poly_conv.weight")) or ".spline_conv." in name for name in names)


def read(reader: StateReader, options: ImportOptions, notes: Notes) -> KANModel:
    state = reader.state
    if any(name.endswith(".poly_conv.weight") for name in state):
        raise FormatError(f"{LIBRARY}: KAGNConv2DLayerV2 layers (poly_conv.weight) are not supported; their grouped "
                          "degree-major weights have no whole per-edge vectors for groups > 1")
    if any(".wavelet_weights." in name or name.endswith(".wavelet_weights") for name in state):
        raise FormatError(f"{LIBRARY}: WavKAN conv layers are not supported: their wavelet outputs are mixed by a 1x1 "
                          "convolution (wavelet_out) across output channels, so an edge has no function of its own")
    head_keys = {"grams_basis_weights": "KAGNConv", "poly_weight": "KALNConv"}
    kan_head = [(p, key) for key in (*head_keys, "spline_weight", "spline_linear.weight", "cheby_coeffs")
                for p in prefixes_with(state, key) if p.startswith("output.")]
    if len(kan_head) > 1:
        raise FormatError(f"{LIBRARY}: the model's KAN head has {len(kan_head)} layers; kancompress supports one")
    n_layers = len({int(m.group(1)) for name in state if (m := re.fullmatch(r"layers\.(\d+)\.base_conv\.0\.weight", name))})
    if n_layers == 0:
        raise FormatError(f"{LIBRARY}: expected keys layers.0.base_conv.0.weight, ... (conv layers)")
    if options.strides is None:
        strides = DEFAULT_STRIDES[:n_layers] if n_layers <= len(DEFAULT_STRIDES) else None
        if strides is None:
            raise FormatError(f"{LIBRARY}: the checkpoint has {n_layers} conv layers and stores no strides; give one "
                              "each with --strides (e.g. 1,2,2,1,1,2,1,1 for EightSimpleConv*)")
        notes.assume("strides", list(strides), f"{LIBRARY} stores no strides: assumed {','.join(map(str, strides))} "
                                               "(the SimpleConv* baselines'); pass --strides if they differ")
    else:
        strides = options.strides
    if len(strides) != n_layers:
        raise FormatError(f"{LIBRARY}: the checkpoint has {n_layers} conv layers; give one stride each (--strides)")
    kind = ("KAGNConv" if "layers.0.beta_weights" in state else "KALNConv") if "layers.0.poly_weights" in state \
        else "FastKANConv" if "layers.0.rbf.grid" in state else "KANConv"
    if kind != "KANConv":
        for name in ("base_activation", "grid_size", "spline_order", "grid_range"):
            if getattr(options, name) is not None:
                raise FormatError(f"{LIBRARY}: --{name.replace('_', '-')} applies to KANConv layers only; this model "
                                  f"has {kind} layers")
    groups = [len({n for n in state if re.fullmatch(rf"layers\.{l}\.base_conv\.\d+\.weight", n)})
              for l in range(n_layers)]
    if groups[0] != 1 or len(set(groups[1:])) > 1:
        raise FormatError(f"{LIBRARY}: groups per layer {groups} unsupported: the first layer needs 1, the others "
                          "one value")
    if kind == "KALNConv" and max(groups) > 1:
        raise FormatError(f"{LIBRARY}: KALNConv layers with groups > 1 are unsupported (their range normalisation "
                          "is per group)")
    base0 = reader.take("layers.0.base_conv.0.weight")
    kernel, in_channels = base0.shape[-1], base0.shape[1]
    widths = [in_channels] + [reader.take(f"layers.{l}.base_conv.0.weight").shape[0] * groups[l]
                              for l in range(n_layers)]
    if kan_head:
        head_prefix, head_key = kan_head[0]
        if head_keys.get(head_key) != kind:
            raise FormatError(f"{LIBRARY}: the model's head is a KAN layer ({head_key}) with {kind} conv layers; "
                              "kancompress supports the KAN heads of SimpleConvKAGN and SimpleConvKALN (and linear "
                              "heads, degree_out < 2)")
        weights = state[head_prefix + head_key]  # KAGN: (C, classes, D+1); KALN: (classes, C·(D+1))
        classes = weights.shape[1] if kind == "KAGNConv" else weights.shape[0]
        head_degree = weights.shape[2] - 1 if kind == "KAGNConv" else weights.shape[1] // widths[-1] - 1
    else:
        linear = reader.take("output.1.weight")
        if linear.dim() != 2 or linear.shape[1] != widths[-1]:
            raise FormatError(f"{LIBRARY}: key 'output.1.weight' has shape {list(linear.shape)}, expected "
                              f"(classes, {widths[-1]})")
        classes, head_degree = linear.shape[0], None
    activation = "silu"
    if kind == "KAGNConv":
        basis, model_name = BasisConfig(degree=reader.take("layers.0.beta_weights").numel() - 1), "gramkan"
    elif kind == "KALNConv":
        degree = state["layers.0.poly_weights"].shape[2] // in_channels - 1
        basis, model_name = BasisConfig(degree=degree), "legendrekan"
        notes.say(f"{LIBRARY} KALNConv maps inputs to [-1, 1] by the min and max of the whole batch; kancompress "
                  "by those of each sample: outputs are equal for one sample at a time")
    elif kind == "FastKANConv":
        grid = reader.take("layers.0.rbf.grid")
        basis = BasisConfig(grid_size=grid.numel(), grid_min=float(grid[0]), grid_max=float(grid[-1]))
        model_name = "fastkan"
    else:
        lo, hi = options.grid_range or (-1.0, 1.0)
        size, order = options.grid_size or 5, options.spline_order or 3
        if options.grid_size is None or options.grid_range is None or options.spline_order is None:
            notes.assume("kanconv_grid", [size, order, lo, hi],
                         f"{LIBRARY} KANConv stores no grid: assumed grid size {size}, spline order {order}, range "
                         f"[{lo:g}, {hi:g}] (its defaults); pass --grid-size, --spline-order, --grid-range if they "
                         "differ")
        basis = BasisConfig(grid_size=size, spline_order=order, grid_min=lo, grid_max=hi)
        model_name = "kan"
        activation = activation_option(options, notes, LIBRARY, "gelu", "KANConv2DLayer's default, nn.GELU")
    conv = ConvConfig(kernel_size=kernel, strides=tuple(strides), groups=groups[-1] if n_layers > 1 else 1,
                      dropout=DROPOUT, dropout_linear=DROPOUT_LINEAR, num_classes=classes, head_degree=head_degree)
    config = ModelConfig(model=model_name, widths=tuple(widths), basis=basis, base_activation=activation,
                         arch="conv", conv=conv)
    model: KANModel = built(config, LIBRARY)
    _fill_layers(reader, model, kind, groups)
    assert model.head is not None
    if model.head.linear is not None:
        model.head.linear.weight.data.copy_(reader.take("output.1.weight"))
        model.head.linear.bias.data.copy_(reader.take("output.1.bias", (classes,)))
    else:
        assert model.head.kan is not None
        vectors = torch_conv_kan_fc.read_layer(reader, model.head.kan, kan_head[0][0], kind == "KAGNConv")
        model.head.vectors.data.copy_(vectors.reshape(-1, vectors.shape[-1]))
    return model


def _fill_layers(reader: StateReader, model: KANModel, kind: str, groups: list[int]) -> None:
    state = reader.state
    nb = model.config.num_basis
    for l, layer in enumerate(model.conv_layers()):
        p, g_count = f"layers.{l}.", groups[l]
        out_f, cg, k, _ = layer.edge_shape
        og = out_f // g_count
        base = torch.cat([reader.take(p + f"base_conv.{g}.weight", (og, cg, k, k)) for g in range(g_count)])
        if kind in ("KAGNConv", "KALNConv"):
            poly = reader.take(p + "poly_weights", (g_count, og, cg * nb, k, k))
            # degree-major d·Cg + c -> (out, Cg, k, k, nb)
            coeffs = poly.view(g_count, og, nb, cg, k, k).permute(0, 1, 3, 4, 5, 2).reshape(out_f, cg, k, k, nb)
            if kind == "KAGNConv":
                layer.basis.beta_weights.data.copy_(reader.take(p + "beta_weights", (nb,)))
        else:
            spline = [reader.take(p + f"spline_conv.{g}.weight", (og, cg * nb, k, k)) for g in range(g_count)]
            coeffs = torch.cat(spline).view(out_f, cg, nb, k, k).permute(0, 1, 3, 4, 2)  # (out, Cg, k, k, nb)
        if kind == "FastKANConv":
            centres = reader.take(p + "rbf.grid", (nb,))
            if not torch.allclose(centres, layer.basis.grid, atol=1e-6):
                raise FormatError(f"{LIBRARY}: key '{p}rbf.grid' differs between layers; unsupported")
        if kind == "KANConv":
            slopes = torch.cat([reader.take(p + f"prelus.{g}.weight", (1,)) for g in range(g_count)])
            if not torch.allclose(slopes, slopes[0].expand_as(slopes)):
                raise FormatError(f"{LIBRARY}: keys '{p}prelus.*.weight' differ between groups; one PReLU per layer "
                                  "is supported")
            assert layer.prelu is not None
            layer.prelu.weight.data.copy_(slopes[:1])
        norm = layer.input_norm if kind == "FastKANConv" else layer.output_norm
        assert norm is not None
        size = cg if kind == "FastKANConv" else og
        for field in ("weight", "bias", "running_mean", "running_var"):
            parts = [reader.take(p + f"layer_norm.{g}.{field}", (size,)) for g in range(g_count)]
            getattr(norm, field).data.copy_(torch.cat(parts))
        assert norm.num_batches_tracked is not None
        norm.num_batches_tracked.copy_(reader.take(p + "layer_norm.0.num_batches_tracked", ()))
        reader.used.update(n for n in state if n.startswith(p + "layer_norm.") and n.endswith("num_batches_tracked"))
        edge_vectors(model, l, torch.cat([coeffs, base[..., None]], dim=-1))  # (out, Cg, k, k, nb + 1)
