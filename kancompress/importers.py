"""Import state_dicts saved by upstream KAN libraries as kancompress dense models.

Each importer maps the library's per-edge parameters onto kancompress edge vectors (coefficients, then base
weight) exactly; see `../shared/research/kan-libraries.md` section 8 for layouts.

- efficient-kan `KAN`: `layers.{l}.{base_weight, spline_weight, spline_scaler, grid}`;
  coeffs[o,i] = spline_weight[o,i,:]·spline_scaler[o,i]; grid (in, G+2k+1) kept when adapted per input.
- FastKAN `FastKAN`: `layers.{l}.{layernorm.*, rbf.grid, spline_linear.weight, base_linear.*}`;
  coeffs[o,i] = spline_linear.weight.view(out, in, G)[o,i]; the RBF width is not stored upstream.
- pykan >= 0.1 `MultKAN`: `act_fun.{l}.{grid, coef, mask, scale_base, scale_sp}`, `{sub,}node_{scale,bias}_{l}`,
  `symbolic_fun.{l}.{mask, affine}`; coeffs[o,i] = coef[i,o,:]·scale_sp[i,o]·mask[i,o], base weight
  scale_base[i,o]·mask[i,o]; the per-output affine maps y -> ns·(ss·y + sb) + nb are folded into the edge vectors
  (scale) and an output bias. Symbolic edges and multiplication nodes have no spline form and are refused.
- ChebyKAN `ChebyKANLayer` stacks (SynodicMonth/ChebyKAN; its README model chebykan1 -> ln1 -> chebykan2 -> ...):
  per layer `{prefix}.cheby1_coeffs` (or `cheby_coeffs`) (in, out, D+1) and an optional int64 `arange` buffer;
  a LayerNorm (`weight`, `bias`) between layers becomes `norm_between`; coeffs[o,i] = c[i,o,:], base weight 0.
- torch-conv-kan `SimpleConvKAGN` / `SimpleConvKAN` / `SimpleFastConvKAN` (BatchNorm, linear head
  `output.1.*`): per layer `poly_weights` (groups, Og, Cg·(D+1), k, k), degree-major d·Cg + c, or
  `spline_conv.{g}.weight` (Og, Cg·nb, k, k), channel-major c·nb + j; `base_conv.{g}.weight`; `layer_norm.{g}.*`;
  `beta_weights` / `prelus.{g}.weight` / `rbf.grid`. The strides, KANConv's grid and base activation are not
  stored and come from options (defaults: torch-conv-kan's).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable
from typing import Any, TypeVar
from pathlib import Path

import torch

from kancompress.bases import BasisConfig
from kancompress.config import ModelConfig
from kancompress.errors import ConfigError, FormatError
from kancompress.layers import KANLinear
from kancompress.models import KANModel, build_model

LIBRARIES: tuple[str, ...] = ("efficient-kan", "fastkan", "pykan", "torch-conv-kan", "chebykan")


T = TypeVar("T")


def _built(part: T | None) -> T:
    """A part of a freshly built model that its config asked for (a norm, a bias, the head)."""
    assert part is not None
    return part


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
            loaded: Any = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a pickle with code, a truncated archive, ...: all refused the same way
            raise FormatError(f"{path}: not a plain PyTorch state_dict (it does not load with "
                              "torch.load(weights_only=True); arbitrary pickles are never run)") from None
        if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
            loaded = loaded["state_dict"]
        if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
            raise FormatError(f"{path}: does not hold a state_dict (a mapping of names to tensors)")
        state = loaded
    return {_strip_wrappers(name): tensor.float() if tensor.is_floating_point() else tensor
            for name, tensor in state.items()}


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


def _strip_wrappers(name: str) -> str:
    """Drop DataParallel's `module.` prefix and torch-conv-kan's `.module.` infix."""
    name = name.removeprefix("module.")
    return name.replace(".module.", ".")


def detect_library(state: dict[str, torch.Tensor]) -> str:
    if any(name.endswith(".spline_scaler") or name.endswith(".spline_weight") for name in state):
        return "efficient-kan"
    if any(name.endswith(".spline_linear.weight") for name in state):
        return "fastkan"
    if any(name.startswith("act_fun.") for name in state):
        return "pykan"
    if any(name.endswith(".poly_weights") or ".spline_conv." in name for name in state):
        return "torch-conv-kan"
    if any(name.endswith(_CHEBY_KEYS) for name in state):
        return "chebykan"
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
        for g, b in zip(grids, uniform.fc_layers())
    )
    if adapted:  # grids moved by update_grid(): keep them per input
        config = dataclasses.replace(config, basis=dataclasses.replace(config.basis, stored_grid=True))
    model = build_model(config)
    for l, (layer, weight) in enumerate(zip(model.fc_layers(), spline)):
        out_f, in_f = layer.edge_shape
        _take(state, used, f"layers.{l}.spline_weight", (out_f, in_f, n_basis))
        scaler = (_take(state, used, f"layers.{l}.spline_scaler", (out_f, in_f))
                  if f"layers.{l}.spline_scaler" in state else torch.ones(out_f, in_f))
        base = _take(state, used, f"layers.{l}.base_weight", (out_f, in_f))
        grid = _take(state, used, f"layers.{l}.grid", (in_f, n_basis + order + 1))
        if adapted:
            layer.basis.grid.copy_(grid)
        vectors = torch.cat([weight * scaler[..., None], base[..., None]], dim=-1)  # (out, in, G+k+1)
        model.dense_edges().vectors[l].data.copy_(vectors.reshape(-1, vectors.shape[-1]))
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
    for l, layer in enumerate(model.fc_layers()):
        out_f, in_f = layer.edge_shape
        centres = _take(state, used, f"layers.{l}.rbf.grid", (size,))
        if not torch.allclose(centres, layer.basis.grid, atol=1e-6):
            raise FormatError(f"key 'layers.{l}.rbf.grid' is not linspace({lo}, {hi}, {size}); unsupported")
        spline = _take(state, used, f"layers.{l}.spline_linear.weight", (out_f, in_f * size))
        weight = _take(state, used, f"layers.{l}.base_linear.weight", (out_f, in_f))
        _built(layer.bias).data.copy_(_take(state, used, f"layers.{l}.base_linear.bias", (out_f,)))
        _built(layer.input_norm).weight.data.copy_(_take(state, used, f"layers.{l}.layernorm.weight", (in_f,)))
        _built(layer.input_norm).bias.data.copy_(_take(state, used, f"layers.{l}.layernorm.bias", (in_f,)))
        vectors = torch.cat([spline.view(out_f, in_f, size), weight[..., None]], dim=-1)  # (out, in, G+1)
        model.dense_edges().vectors[l].data.copy_(vectors.reshape(-1, vectors.shape[-1]))
    _check_all_used(state, used)
    return model


def import_pykan(state: dict[str, torch.Tensor], sidecar: dict[str, Any] | None = None) -> KANModel:
    n_layers = _layer_count_pykan(state)
    used: set[str] = set()
    coefs = [_take(state, used, f"act_fun.{l}.coef", None) for l in range(n_layers)]
    if any(c.dim() != 3 for c in coefs):
        raise FormatError("act_fun.*.coef must have shape (in, out, G+k); legacy pykan (<= 0.0.5) is not supported")
    widths = [coefs[0].shape[0]] + [c.shape[1] for c in coefs]
    n_basis = coefs[0].shape[2]
    grid0 = _take(state, used, "act_fun.0.grid", None)
    order = int(sidecar.get("k", grid0.shape[1] - n_basis - 1)) if sidecar else grid0.shape[1] - n_basis - 1
    grid_size = n_basis - order
    if order < 0 or grid_size < 1 or grid0.shape[1] != n_basis + order + 1:
        raise FormatError(f"act_fun.0.grid has {grid0.shape[1]} knots, inconsistent with {n_basis} coefficients")
    if sidecar is not None:
        base_fun = sidecar.get("base_fun_name", "silu")
        if base_fun != "silu":
            raise FormatError(f"pykan base_fun {base_fun!r} is not supported (only silu)")
        width = sidecar.get("width", [])
        if any(isinstance(w, list) and len(w) > 1 and w[1] for w in width):
            raise FormatError("pykan model has multiplication nodes, which have no per-edge spline form")
    lo, hi = float(grid0[0, order]), float(grid0[0, order + grid_size])
    grids = [_take(state, used, f"act_fun.{l}.grid", (widths[l], n_basis + order + 1)) for l in range(n_layers)]
    basis = BasisConfig(grid_size=grid_size, spline_order=order, grid_min=lo, grid_max=hi)
    config = ModelConfig(model="kan", widths=tuple(widths), basis=basis, output_bias=True)
    config.validate()
    uniform = build_model(config)
    if any(not torch.allclose(g, b.basis.grid, atol=1e-6) for g, b in zip(grids, uniform.fc_layers())):
        config = dataclasses.replace(config, basis=dataclasses.replace(basis, stored_grid=True))
    model = build_model(config)
    for l, layer in enumerate(model.fc_layers()):
        out_f, in_f = layer.edge_shape
        p = f"act_fun.{l}."
        coef = _take(state, used, p + "coef", (in_f, out_f, n_basis))
        mask = _take(state, used, p + "mask", (in_f, out_f))
        scale_sp = _take(state, used, p + "scale_sp", (in_f, out_f))
        scale_base = _take(state, used, p + "scale_base", (in_f, out_f))
        symbolic = _take(state, used, f"symbolic_fun.{l}.mask", (out_f, in_f))
        _take(state, used, f"symbolic_fun.{l}.affine", (out_f, in_f, 4))
        if bool(symbolic.any()):
            raise FormatError(f"key 'symbolic_fun.{l}.mask' marks symbolic edges, which have no spline form; "
                              "call model.unfix_symbolic_all() (or refit) in pykan first")
        sub_scale = _take(state, used, f"subnode_scale_{l}", None)
        if sub_scale.shape != (out_f,):
            raise FormatError(f"key 'subnode_scale_{l}' has shape {list(sub_scale.shape)}: multiplication nodes "
                              "have no per-edge spline form")
        sub_bias = _take(state, used, f"subnode_bias_{l}", (out_f,))
        node_scale = _take(state, used, f"node_scale_{l}", (out_f,))
        node_bias = _take(state, used, f"node_bias_{l}", (out_f,))
        if config.basis.stored_grid:
            layer.basis.grid.copy_(grids[l])
        scale = (node_scale * sub_scale)[:, None, None]  # (out, 1, 1): y -> ns·ss·y + (ns·sb + nb)
        coeffs = (coef * (scale_sp * mask)[..., None]).permute(1, 0, 2)  # (out, in, G+k)
        base = (scale_base * mask).T[..., None]  # (out, in, 1)
        vectors = torch.cat([coeffs, base], dim=-1) * scale
        model.dense_edges().vectors[l].data.copy_(vectors.reshape(-1, vectors.shape[-1]))
        _built(layer.bias).data.copy_(node_scale * sub_bias + node_bias)
    _check_all_used(state, used)
    return model


def _layer_count_pykan(state: dict[str, torch.Tensor]) -> int:
    layers = {int(m.group(1)) for name in state if (m := re.fullmatch(r"act_fun\.(\d+)\.coef", name))}
    if not layers or layers != set(range(len(layers))):
        raise FormatError("expected keys act_fun.0.coef, act_fun.1.coef, ... in the state_dict")
    return len(layers)


def read_pykan_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """pykan's `{path}_config.yml` sidecar (width, grid, k, base_fun_name, ...), read with a safe YAML loader."""
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


@dataclasses.dataclass(frozen=True)
class ConvImportOptions:
    """What torch-conv-kan checkpoints do not store (defaults: torch-conv-kan's constructors and baselines)."""

    strides: tuple[int, ...] = (1, 2, 2, 1)
    grid_size: int = 5  # KANConv
    spline_order: int = 3  # KANConv
    grid_range: tuple[float, float] = (-1.0, 1.0)  # KANConv
    base_activation: str = "gelu"  # KANConv (KAGN and FastKANConv always use SiLU)
    dropout: float = 0.25
    dropout_linear: float = 0.5


def import_torch_conv_kan(state: dict[str, torch.Tensor], options: ConvImportOptions = ConvImportOptions()) -> KANModel:
    from kancompress.config import ConvConfig

    used: set[str] = set()
    n_layers = len({int(m.group(1)) for name in state if (m := re.fullmatch(r"layers\.(\d+)\.base_conv\.0\.weight", name))})
    if n_layers == 0:
        raise FormatError("expected keys layers.0.base_conv.0.weight, ... (torch-conv-kan conv layers)")
    if len(options.strides) != n_layers:
        raise FormatError(f"the checkpoint has {n_layers} conv layers; give one stride each (--strides)")
    # The upstream layer class, told by its keys: KAGNConv (poly_weights), FastKANConv (rbf.grid) or KANConv.
    layer_type = "KAGNConv" if "layers.0.poly_weights" in state else "FastKANConv" if "layers.0.rbf.grid" in state else "KANConv"
    groups = [len({n for n in state if re.fullmatch(rf"layers\.{l}\.base_conv\.\d+\.weight", n)})
              for l in range(n_layers)]
    if groups[0] != 1 or len(set(groups[1:])) > 1:
        raise FormatError(f"groups per layer {groups} unsupported: the first layer needs 1, the others one value")
    base0 = _take(state, used, "layers.0.base_conv.0.weight", None)
    kernel, in_channels = base0.shape[-1], base0.shape[1]
    widths = [in_channels]
    for l in range(n_layers):
        og = _take(state, used, f"layers.{l}.base_conv.0.weight", None).shape[0]
        widths.append(og * groups[l])
    head = _take(state, used, "output.1.weight", None)
    if head.dim() != 2 or head.shape[1] != widths[-1]:
        raise FormatError(f"key 'output.1.weight' has shape {list(head.shape)}, expected (classes, {widths[-1]})")
    if layer_type == "KAGNConv":
        degree = _take(state, used, "layers.0.beta_weights", None).numel() - 1
        basis, model_name, activation = BasisConfig(degree=degree), "gramkan", "silu"
    elif layer_type == "FastKANConv":
        grid = _take(state, used, "layers.0.rbf.grid", None)
        basis = BasisConfig(grid_size=grid.numel(), grid_min=float(grid[0]), grid_max=float(grid[-1]))
        model_name, activation = "fastkan", "silu"
    else:
        lo, hi = options.grid_range
        basis = BasisConfig(grid_size=options.grid_size, spline_order=options.spline_order, grid_min=lo, grid_max=hi)
        model_name, activation = "kan", options.base_activation
    conv = ConvConfig(kernel_size=kernel, strides=tuple(options.strides), groups=groups[-1] if n_layers > 1 else 1,
                      dropout=options.dropout, dropout_linear=options.dropout_linear, num_classes=head.shape[0])
    config = ModelConfig(model=model_name, widths=tuple(widths), basis=basis, base_activation=activation,
                         arch="conv", conv=conv)
    try:
        config.validate()
    except ConfigError as exc:
        raise FormatError(f"torch-conv-kan checkpoint does not fit: {exc}") from None
    model = build_model(config)
    nb = config.num_basis
    for l, layer in enumerate(model.conv_layers()):
        p, g_count = f"layers.{l}.", groups[l]
        out_f, cg, k, _ = layer.edge_shape
        og = out_f // g_count
        base = torch.cat([_take(state, used, p + f"base_conv.{g}.weight", (og, cg, k, k)) for g in range(g_count)])
        if layer_type == "KAGNConv":
            poly = _take(state, used, p + "poly_weights", (g_count, og, cg * nb, k, k))
            coeffs = poly.view(g_count, og, nb, cg, k, k).permute(0, 1, 3, 4, 5, 2).reshape(out_f, cg, k, k, nb)
            layer.basis.beta_weights.data.copy_(_take(state, used, p + "beta_weights", (nb,)))
        else:
            spline = [_take(state, used, p + f"spline_conv.{g}.weight", (og, cg * nb, k, k)) for g in range(g_count)]
            coeffs = torch.cat(spline).view(out_f, cg, nb, k, k).permute(0, 1, 3, 4, 2)  # (out, Cg, k, k, nb)
        if layer_type == "FastKANConv":
            centres = _take(state, used, p + "rbf.grid", (nb,))
            if not torch.allclose(centres, layer.basis.grid, atol=1e-6):
                raise FormatError(f"key '{p}rbf.grid' differs between layers; unsupported")
        if layer_type == "KANConv":
            slopes = torch.cat([_take(state, used, p + f"prelus.{g}.weight", (1,)) for g in range(g_count)])
            if not torch.allclose(slopes, slopes[0].expand_as(slopes)):
                raise FormatError(f"keys '{p}prelus.*.weight' differ between groups; one PReLU per layer is supported")
            _built(layer.prelu).weight.data.copy_(slopes[:1])
        norm = layer.input_norm if layer_type == "FastKANConv" else layer.output_norm
        size = cg if layer_type == "FastKANConv" else og
        for field in ("weight", "bias", "running_mean", "running_var"):
            parts = [_take(state, used, p + f"layer_norm.{g}.{field}", (size,)) for g in range(g_count)]
            getattr(norm, field).data.copy_(torch.cat(parts))
        _built(_built(norm).num_batches_tracked).copy_(_take(state, used, p + "layer_norm.0.num_batches_tracked", ()))
        used.update(n for n in state if n.startswith(p + "layer_norm.") and n.endswith("num_batches_tracked"))
        vectors = torch.cat([coeffs, base[..., None]], dim=-1)  # (out, Cg, k, k, nb + 1)
        model.dense_edges().vectors[l].data.copy_(vectors.reshape(-1, nb + 1))
    _built(model.head).linear.weight.data.copy_(head)
    _built(model.head).linear.bias.data.copy_(_take(state, used, "output.1.bias", (head.shape[0],)))
    _check_all_used(state, used)
    return model


_CHEBY_KEYS = (".cheby1_coeffs", ".cheby_coeffs")


def import_chebykan(state: dict[str, torch.Tensor]) -> KANModel:
    """A ChebyKAN model: ChebyKAN layers in the natural order of their names (chebykan1, chebykan2, ...; a
    safetensors file keeps no module order), with a LayerNorm before every layer but the first (the README's
    model; LayerNorms in the natural order of their names) or none at all."""
    used: set[str] = set()
    prefixes = sorted({name.rpartition(".")[0] for name in state if name.endswith(_CHEBY_KEYS)}, key=_natural)
    layers: list[torch.Tensor] = []
    for prefix in prefixes:
        name = next(prefix + key for key in _CHEBY_KEYS if prefix + key in state)
        coeffs = _take(state, used, name, None)
        if coeffs.dim() != 3:
            raise FormatError(f"key {name!r} has shape {list(coeffs.shape)}, expected (in, out, degree+1)")
        if prefix + ".arange" in state:
            _take(state, used, prefix + ".arange", (coeffs.shape[2],))
        layers.append(coeffs)
    norm_prefixes = sorted({name[: -len(".weight")] for name, t in state.items()
                            if name.endswith(".weight") and t.dim() == 1 and name[: -len("weight")] + "bias" in state},
                           key=_natural)
    if not layers:
        raise FormatError("expected ChebyKAN keys ending in .cheby1_coeffs in the state_dict")
    if norm_prefixes and len(norm_prefixes) != len(layers) - 1:
        raise FormatError(f"found {len(norm_prefixes)} LayerNorms for {len(layers)} ChebyKAN layers: they must sit "
                          "between every pair of layers (or nowhere)")
    norms = {l + 1: (_take(state, used, p + ".weight", None), _take(state, used, p + ".bias", None))
             for l, p in enumerate(norm_prefixes)}
    degree = layers[0].shape[2] - 1
    widths = [layers[0].shape[0]] + [c.shape[1] for c in layers]
    if norms and set(norms) != set(range(1, len(layers))):
        raise FormatError("ChebyKAN LayerNorms must sit between every pair of layers (or nowhere)")
    config = ModelConfig(model="chebykan", widths=tuple(widths), basis=BasisConfig(degree=degree),
                         norm_between=bool(norms))
    try:
        config.validate()
    except ConfigError as exc:
        raise FormatError(f"ChebyKAN checkpoint does not fit: {exc}") from None
    model = build_model(config)
    for l, (layer, coeffs) in enumerate(zip(model.fc_layers(), layers)):
        out_f, in_f = layer.edge_shape
        if tuple(coeffs.shape) != (in_f, out_f, degree + 1):
            raise FormatError(f"ChebyKAN layer {l} has coefficients {list(coeffs.shape)}, expected "
                              f"{[in_f, out_f, degree + 1]}")
        vectors = torch.cat([coeffs.permute(1, 0, 2), torch.zeros(out_f, in_f, 1)], dim=-1)  # (out, in, D+2)
        model.dense_edges().vectors[l].data.copy_(vectors.reshape(-1, degree + 2))
        if l in norms:
            weight, bias = norms[l]
            if weight.shape != (in_f,) or bias.shape != (in_f,):
                raise FormatError(f"LayerNorm before ChebyKAN layer {l} has {weight.numel()} features, expected {in_f}")
            _built(layer.pre_norm).weight.data.copy_(weight)
            _built(layer.pre_norm).bias.data.copy_(bias)
    _check_all_used(state, used)
    return model


def _natural(name: str) -> list[Any]:
    """Sort key that orders 'layer2' before 'layer10'."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def import_state_dict(
    state: dict[str, torch.Tensor],
    library: str | None = None,
    denominator: float | None = None,
    sidecar: dict[str, Any] | None = None,
    conv_options: ConvImportOptions = ConvImportOptions(),
) -> KANModel:
    """A dense kancompress model reproducing an upstream library's state_dict (library auto-detected if None)."""
    library = library or detect_library(state)
    importers: dict[str, Callable[[], KANModel]] = {
        "efficient-kan": lambda: import_efficient_kan(state),
        "fastkan": lambda: import_fastkan(state, denominator),
        "pykan": lambda: import_pykan(state, sidecar),
        "torch-conv-kan": lambda: import_torch_conv_kan(state, conv_options),
        "chebykan": lambda: import_chebykan(state),
    }
    if library not in importers:
        raise FormatError(f"unknown library {library!r}; choose from: {', '.join(LIBRARIES)}")
    return importers[library]()


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
        state[p + "layernorm.weight"] = _built(layer.input_norm).weight.detach().clone()
        state[p + "layernorm.bias"] = _built(layer.input_norm).bias.detach().clone()
        state[p + "rbf.grid"] = layer.basis.grid.clone()
        state[p + "spline_linear.weight"] = w[..., :nb].reshape(out_f, in_f * nb).clone()  # input-major
        state[p + "base_linear.weight"] = w[..., nb].clone()
        state[p + "base_linear.bias"] = _built(layer.bias).detach().clone()
    return state
