"""The kancompress file format, declared: versions, metadata keys, and the tensors of every checkpoint kind.

Layout (safetensors)
--------------------
`__metadata__` (str -> str), keys in this order:
    format          "kancompress"
    format_version  "8" for clustered files: the lean container (`format.lean`: one byte tensor, `payload`, holding
                    a binary layout table, the tensors below and a CRC of the header and one of the data; a
                    compact config; "7", still read, had two tensors and the table and CRCs in the metadata);
                    for dense and meta files:
                    "6" for models with LayerNorms placed in the stack (`layer_norms`), a `basis_norm` override,
                    multiplication nodes (`mult_nodes`, `mult_arity`) or a basis added with it (fourierkan, wavkan:
                    `layers.{l}.output_bn.*`, `node_{scale,bias}` below), else
                    "5" for files that store a layer's adapted grids as shared rows ("grids" below), else
                    "4" for clustered files with a context-coded layer or models with per-layer grid ranges
                    (`ModelConfig.grid_ranges`), else "3" for files of regression models or
                    with a stored data transform, else "2" (the oldest version that can hold the file, so older
                    readers keep reading what they can); "1" still read
    kind            "dense" | "meta" | "clustered"
    model           JSON of `ModelConfig`
    provenance      JSON object (dataset, epochs, accuracy, kancompress version, source, ...)
    checksums       JSON {"metadata": CRC-32 of the other metadata entries (their canonical JSON), "tensors":
                    {name: CRC-32 of its bytes}}, as 8 hex digits: any flipped bit or byte is refused, naming
                    what it hit. Files written before checksums existed have none and stay readable.
    indices         clustered only: JSON list, one `IndexEntry` per layer:
                    v1: {"n", "k", "bits", "coding": "packed"}
                    v2: {"n", "k", "bits", "coding": "packed" | "rans", "counts": [k symbol counts],
                         "bytes": length of the index stream, "codebook_dtype": float32|float16|bfloat16|int8}
                    v4: as v2, and "coding" may be "context" (`entropy.context_encode`: no model stored, the
                        coder adapts as it goes); such an entry has "counts": null and one more key, "row": the
                        distance in edges to the neighbour "above" in its context (28 for a first layer on 28×28
                        images)
    grids           v5, B-spline models with stored (adapted) grids only, where it is smaller: JSON list, one
                    entry per layer, null for a layer that stores its (in, G+2k+1) grid whole, else an
                    `IndexEntry` of the layer's grid index (n = in, k = distinct grids, k >= 1, codebook_dtype
                    "float32"): the layer's grid is then grid_rows[grid_index] (lossless; `regrid.share_grids`
                    makes the grids of a layer few)
JSON values are written with sorted keys and no spaces, so the same model and provenance give the same bytes.

Tensors (`declared_tensors`), for layer l with n_l edges of |w| numbers each (a lean file, versions 7 and 8,
stores the same tensors packed into one or two, `format.lean`; reading it gives this layout back):
    dense       edges.vectors.{l}                       F32 (n_l, |w|)
    meta        edges.learners.{j}.hidden.{weight,bias}  F32 (hidden, d_emb), (hidden,)
                edges.learners.{j}.out.{weight,bias}     F32 (|w|, hidden), (|w|,)   (j: one, or one per layer)
                edges.embeddings.{l}                     F32 (n_l, d_emb)
    clustered   edges.layers.{l}.codebook                F32 | F16 | BF16 | I8 (k_l, |w|)
                edges.layers.{l}.codebook_scale          F32 (1,)                   (int8 codebooks only)
                edges.layers.{l}.indices                 U8 (index stream bytes,)   (bit-packed, rANS in v2, or
                                                                                     context-coded in v4)
    every kind  layers.{l}.basis.*   the basis's own tensors (`BasisSpec.stored_tensors`: stored grid, Gram β)
                layers.{l}.basis.grid_rows               F32 (k, G+2k+1)   v5: a "grids" layer, instead of
                layers.{l}.basis.grid_index              U8 (stream bytes,)   its basis.grid
                layers.{l}.pre_norm.{weight,bias}        F32 (in,)   FC, norm_between and l > 0, or l in layer_norms
                layers.{L-1}.final_norm.{weight,bias}    F32 (out,)  FC, the last layer, L in layer_norms
                layers.{l}.input_norm.*                  FC: LayerNorm (in,) (basis_norm, or the config's
                                                         basis_norm override); conv: BatchNorm (in,)
                layers.{l}.bias                          F32 (out,)  FC, spec bias or output_bias
                layers.{l}.output_norm.*                 FC: LayerNorm (out,) (output_norm); conv: BatchNorm (out,)
                layers.{l}.output_bn.*                   FC: BatchNorm (out,) (output_batchnorm, Wav-KAN)
                layers.{l}.node_{scale,bias}             F32 (nodes,) FC with mult_nodes[l] > 0 (pykan MultKAN)
                layers.{l}.prelu.weight                  F32 (1,)    conv, output "prelu"
                head.linear.{weight,bias}                F32 (classes, C), (classes,)   conv, linear head
                head.vectors                             F32 (classes·C, |w|)   conv, v6 KAN head (head_degree D),
                head.kan.*                               with its layer's extras (Gram β, LayerNorm (classes,))
    version 3   normalize.input_{scale,shift}            F32 (in,) or conv (C,)   config input_affine
                normalize.target_{scale,shift}           F32 (outputs,)           config target_affine (regression)
A BatchNorm is {weight, bias, running_mean, running_var} F32 and num_batches_tracked I64 ().

The names are this module's, not the model's: loading checks a model against them, so renaming an attribute of
a layer cannot silently change what files hold. Nothing here imports torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from kancompress.config import ModelConfig
from kancompress.format.bits import index_bits, packed_length

FORMAT = "kancompress"
FORMAT_VERSION = 8  # the newest version this package reads and writes; v1 to v7 files stay readable
READABLE_VERSIONS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
KINDS: tuple[str, ...] = ("dense", "meta", "clustered")
# What a writer may be asked for: rans = rANS where smaller than packed; context = per layer the smallest of packed,
# rANS and context coding (the last only for k <= entropy.CONTEXT_MAX_K).
INDEX_CODINGS: tuple[str, ...] = ("packed", "rans", "context")
FILE_CODINGS: dict[int, tuple[str, ...]] = {1: ("packed",), 2: ("packed", "rans"), 3: ("packed", "rans"),
                                            4: ("packed", "rans", "context"), 5: ("packed", "rans", "context"),
                                            6: ("packed", "rans", "context"), 7: ("packed", "rans", "context"),
                                            8: ("packed", "rans", "context")}
CODEBOOK_DTYPES: dict[str, str] = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "int8": "I8"}
CODEBOOK_BITS: dict[str, int] = {"float32": 32, "float16": 16, "bfloat16": 16, "int8": 8}  # b of paper Eq. 10
MAX_HEADER_BYTES = 16 << 20  # a header larger than this is refused before parsing
MAX_K = 1 << 16  # largest codebook: indices of at most 16 bits
METADATA_KEYS: tuple[str, ...] = ("format", "format_version", "kind", "model", "provenance", "indices", "grids",
                                  "checksums", "crc", "extras")
MAX_JSON_DEPTH = 64  # deeper nesting in a header's JSON is refused (a crafted file could exhaust the stack)

ITEM_BYTES: dict[str, int] = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4, "U8": 1, "I8": 1,
                              "BOOL": 1}


@dataclass(frozen=True)
class TensorInfo:
    dtype: str  # safetensors dtype name, e.g. "F32"
    shape: tuple[int, ...]
    offsets: tuple[int, int] = (0, 0)  # byte range in the data section (as read from a file)

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * ITEM_BYTES[self.dtype]


@dataclass(frozen=True)
class IndexEntry:
    """How one clustered layer stores its indices and codebook (a v1 entry reads as packed, float32, no counts)."""

    n: int  # edges
    k: int  # codebook size
    bits: int  # bits per packed index: max(1, ceil(log2 k))
    coding: str  # "packed" | "rans" | "context"
    counts: tuple[int, ...] | None  # how many edges use each centroid (v2); the rANS model; None for "context"
    bytes: int  # length of the index stream
    codebook_dtype: str = "float32"
    row: int | None = None  # "context" only: distance to the neighbour above

    @classmethod
    def packed(cls, n: int, k: int, counts: tuple[int, ...] | None = None, codebook_dtype: str = "float32") -> IndexEntry:
        bits = index_bits(k)
        return cls(n, k, bits, "packed", counts, packed_length(n, bits), codebook_dtype)

    def to_json(self) -> dict[str, Any]:
        """The v2 metadata form (v4 for a context-coded entry, which adds "row")."""
        return {"n": self.n, "k": self.k, "bits": self.bits, "coding": self.coding,
                "counts": list(self.counts) if self.counts is not None else None, "bytes": self.bytes,
                "codebook_dtype": self.codebook_dtype, **({"row": self.row} if self.coding == "context" else {})}


def metadata_checksum(metadata: dict[str, str]) -> str:
    """CRC-32 (8 hex digits) of every metadata entry but the checksums themselves (`checksums`, v7 `crc`), in
    canonical JSON."""
    import json
    import zlib

    covered = {key: value for key, value in sorted(metadata.items()) if key not in ("checksums", "crc")}
    return f"{zlib.crc32(json.dumps(covered, separators=(',', ':')).encode()):08x}"


def required_version(config: ModelConfig) -> int:
    """The oldest format version that can hold a checkpoint of this config and any index coding but context."""
    if v6_features(config):
        return 6
    if config.grid_ranges is not None:
        return 4
    return 3 if config.task != "classification" or config.input_affine or config.target_affine else 2


def v6_features(config: ModelConfig) -> list[str]:
    """What in this config needs format version 6 (imports of the wave-3 layouts and bases)."""
    features = [name for name, used in (("LayerNorms placed in the stack (layer_norms)", config.layer_norms is not None),
                                        ("a basis_norm override", config.basis_norm is not None),
                                        ("multiplication nodes", config.mult_nodes is not None),
                                        ("a KAN head", config.head_config() is not None))
                if used]
    return features + ([f"the {config.model} basis"] if config.spec.format_version >= 6 else [])


def file_version(config: ModelConfig, table: list[IndexEntry] | None = None,
                 grids: list[IndexEntry | None] | None = None) -> int:
    """The format version a writer stamps on a file with a tensor per part (dense, meta, and clustered files not
    in the lean container): the oldest that holds this config, index table and grid table."""
    if grids and any(entry is not None for entry in grids):
        return max(5, required_version(config))
    return 4 if table and any(entry.coding == "context" for entry in table) else required_version(config)


def grid_tensor_names(layer: int) -> tuple[str, str, str]:
    """(whole grid, shared grid rows, grid index) tensor names of a layer with stored grids."""
    prefix = f"layers.{layer}.basis."
    return prefix + "grid", prefix + "grid_rows", prefix + "grid_index"


def edge_tensor_names(layer: int) -> tuple[str, str, str]:
    """(codebook, codebook scale, indices) tensor names of a clustered layer."""
    prefix = f"edges.layers.{layer}."
    return prefix + "codebook", prefix + "codebook_scale", prefix + "indices"


def declared_tensors(config: ModelConfig, kind: str, table: list[IndexEntry] | None = None,
                     grids: list[IndexEntry | None] | None = None) -> dict[str, TensorInfo]:
    """Every tensor a checkpoint of this config and kind holds, with its dtype and shape (see the module doc).

    A clustered file needs its index table (`table`), which gives each layer's k, stream length and codebook dtype;
    `grids` (v5) says which layers store their grids as shared rows and an index.
    """
    f32 = "F32"
    width = config.edge_width
    tensors: dict[str, TensorInfo] = {}
    if kind == "dense":
        for layer, n in enumerate(config.num_edges):
            tensors[f"edges.vectors.{layer}"] = TensorInfo(f32, (n, width))
    elif kind == "meta":
        assert config.meta is not None
        meta = config.meta
        learners = meta.learner_count(len(config.num_edges))
        for j in range(learners):
            p = f"edges.learners.{j}."
            tensors[p + "hidden.weight"] = TensorInfo(f32, (meta.hidden, meta.d_emb))
            tensors[p + "hidden.bias"] = TensorInfo(f32, (meta.hidden,))
            tensors[p + "out.weight"] = TensorInfo(f32, (width, meta.hidden))
            tensors[p + "out.bias"] = TensorInfo(f32, (width,))
        for layer, n in enumerate(config.num_edges):
            tensors[f"edges.embeddings.{layer}"] = TensorInfo(f32, (n, meta.d_emb))
    elif kind == "clustered":
        if table is None or len(table) != len(config.num_edges):
            raise ValueError("a clustered checkpoint's tensors follow from its index table, one entry per layer")
        for layer, entry in enumerate(table):
            codebook, scale, indices = edge_tensor_names(layer)
            tensors[codebook] = TensorInfo(CODEBOOK_DTYPES[entry.codebook_dtype], (entry.k, width))
            if entry.codebook_dtype == "int8":
                tensors[scale] = TensorInfo(f32, (1,))
            tensors[indices] = TensorInfo("U8", (entry.bytes,))
    else:
        raise ValueError(f"unknown checkpoint kind {kind!r}")
    tensors.update(_layer_tensors(config))
    for layer, shared in enumerate(grids or ()):
        if shared is not None:
            whole, rows, index = grid_tensor_names(layer)
            knots = tensors.pop(whole).shape[1]
            tensors[rows] = TensorInfo(f32, (shared.k, knots))
            tensors[index] = TensorInfo("U8", (shared.bytes,))
    return tensors


def _norm(prefix: str, size: int, batch: bool) -> dict[str, TensorInfo]:
    names = ("weight", "bias", "running_mean", "running_var") if batch else ("weight", "bias")
    tensors = {f"{prefix}.{name}": TensorInfo("F32", (size,)) for name in names}
    if batch:
        tensors[f"{prefix}.num_batches_tracked"] = TensorInfo("I64", ())
    return tensors


def _layer_tensors(config: ModelConfig) -> dict[str, TensorInfo]:
    """The uncompressed extras of every layer (and the conv head), from the basis spec's flags."""
    spec = config.spec
    tensors: dict[str, TensorInfo] = {}
    conv = config.conv is not None
    for layer, (out_f, in_f) in enumerate(config.layer_shapes):
        p = f"layers.{layer}."
        for name, shape in spec.stored_tensors(config.basis, in_f).items():
            tensors[p + "basis." + name] = TensorInfo("F32", shape)
        if not conv:
            if config.has_pre_norm(layer):
                tensors.update(_norm(p + "pre_norm", in_f, batch=False))
            if config.fc_basis_norm:
                tensors.update(_norm(p + "input_norm", in_f, batch=False))
            if spec.fc.bias or config.output_bias:
                tensors[p + "bias"] = TensorInfo("F32", (out_f,))
            nodes = config.widths[layer + 1]  # out_f less the sub-nodes multiplication nodes fold
            if config.layer_mult_nodes(layer):
                tensors[p + "node_scale"] = TensorInfo("F32", (nodes,))
                tensors[p + "node_bias"] = TensorInfo("F32", (nodes,))
            if spec.fc.output_norm:
                tensors.update(_norm(p + "output_norm", nodes, batch=False))
            if spec.fc.output_batchnorm:
                tensors.update(_norm(p + "output_bn", nodes, batch=True))
            if layer == len(config.layer_shapes) - 1 and config.has_final_norm:
                tensors.update(_norm(p + "final_norm", config.widths[-1], batch=False))
        else:
            if spec.conv.basis_norm:
                tensors.update(_norm(p + "input_norm", in_f, batch=True))
            if spec.conv.output != "none":
                tensors.update(_norm(p + "output_norm", out_f, batch=True))
            if spec.conv.output == "prelu":
                tensors[p + "prelu.weight"] = TensorInfo("F32", (1,))
    if config.input_affine:
        tensors["normalize.input_scale"] = TensorInfo("F32", (config.widths[0],))
        tensors["normalize.input_shift"] = TensorInfo("F32", (config.widths[0],))
    if config.target_affine:
        tensors["normalize.target_scale"] = TensorInfo("F32", (config.num_outputs,))
        tensors["normalize.target_shift"] = TensorInfo("F32", (config.num_outputs,))
    head = config.head_config()
    if config.conv is not None and head is None:
        tensors["head.linear.weight"] = TensorInfo("F32", (config.conv.num_classes, config.widths[-1]))
        tensors["head.linear.bias"] = TensorInfo("F32", (config.conv.num_classes,))
    elif head is not None:  # a KAN head (v6): its vectors and the extras of a one-layer model of its config
        tensors["head.vectors"] = TensorInfo("F32", (head.num_edges[0], head.edge_width))
        tensors.update({"head.kan." + name.removeprefix("layers.0."): info
                        for name, info in _layer_tensors(head).items()})
    return tensors
