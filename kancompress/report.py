"""Storage report, computed from a checkpoint header alone (shapes, dtypes, index table).

Per clustered layer with n edges, vector length |w|, k centroids and b-bit codebook entries (paper Eq. 10):

    dense bytes     = n·|w|·4                          (float32 edge vectors)
    clustered bytes = index bytes + |w|·k·b/8 (+ 4 for an int8 scale)
    index bytes     = ceil(n·bits/8) bit-packed (bits = max(1, ceil(log2 k))), or the rANS or context-coded
                      stream's length
    r (Eq. 10)      = n·|w|·b / (n·log2 k + |w|·k·b)            (the paper's formula exactly: one b for the dense
                                                               and the codebook entries, ideal log2 k index bits)
    vs fp32         = dense bytes / clustered bytes             (what the file really saves against float32)

With the layer's index counts (format v2; a context-coded layer stores none) the report also gives the empirical
entropy H(I) and n·H(I)/8, the floor a coder that sees each index alone can reach (context coding, which
predicts an index from its neighbours, can go below it).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from kancompress.format.bits import index_bits, packed_length

from kancompress.format.header import Header
from kancompress.entropy import entropy_bits
from kancompress.format.schema import CODEBOOK_BITS

DENSE_BITS = 32


@dataclass(frozen=True)
class LayerReport:
    layer: int
    n: int  # edges
    width: int  # |w|
    k: int
    bits: int
    codebook_bits: int  # b
    dense_bytes: int
    clustered_bytes: int  # index_bytes + codebook_bytes
    ratio: float  # paper Eq. 10 exactly: n·|w|·b / (n·log2 k + |w|·k·b), one b for dense and codebook
    index_coding: str = "packed"  # "packed", "rans" or "context"
    index_bytes: int = 0
    codebook_bytes: int = 0
    bits_per_edge: float = 0.0  # index_bytes·8 / n
    entropy: float | None = None  # H(I) in bits per edge, when the file records the counts
    entropy_bytes: int | None = None  # ceil(n·H(I)/8)
    stored_ratio: float = 0.0  # float32 dense bytes / bytes actually stored (index stream, codebook, int8 scale)


@dataclass(frozen=True)
class StorageReport:
    kind: str
    model: str
    layers: list[LayerReport]  # clustered figures: stored (clustered kind) or projected at `k` (dense, meta)
    projected: bool  # True when the clustered figures are what clustering at `k` would give
    edge_bytes: int  # what the file spends on edges: dense vectors, meta-learner + embeddings, or codebooks + indices
    extras_bytes: int  # everything else in the file: LayerNorms, biases, Gram β, stored grids
    total_bytes: int  # tensor payload of the file
    file_bytes: int  # size on disk (payload + header)
    dense_bytes: int  # the same model stored as a dense KAN
    clustered_bytes: int  # clustered edges + extras
    ratio: float  # dense KAN bytes / clustered bytes, whole model
    extra_tensors: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _layer(
    layer: int, n: int, width: int, k: int, dtype: str = "float32", coding: str = "packed",
    index_bytes: int | None = None, counts: list[int] | None = None,
) -> LayerReport:
    bits = index_bits(k)
    b = CODEBOOK_BITS[dtype]
    dense = n * width * DENSE_BITS // 8
    index_bytes = packed_length(n, bits) if index_bytes is None else index_bytes
    codebook_bytes = width * k * b // 8 + (4 if dtype == "int8" else 0)
    clustered = index_bytes + codebook_bytes
    entropy = entropy_bits(counts) if counts is not None else None
    return LayerReport(
        layer, n, width, k, bits, b, dense, clustered,
        ratio=n * width * b / (n * math.log2(k) + width * k * b),
        index_coding=coding, index_bytes=index_bytes, codebook_bytes=codebook_bytes,
        bits_per_edge=index_bytes * 8 / n,
        entropy=entropy, entropy_bytes=math.ceil(n * entropy / 8) if entropy is not None else None,
        stored_ratio=dense / clustered,
    )


def storage_report(header: Header, k: int = 16) -> StorageReport:
    """The storage report of a checkpoint; for dense and meta ones, projected at `k` centroids per layer."""
    config = header.config
    width = config.edge_width
    projected = header.kind != "clustered"
    layers = []
    for layer, n in enumerate(config.num_edges):
        if projected:
            layers.append(_layer(layer, n, width, min(k, n)))
        else:
            entry = header.indices[layer]
            counts = list(entry.counts) if entry.counts is not None else None
            layers.append(_layer(layer, n, width, entry.k, entry.codebook_dtype, entry.coding, entry.bytes, counts))
    models = header.stream_models  # v7: rANS counts stored beside their streams
    edge_bytes = sum(t.nbytes + models.get(name, 0) for name, t in header.tensors.items() if name.startswith("edges."))
    extras = {name: t.nbytes + models.get(name, 0) for name, t in header.tensors.items()
              if not name.startswith("edges.")}
    extras_bytes = sum(extras.values())
    dense_bytes = sum(row.dense_bytes for row in layers) + extras_bytes
    clustered_bytes = sum(row.clustered_bytes for row in layers) + extras_bytes
    return StorageReport(
        kind=header.kind,
        model=config.model,
        layers=layers,
        projected=projected,
        edge_bytes=edge_bytes,
        extras_bytes=extras_bytes,
        total_bytes=edge_bytes + extras_bytes,
        file_bytes=header.file_size,
        dense_bytes=dense_bytes,
        clustered_bytes=clustered_bytes,
        ratio=dense_bytes / clustered_bytes,
        extra_tensors=extras,
    )


INSPECT_SCHEMA_VERSION = 1  # of the `inspect --json` layout; the file's own format version is `format_version`


def inspect_json(header: Header, k: int = 16) -> dict[str, Any]:
    """`inspect --json`: the storage report, the file's format version, its model config and provenance."""
    return {"schema_version": INSPECT_SCHEMA_VERSION, "path": str(header.path), "format_version": header.version,
            **storage_report(header, k).to_dict(), "config": header.config.to_dict(), "provenance": header.provenance}


EXTRA_KINDS: tuple[tuple[str, str], ...] = (
    ("normalize.", "data transform"), ("head.", "conv head"), ("norm", "norms"), ("grid", "grids"),
    ("beta_weights", "Gram β"), ("prelu", "PReLU"), ("node_", "node affines"), ("bias", "biases"),
)
"""What an extra tensor is, by the first matching part of its name."""


def extras_label(report: StorageReport) -> str:
    """The kinds of tensors `extras_bytes` counts in this file, e.g. "norms, biases, data transform"."""
    kinds: list[str] = []
    for name in report.extra_tensors:
        kind = next((label for part, label in EXTRA_KINDS if part in name), "other")
        if kind not in kinds:
            kinds.append(kind)
    return ", ".join(kinds) or "none"
