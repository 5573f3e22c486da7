"""pykan >= 0.1 (`MultKAN`, alias `KAN`), as `model.saveckpt(path)` writes it: `{path}_state` (torch.save of the
state_dict) beside `{path}_config.yml` (width, grid, k, mult_arity, base_fun, ...), found by itself.

Keys: `act_fun.{l}.{grid, coef, mask, scale_base, scale_sp}`, `{sub,}node_{scale,bias}_{l}`,
`symbolic_fun.{l}.{mask, affine}`. Forward per layer: y[o] = Σ_i mask[i,o]·(scale_base[i,o]·b(x_i) +
scale_sp[i,o]·Σ_j coef[i,o,j]·B_j(x_i)), then y -> node_scale·(subnode_scale·y + subnode_bias) + node_bias; so edge
(o, i) has vector s[o]·(coef[i,o,:]·scale_sp[i,o]·mask[i,o], scale_base[i,o]·mask[i,o]) with s = node_scale·
subnode_scale, and the layer an output bias node_scale·subnode_bias + node_bias. The base function b is pykan's
`base_fun` ('silu' by default, 'identity', 'zero'), recorded only in the config. Refused with the reason:
symbolic edges (a formula, no spline form) and multiplication nodes (KAN 2.0).
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
from kancompress.interop.layout import ImportOptions, Notes, StateReader, activation_option, edge_vectors
from kancompress.models import KANModel, build_model

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
    widths = [coefs[0].shape[0]] + [c.shape[1] for c in coefs]
    _refuse_multiplication(state, options.pykan_config, n_layers)
    for l in range(1, n_layers):
        if coefs[l].shape[0] != widths[l]:
            raise FormatError(f"{LIBRARY}: act_fun.{l}.coef takes {coefs[l].shape[0]} inputs but layer {l - 1} "
                              f"has {widths[l]} outputs")
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
                         base_activation=activation)
    config.validate()
    uniform = build_model(config)
    if any(not torch.allclose(g, b.basis.grid, atol=1e-6) for g, b in zip(grids, uniform.fc_layers())):
        config = dataclasses.replace(config, basis=dataclasses.replace(basis, stored_grid=True))
    model = build_model(config)
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
        sub_scale = reader.take(f"subnode_scale_{l}", (out_f,))
        sub_bias = reader.take(f"subnode_bias_{l}", (out_f,))
        node_scale = reader.take(f"node_scale_{l}", (out_f,))
        node_bias = reader.take(f"node_bias_{l}", (out_f,))
        if config.basis.stored_grid:
            layer.basis.grid.copy_(grids[l])
        scale = (node_scale * sub_scale)[:, None, None]  # (out, 1, 1): y -> ns·ss·y + (ns·sb + nb)
        coeffs = (coef * (scale_sp * mask)[..., None]).permute(1, 0, 2)  # (in, out, G+k) -> (out, in, G+k)
        base = (scale_base * mask).T[..., None]  # (out, in, 1)
        edge_vectors(model, l, torch.cat([coeffs, base], dim=-1) * scale)
        bias = layer.bias
        assert bias is not None
        bias.data.copy_(node_scale * sub_bias + node_bias)
    return model


def _refuse_multiplication(state: dict[str, torch.Tensor], sidecar: dict[str, Any] | None, n_layers: int) -> None:
    """KAN 2.0 multiplication nodes: a layer's sub-nodes (its spline outputs) outnumber its nodes."""
    width = (sidecar or {}).get("width", [])
    mult = [w[1] for w in width if isinstance(w, list) and len(w) > 1]
    counts = [(state[f"subnode_scale_{l}"].numel(), state[f"node_scale_{l}"].numel()) for l in range(n_layers)
              if f"subnode_scale_{l}" in state and f"node_scale_{l}" in state]
    uneven = [(l, sub, node) for l, (sub, node) in enumerate(counts) if sub != node]
    if any(mult) or uneven:
        detail = (f"width {width}" if any(mult) else
                  f"layer {uneven[0][0]} has {uneven[0][1]} sub-nodes for {uneven[0][2]} nodes")
        raise FormatError(f"{LIBRARY}: this MultKAN has multiplication nodes (KAN 2.0; {detail}); kancompress "
                          "does not support them yet: build the model without multiplication nodes")
