"""The model as arrays: what a fully-connected kancompress model computes, as plain numbers and a few names, with
nothing of torch left in it. Exporters to other runtimes (`c_export`) render this description; it is the one
place that reads a model's modules for them.

Per layer: the basis (its spec, whose `c_source` says what it computes, and its constants: knots, RBF centres and
width, Gram β, ...: `BasisSpec.export_constants`), the base activation, the norms and extras in the order the
layer applies them, and the edges: dense vectors (dense and meta models, decoded), or a clustered layer's codebook
in its storage precision (float32 / float16 / bfloat16 bits, or int8 with its scale) and its indices bit-packed
least-significant bit first (`format.bits`; entropy-coded streams are re-packed to fixed width, losslessly).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from kancompress.bases import BasisSpec
from kancompress.bases.spec import CSource
from kancompress.edges import CodebookEdges
from kancompress.errors import ConfigError
from kancompress.format.bits import index_bits, pack_bits
from kancompress.layers import KANLinear
from kancompress.models import KANModel
from kancompress.quant import to_storage

@dataclass
class Norm:
    """A LayerNorm (weight, bias, eps) or, with `affine_only`, an eval-mode BatchNorm folded to y·weight + bias."""

    weight: np.ndarray
    bias: np.ndarray
    eps: float = 1e-5
    affine_only: bool = False


@dataclass
class Edges:
    """A layer's edge vectors: `dense` (out·in, |w|) float32, or a codebook and packed indices."""

    dense: np.ndarray | None = None
    codebook: np.ndarray | None = None  # (k, |w|): float32 values, uint16 bits (float16/bfloat16) or int8
    codebook_dtype: str = "float32"
    scale: float = 1.0  # int8 codebooks: value = q · scale
    packed: np.ndarray | None = None  # uint8 index stream, fixed `bits` per edge, LSB first
    bits: int = 0
    k: int = 0
    recoded_from: str | None = None  # "rans" / "context" when the file's stream was re-packed


@dataclass
class LayerArrays:
    in_features: int
    out_features: int  # sub-nodes, when the layer has multiplication nodes
    num_basis: int
    spec: BasisSpec
    constants: dict[str, np.ndarray]  # `BasisSpec.export_constants`
    c_source: CSource | None  # what the basis computes, in C (`BasisSpec.c_source`; None: no C form)
    activation: str
    edges: Edges
    pre_norm: Norm | None = None  # over the layer input (both branches)
    basis_norm: Norm | None = None  # over the basis path's input (FastKAN)
    bias: np.ndarray | None = None
    nodes: int = 0  # the outputs after multiplication nodes (`KANLinear.node_count`)
    mult_nodes: int = 0
    mult_arity: int = 2
    node_scale: np.ndarray | None = None
    node_bias: np.ndarray | None = None
    output_norm: Norm | None = None  # LayerNorm then SiLU (KAGN, KALN)
    output_bn: Norm | None = None  # eval BatchNorm (Wav-KAN), affine_only
    final_norm: Norm | None = None


@dataclass
class ModelArrays:
    inputs: int
    outputs: int
    task: str
    layers: list[LayerArrays] = field(default_factory=list)
    input_scale: np.ndarray | None = None  # x -> x·scale + shift before the first layer
    input_shift: np.ndarray | None = None
    target_scale: np.ndarray | None = None  # y -> y·scale + shift after the last
    target_shift: np.ndarray | None = None


def _f32(tensor: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().cpu().float().numpy())


def _layer_norm(norm: nn.LayerNorm | None) -> Norm | None:
    if norm is None:
        return None
    return Norm(_f32(norm.weight), _f32(norm.bias), float(norm.eps))


def _folded_batch_norm(norm: nn.BatchNorm1d | None) -> Norm | None:
    """Eval-mode BatchNorm as y·scale + shift (float32, as torch computes it in eval up to rounding)."""
    if norm is None:
        return None
    assert norm.running_var is not None and norm.running_mean is not None
    scale = norm.weight.detach() / torch.sqrt(norm.running_var + norm.eps)
    shift = norm.bias.detach() - norm.running_mean * scale
    return Norm(_f32(scale), _f32(shift), float(norm.eps), affine_only=True)


def _edges(model: KANModel, layer: int, vectors: torch.Tensor) -> Edges:
    if not isinstance(model.edges, CodebookEdges):
        return Edges(dense=_f32(vectors))
    book = model.edges.book(layer)
    dtype = model.edges.codebook_dtype
    stored, scale = to_storage(book.codebook, dtype)
    if dtype in ("float16", "bfloat16"):
        codebook = stored.view(torch.int16).numpy().view(np.uint16).copy()  # the stored bits
    elif dtype == "int8":
        codebook = stored.numpy().copy()
    else:
        codebook = _f32(stored)
    bits = index_bits(book.k)
    packed = pack_bits(book.indices, bits).numpy()
    coding = model.edges.index_coding
    return Edges(codebook=codebook, codebook_dtype=dtype, scale=float(scale) if scale is not None else 1.0,
                 packed=packed, bits=bits, k=book.k, recoded_from=coding if coding != "packed" else None)


def model_arrays(model: KANModel) -> ModelArrays:
    """The arrays of a fully-connected model of any kind (conv models are refused: a ConfigError)."""
    config = model.config
    if config.conv is not None:
        raise ConfigError("only fully-connected models export as arrays (C); this is a conv model")
    arrays = ModelArrays(config.widths[0], config.num_outputs, config.task)
    if model.normalize is not None:
        normalize = model.normalize
        if hasattr(normalize, "input_scale"):
            arrays.input_scale, arrays.input_shift = _f32(normalize.input_scale), _f32(normalize.input_shift)
        if hasattr(normalize, "target_scale"):
            arrays.target_scale, arrays.target_shift = _f32(normalize.target_scale), _f32(normalize.target_shift)
    with torch.no_grad():
        for index, (layer, vectors) in enumerate(zip(model.fc_layers(), model.edge_vectors())):
            arrays.layers.append(_layer(model, index, layer, vectors))
    return arrays


def _layer(model: KANModel, index: int, layer: KANLinear, vectors: torch.Tensor) -> LayerArrays:
    spec = layer.basis.spec
    constants = {name: np.ascontiguousarray(np.asarray(value, dtype=np.float32))
                 for name, value in spec.export_constants(layer.basis).items()}
    try:
        c_source: CSource | None = spec.c_source(layer.basis)
    except ConfigError:
        c_source = None
    result = LayerArrays(layer.in_features, layer.out_features, layer.num_basis, spec, constants, c_source,
                         model.config.base_activation, _edges(model, index, vectors),
                         pre_norm=_layer_norm(layer.pre_norm), basis_norm=_layer_norm(layer.input_norm),
                         bias=_f32(layer.bias) if layer.bias is not None else None,
                         nodes=layer.node_count, mult_nodes=layer.mult_nodes, mult_arity=layer.mult_arity,
                         output_norm=_layer_norm(layer.output_norm), output_bn=_folded_batch_norm(layer.output_bn),
                         final_norm=_layer_norm(layer.final_norm))
    if layer.node_scale is not None and layer.node_bias is not None:
        result.node_scale, result.node_bias = _f32(layer.node_scale), _f32(layer.node_bias)
    return result
