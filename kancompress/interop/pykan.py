"""pykan >= 0.1 (`MultKAN`, alias `KAN`), as `model.saveckpt(path)` writes it: `{path}_state` (torch.save of the
state_dict) beside `{path}_config.yml` (width, grid, k, mult_arity, base_fun, ...), found by itself.

Keys: `act_fun.{l}.{grid, coef, mask, scale_base, scale_sp}`, `{sub,}node_{scale,bias}_{l}`,
`symbolic_fun.{l}.{mask, affine}`. Forward per layer: y[o] = Σ_i mask[i,o]·(scale_base[i,o]·b(x_i) +
scale_sp[i,o]·Σ_j coef[i,o,j]·B_j(x_i)), then y -> node_scale·(subnode_scale·y + subnode_bias) + node_bias; so edge
(o, i) has vector s[o]·(coef[i,o,:]·scale_sp[i,o]·mask[i,o], scale_base[i,o]·mask[i,o]) with s = node_scale·
subnode_scale, and the layer an output bias node_scale·subnode_bias + node_bias. The base function b is pykan's
`base_fun` ('silu' by default, 'identity', 'zero'), recorded only in the config. Multiplication nodes (KAN 2.0,
`width=[2, [3, 2], 1]`): the sub-node affine is folded as above, the products of `mult_arity` consecutive sub-nodes
follow, then the node affine (`ModelConfig.mult_nodes`). Refused with the reason: symbolic edges (a formula, no
spline form).
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

import torch

from kancompress.bases import BasisConfig
from kancompress.config import ModelConfig
from kancompress.errors import FormatError
from kancompress.interop.layout import ImportOptions, Notes, StateReader, activation_option, built, edge_vectors
from kancompress.models import KANModel

LIBRARY = "pykan"
USES = frozenset({"base_activation", "pykan_config"})
BASE_FUNS: dict[str, str] = {"silu": "silu", "identity": "identity", "zero": "zero"}
"""pykan `base_fun` names and the kancompress base activation each one is."""


def detect(names: list[str]) -> bool:
    return any(re.fullmatch(r"act_fun\.\d+\.coef", name) for name in names)


def config_beside(source: str | os.PathLike[str]) -> Path | None:
    """`{path}_config.yml` beside a `{path}_state` file that `saveckpt` wrote (None if there is none)."""
    source = Path(source)
    if not source.name.endswith("_state"):
        return None
    candidate = source.with_name(source.name[: -len("_state")] + "_config.yml")
    return candidate if candidate.is_file() else None


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """pykan's `{path}_config.yml` (width, grid, k, base_fun_name, ...), read with a safe YAML loader."""
    try:
        import yaml
    except ImportError:
        raise FormatError("reading a pykan config needs PyYAML: pip install pyyaml") from None
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise FormatError(f"{path}: not a readable pykan config ({exc})") from None
    if not isinstance(data, dict):
        raise FormatError(f"{path}: not a pykan config (expected a mapping)")
    return data


def _layer_count(state: dict[str, torch.Tensor]) -> int:
    layers = {int(m.group(1)) for name in state if (m := re.fullmatch(r"act_fun\.(\d+)\.coef", name))}
    if not layers or layers != set(range(len(layers))):
        raise FormatError(f"{LIBRARY}: expected keys act_fun.0.coef, act_fun.1.coef, ... in the state_dict")
    return len(layers)


def _base_activation(options: ImportOptions, notes: Notes) -> str:
    sidecar = options.pykan_config
    if sidecar is None:
        return activation_option(options, notes, LIBRARY, "silu", "pykan's default base_fun, and no "
                                 "_config.yml was found beside the state or given with --config")
    name = sidecar.get("base_fun_name", sidecar.get("base_fun", "silu"))
    if name not in BASE_FUNS:
        raise FormatError(f"{LIBRARY}: base_fun {name!r} (from the config) is not supported; kancompress reads "
                          f"{', '.join(BASE_FUNS)}")
    if options.base_activation is not None and options.base_activation != BASE_FUNS[name]:
        raise FormatError(f"{LIBRARY}: --base-activation {options.base_activation} contradicts the config's "
                          f"base_fun {name!r}; drop --base-activation")
    return BASE_FUNS[name]


def read(reader: StateReader, options: ImportOptions, notes: Notes) -> KANModel:
    state = reader.state
    n_layers = _layer_count(state)
    coefs = [reader.take(f"act_fun.{l}.coef") for l in range(n_layers)]
    if any(c.dim() != 3 for c in coefs):
        raise FormatError(f"{LIBRARY}: act_fun.*.coef must have shape (in, out, G+k); pykan <= 0.0.5 checkpoints "
                          "(flattened (out·in, G+k) coefficients) are not supported")
    mult, arity = _multiplication_nodes(reader, options.pykan_config, notes, n_layers)
    widths = [coefs[0].shape[0]] + [c.shape[1] - (arity - 1) * m for c, m in zip(coefs, mult)]  # nodes
    for l in range(1, n_layers):
        if coefs[l].shape[0] != widths[l]:
            raise FormatError(f"{LIBRARY}: act_fun.{l}.coef takes {coefs[l].shape[0]} inputs but layer {l - 1} "
                              f"has {widths[l]} nodes")
    n_basis = coefs[0].shape[2]
    grid0 = reader.take("act_fun.0.grid")
    sidecar = options.pykan_config or {}
    order = int(sidecar.get("k", grid0.shape[1] - n_basis - 1))
    grid_size = n_basis - order
    if order < 0 or grid_size < 1 or grid0.shape[1] != n_basis + order + 1:
        raise FormatError(f"{LIBRARY}: act_fun.0.grid has {grid0.shape[1]} knots, inconsistent with {n_basis} "
                          "coefficients")
    activation = _base_activation(options, notes)
    lo, hi = float(grid0[0, order]), float(grid0[0, order + grid_size])
    grids = [reader.take(f"act_fun.{l}.grid", (widths[l], n_basis + order + 1)) for l in range(n_layers)]
    basis = BasisConfig(grid_size=grid_size, spline_order=order, grid_min=lo, grid_max=hi)
    config = ModelConfig(model="kan", widths=tuple(widths), basis=basis, output_bias=True,
                         base_activation=activation, mult_nodes=tuple(mult) if any(mult) else None, mult_arity=arity)
    uniform = built(config, LIBRARY)
    if any(not torch.allclose(g, b.basis.grid, atol=1e-6) for g, b in zip(grids, uniform.fc_layers())):
        config = dataclasses.replace(config, basis=dataclasses.replace(basis, stored_grid=True))
    model: KANModel = built(config, LIBRARY)
    for l, layer in enumerate(model.fc_layers()):
        out_f, in_f = layer.edge_shape
        p = f"act_fun.{l}."
        coef = reader.take(p + "coef", (in_f, out_f, n_basis))
        mask = reader.take(p + "mask", (in_f, out_f))
        scale_sp = reader.take(p + "scale_sp", (in_f, out_f))
        scale_base = reader.take(p + "scale_base", (in_f, out_f))
        symbolic = reader.take(f"symbolic_fun.{l}.mask", (out_f, in_f))
        reader.take(f"symbolic_fun.{l}.affine", (out_f, in_f, 4))
        if bool(symbolic.any()):
            count = int((symbolic != 0).sum())
            raise FormatError(f"{LIBRARY}: key 'symbolic_fun.{l}.mask' marks {count} symbolic edge(s) (a formula "
                              "such as sin or x^2, which has no spline form); call model.unfix_symbolic_all() "
                              "(or refit) in pykan and save again")
        nodes = widths[l + 1]
        sub_scale = reader.take(f"subnode_scale_{l}", (out_f,))
        sub_bias = reader.take(f"subnode_bias_{l}", (out_f,))
        node_scale = reader.take(f"node_scale_{l}", (nodes,))
        node_bias = reader.take(f"node_bias_{l}", (nodes,))
        if config.basis.stored_grid:
            layer.basis.grid.copy_(grids[l])
        bias = layer.bias
        assert bias is not None
        if layer.node_scale is not None and layer.node_bias is not None:  # products between the two affines
            scale, shift = sub_scale, sub_bias  # y -> ss·y + sb, then products, then ns·(.) + nb
            layer.node_scale.data.copy_(node_scale)
            layer.node_bias.data.copy_(node_bias)
        else:  # y -> ns·ss·y + (ns·sb + nb), folded
            scale, shift = node_scale * sub_scale, node_scale * sub_bias + node_bias
        coeffs = (coef * (scale_sp * mask)[..., None]).permute(1, 0, 2)  # (in, out, G+k) -> (out, in, G+k)
        base = (scale_base * mask).T[..., None]  # (out, in, 1)
        edge_vectors(model, l, torch.cat([coeffs, base], dim=-1) * scale[:, None, None])  # scale: (out, 1, 1)
        bias.data.copy_(shift)
    return model


def _multiplication_nodes(reader: StateReader, sidecar: dict[str, Any] | None, notes: Notes,
                          n_layers: int) -> tuple[list[int], int]:
    """Per layer, the multiplication nodes after it (KAN 2.0), and their arity: from the config's width
    ([[sum, mult], ...]) and mult_arity, else from the state (a layer's sub-nodes outnumber its nodes by
    (arity - 1)·mult; arity 2, pykan's default, said in a note)."""
    state = reader.state
    counts: list[tuple[int, int]] = []
    for l in range(n_layers):
        sub_scale, node_scale = state.get(f"subnode_scale_{l}"), state.get(f"node_scale_{l}")
        if sub_scale is None or node_scale is None:
            raise FormatError(f"{LIBRARY}: key 'subnode_scale_{l}' or 'node_scale_{l}' is missing from the state_dict")
        counts.append((sub_scale.numel(), node_scale.numel()))
    width = (sidecar or {}).get("width")
    arity = (sidecar or {}).get("mult_arity", 2)
    if not isinstance(arity, int) or isinstance(arity, bool) or arity < 2:
        raise FormatError(f"{LIBRARY}: mult_arity {arity!r} (per-node arities) is not supported; kancompress "
                          "supports one arity for every multiplication node")
    if isinstance(width, list) and len(width) == n_layers + 1:
        mult = [int(w[1]) if isinstance(w, list) and len(w) > 1 else 0 for w in width[1:]]
    else:
        extra = [sub - node for sub, node in counts]
        if any(extra) and sidecar is None:
            notes.assume("mult_arity", 2, f"{LIBRARY}: the state has multiplication nodes and no config says their "
                                          "arity: assumed 2 (pykan's default); pass --config to read it")
        if any(e % (arity - 1) or e < 0 for e in extra):
            raise FormatError(f"{LIBRARY}: sub-node counts {[c[0] for c in counts]} and node counts "
                              f"{[c[1] for c in counts]} do not fit multiplication nodes of arity {arity}")
        mult = [e // (arity - 1) for e in extra]
    for l, ((sub, node), m) in enumerate(zip(counts, mult)):  # (sub-nodes, nodes) of layer l
        if sub != node + (arity - 1) * m:
            raise FormatError(f"{LIBRARY}: layer {l} has {sub} sub-nodes and {node} nodes, which {m} multiplication "
                              f"nodes of arity {arity} do not explain")
    return mult, arity
