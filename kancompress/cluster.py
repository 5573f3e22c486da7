"""MetaCluster stage 2: K-means of each layer's edge vectors into a codebook plus one index per edge.

Paper Eqs. 7-9: per layer, minimise Σ_i Σ_{w ∈ C_i} ||w - c_i||² over k centroids in R^|w|, then
I_j = argmin_i ||w_j - c_i||².
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import torch

from kancompress.codec import INDEX_CODINGS
from kancompress.edges import CodebookEdges
from kancompress.quant import CODEBOOK_DTYPES
from kancompress.errors import ConfigError, FormatError
from kancompress.models import KANModel, with_edges


def kmeans(vectors: torch.Tensor, k: int, seed: int = 0, n_init: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """K-means of (n, d) vectors with scikit-learn (k-means++, Lloyd, seeded, deterministic).

    Returns the (k, d) float32 codebook and the (n,) int64 indices. When the vectors have fewer than k distinct
    values, the surplus centroids duplicate existing ones (indices stay valid).
    """
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    points = vectors.detach().cpu().double().numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fitted = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(points)
    codebook = torch.from_numpy(fitted.cluster_centers_.astype(np.float32))
    indices = torch.from_numpy(fitted.labels_.astype(np.int64))
    return codebook, indices


def resolve_ks(model: KANModel, k: int, layer_ks: dict[int, int] | None = None) -> list[int]:
    """Per-layer codebook sizes: `k` everywhere, overridden by `layer_ks` {layer: k}; checked against edges."""
    counts = model.config.num_edges
    layer_ks = layer_ks or {}
    for layer in layer_ks:
        if not 0 <= layer < len(counts):
            raise ConfigError(f"--layer-k names layer {layer}, but the model has layers 0..{len(counts) - 1}")
    ks = [layer_ks.get(layer, k) for layer in range(len(counts))]
    for layer, (size, n) in enumerate(zip(ks, counts)):
        if size < 2:
            raise ConfigError(f"k={size} for layer {layer} is too small; use k >= 2")
        if size > n:
            raise ConfigError(f"k={size} for layer {layer} exceeds its {n} edges; use k <= {n} (e.g. --layer-k {layer}={n})")
        if size > 1 << 16:
            raise ConfigError(f"k={size} for layer {layer} is above the largest supported codebook, 65536")
    return ks


def cluster_model(
    model: KANModel,
    k: int = 16,
    layer_ks: dict[int, int] | None = None,
    seed: int = 0,
    n_init: int = 4,
    codebook_dtype: str = "float32",
    index_coding: str = "packed",
) -> KANModel:
    """A clustered copy of a dense or meta model: codebooks + indices; the meta-learner and embeddings are gone.

    `codebook_dtype` and `index_coding` choose how its file will store them; the codebooks are snapped to that
    precision here, so the model evaluates exactly what will be saved.
    """
    if codebook_dtype not in CODEBOOK_DTYPES:
        raise ConfigError(f"unknown codebook dtype {codebook_dtype!r}; choose from: {', '.join(CODEBOOK_DTYPES)}")
    if index_coding not in INDEX_CODINGS:
        raise ConfigError(f"unknown index coding {index_coding!r}; choose from: {', '.join(INDEX_CODINGS)}")
    if model.kind == "clustered":
        raise FormatError("model is already clustered; cluster its dense or meta source instead")
    ks = resolve_ks(model, k, layer_ks)
    codebooks, indices = [], []
    for vectors, size in zip(model.edge_vectors(), ks):
        codebook, index = kmeans(vectors, size, seed, n_init)
        assert int(index.max()) < size  # post-condition (coremltools-style check)
        codebooks.append(codebook)
        indices.append(index)
    config = dataclasses.replace(model.config, meta=None)
    edges = CodebookEdges(codebooks, indices, codebook_dtype, index_coding)
    edges.round_to_storage()
    return with_edges(model, edges, config)


def quantization_error(model: KANModel, clustered: KANModel) -> list[float]:
    """Per-layer RMSE between the original and the clustered edge vectors."""
    return [
        float(torch.sqrt(torch.mean((a - b) ** 2)))
        for a, b in zip(model.edge_vectors(), clustered.edge_vectors())
    ]
