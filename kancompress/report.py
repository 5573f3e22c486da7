"""Storage report, computed from a checkpoint header alone (shapes, dtypes, index table).

Per clustered layer with n edges, vector length |w|, k centroids and b-bit codebook entries (paper Eq. 10):

    dense bytes     = n·|w|·4                          (float32 edge vectors)
    clustered bytes = ceil(n·bits/8) + |w|·k·b/8        (bits = max(1, ceil(log2 k)))
    r               = n·|w|·32 / (n·bits + |w|·k·b)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from kancompress.codec import Header, index_bits, packed_length

DENSE_BITS = 32
_CODEBOOK_BITS = {"F32": 32, "F16": 16, "BF16": 16}


@dataclass(frozen=True)
class LayerReport:
    layer: int
    n: int  # edges
    width: int  # |w|
    k: int
    bits: int
    codebook_bits: int  # b
    dense_bytes: int
    clustered_bytes: int
    ratio: float  # paper Eq. 10


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


def _layer(layer: int, n: int, width: int, k: int, codebook_bits: int) -> LayerReport:
    bits = index_bits(k)
    dense = n * width * DENSE_BITS // 8
    clustered = packed_length(n, bits) + width * k * codebook_bits // 8
    ratio = n * width * DENSE_BITS / (n * bits + width * k * codebook_bits)
    return LayerReport(layer, n, width, k, bits, codebook_bits, dense, clustered, ratio)


def storage_report(header: Header, k: int = 16) -> StorageReport:
    """The storage report of a checkpoint; for dense and meta ones, projected at `k` centroids per layer."""
    config = header.config
    width = config.edge_width
    projected = header.kind != "clustered"
    layers = []
    for layer, n in enumerate(config.num_edges):
        if projected:
            layers.append(_layer(layer, n, width, min(k, n), DENSE_BITS))
        else:
            dtype = header.tensors[f"edges.layers.{layer}.codebook"].dtype
            layers.append(_layer(layer, n, width, header.indices[layer]["k"], _CODEBOOK_BITS[dtype]))
    edge_bytes = sum(t.nbytes for name, t in header.tensors.items() if name.startswith("edges."))
    extras = {name: t.nbytes for name, t in header.tensors.items() if not name.startswith("edges.")}
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
