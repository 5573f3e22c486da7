"""MetaCluster stage 2: K-means of each layer's edge vectors into a codebook plus one index per edge.

Paper Eqs. 7-9: per layer, minimise Σ_i Σ_{w ∈ C_i} ||w - c_i||² over k centroids in R^|w|, then
I_j = argmin_i ||w_j - c_i||².
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import torch

from kancompress.edges import CodebookEdges
from kancompress.errors import ConfigError, FormatError
from kancompress.models import KANModel, with_edges
from kancompress.options import KMEANS_BACKENDS, check_storage
from kancompress.weighting import weighted_kmeans


TORCH_KMEANS_MIN_WORK = 4_000_000
def kmeans(
    vectors: torch.Tensor, k: int, seed: int = 0, n_init: int = 4, backend: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """K-means of (n, d) vectors: (k, d) float32 codebook and (n,) int64 indices, seeded and deterministic.

    backend "sklearn" (k-means++, Lloyd, `n_init` restarts), "torch" (`torch_kmeans`, on the vectors' device,
    memory-bounded), or "auto": torch for layers with n·k above `TORCH_KMEANS_MIN_WORK`, scikit-learn below.
    """
    if backend not in KMEANS_BACKENDS:
        raise ConfigError(f"unknown K-means backend {backend!r}; choose from: {', '.join(KMEANS_BACKENDS)}")
    if backend == "torch" or (backend == "auto" and vectors.shape[0] * k > TORCH_KMEANS_MIN_WORK):
        codebook, indices, _ = torch_kmeans(vectors, k, seed)
        return codebook.cpu(), indices.cpu()
    return sklearn_kmeans(vectors, k, seed, n_init)


def sklearn_kmeans(vectors: torch.Tensor, k: int, seed: int = 0, n_init: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's K-means; when the vectors have fewer than k distinct values, surplus centroids duplicate
    existing ones (indices stay valid)."""
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    points = vectors.detach().cpu().double().numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fitted = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(points)
    codebook = torch.from_numpy(fitted.cluster_centers_.astype(np.float32))
    indices = torch.from_numpy(fitted.labels_.astype(np.int64))
    return codebook, indices


def _nearest(
    points: torch.Tensor, points_sq: torch.Tensor, centroids: torch.Tensor, chunk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of and squared distance to the nearest centroid, `chunk` points at a time (bounded memory)."""
    c_sq = (centroids * centroids).sum(1)  # (k,)
    indices = torch.empty(points.shape[0], dtype=torch.int64, device=points.device)
    distances = torch.empty(points.shape[0], dtype=points.dtype, device=points.device)
    for start in range(0, points.shape[0], chunk):
        # ||x - c||² = ||x||² - 2·x·c + ||c||², the cross term as one matrix product (b, k)
        scores = torch.addmm(c_sq, points[start : start + chunk], centroids.T, alpha=-2.0)
        best, index = scores.min(dim=1)
        indices[start : start + chunk] = index
        distances[start : start + chunk] = best
    distances.add_(points_sq).clamp_min_(0)
    return indices, distances


def _lloyd(
    points: torch.Tensor, codebook: torch.Tensor, max_iter: int, tol: float, chunk: int
) -> torch.Tensor:
    """Lloyd iterations from `codebook` until no centroid moves more than `tol` (squared, absolute)."""
    k = codebook.shape[0]
    points_sq = (points * points).sum(1)
    for _ in range(max_iter):
        indices, distances = _nearest(points, points_sq, codebook, chunk)
        counts = torch.bincount(indices, minlength=k)
        sums = torch.zeros_like(codebook).index_add_(0, indices, points)
        updated = sums / counts.clamp_min(1)[:, None].to(sums.dtype)
        empty = (counts == 0).nonzero().flatten()
        if empty.numel():  # an empty cluster restarts at one of the points farthest from its centroid
            updated[empty] = points[distances.topk(empty.numel()).indices]
        shift = float(((updated - codebook) ** 2).sum(1).max())
        codebook = updated
        if shift <= tol:
            break
    return codebook


def _kmeans_plus_plus(sample: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Greedy k-means++ seeding: each step draws 2 + ln k candidates ∝ D² and keeps the best (as scikit-learn)."""
    trials = 2 + int(math.log(k))
    first = int(torch.randint(sample.shape[0], (1,), generator=generator))
    centroids = [sample[first]]
    closest = ((sample - sample[first]) ** 2).sum(1)  # (s,)
    sample_sq = (sample * sample).sum(1)  # (s,)
    for _ in range(1, k):
        weights = closest.cpu()
        picks = (torch.multinomial(weights, trials, replacement=True, generator=generator)
                 if float(weights.sum()) > 0 else torch.randint(sample.shape[0], (trials,), generator=generator))
        candidates = sample[picks.to(sample.device)]  # (t, d)
        cross = sample @ candidates.T  # (s, t)
        distance = (sample_sq[:, None] - 2 * cross + (candidates * candidates).sum(1)).clamp_min_(0)  # (s, t)
        best = int(torch.minimum(distance, closest[:, None]).sum(0).argmin())
        centroids.append(candidates[best])
        closest = torch.minimum(closest, distance[:, best])
    return torch.stack(centroids)  # (k, d)


def torch_kmeans(
    vectors: torch.Tensor,
    k: int,
    seed: int = 0,
    max_iter: int = 100,
    tol: float = 1e-4,
    chunk: int = 1 << 14,
    sample_size: int | None = None,
    refine_iter: int = 25,
    n_init: int = 1,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Lloyd's K-means in torch on the vectors' device, memory bounded by `chunk`·k distances at a time.

    Greedy k-means++ seeding and Lloyd iterations run on a random sample of `sample_size` points (default
    max(100,000, 200·k)); when the data is larger, up to `refine_iter` more Lloyd iterations refine the centroids
    on all of it. Iterations stop when no centroid moves more than `tol` times the data's mean per-dimension variance
    (scikit-learn's scale). Empty clusters
    restart at the farthest points. The seeding and sample iterations run `n_init` times and the run with the
    lowest inertia on the sample is refined. Returns (codebook, indices, inertia).
    """
    points = vectors.detach().float()
    n = points.shape[0]
    generator = torch.Generator().manual_seed(seed)
    size = sample_size or max(100_000, 200 * k)
    sample = points if n <= size else points[torch.randperm(n, generator=generator)[:size].to(points.device)]
    threshold = tol * (float(points.var(dim=0).mean()) or 1.0)  # scikit-learn's tolerance scale
    best, best_inertia = None, float("inf")
    sample_sq = (sample * sample).sum(1)
    for _ in range(max(1, n_init)):
        candidate = _lloyd(sample, _kmeans_plus_plus(sample, k, generator), max_iter, threshold, chunk)
        inertia = float(_nearest(sample, sample_sq, candidate, chunk)[1].double().sum())
        if inertia < best_inertia:
            best, best_inertia = candidate, inertia
    assert best is not None  # n_init >= 1 runs at least once
    codebook = best
    if n > size:
        codebook = _lloyd(points, codebook, refine_iter, threshold, chunk)
    indices, distances = _nearest(points, (points * points).sum(1), codebook, chunk)
    return codebook, indices, float(distances.double().sum())


def resolve_ks(model: KANModel, k: int, layer_ks: dict[int, int] | None = None, cap: bool = False) -> list[int]:
    """Per-layer codebook sizes: `k` everywhere, overridden by `layer_ks` {layer: k}; checked against edges. With
    `cap`, `k` (not an explicit `layer_ks` entry) is capped at each layer's edge count (`capped_layers` names
    them); every layer whose k is still above its edge count is named in one error."""
    counts = model.config.num_edges
    layer_ks = layer_ks or {}
    for layer in layer_ks:
        if not 0 <= layer < len(counts):
            raise ConfigError(f"--layer-k names layer {layer}, but the model has layers 0..{len(counts) - 1}")
    ks = [layer_ks.get(layer, min(k, n) if cap else k) for layer, n in enumerate(counts)]
    for layer, size in enumerate(ks):
        if size < 2:
            raise ConfigError(f"k={size} for layer {layer} is too small; use k >= 2")
        if size > 1 << 16:
            raise ConfigError(f"k={size} for layer {layer} is above the largest supported codebook, 65536")
    above = [(layer, size, n) for layer, (size, n) in enumerate(zip(ks, counts)) if size > n]
    if above:
        where = ", ".join(f"layer {layer} (k={size}, {n} edges)" for layer, size, n in above)
        fix = " ".join(f"--layer-k {layer}={n}" for layer, _, n in above)
        raise ConfigError(f"k exceeds the edge count of {where}; use k <= the edges, e.g. {fix}")
    return ks


def candidate_ks(ks: tuple[int, ...], edges: int) -> list[int]:
    """The codebook sizes a size search tries on a layer of `edges` edges: those of `ks` below the edge count, and
    the edge count itself (every edge its own vector: no sharing, only the storage dtype's rounding) when it is
    not above the largest of `ks`; ascending."""
    below = [k for k in sorted(ks) if k < edges]
    return below + [edges] if edges <= max(ks) or not below else below


def capped_layers(model: KANModel, k: int, layer_ks: dict[int, int] | None = None) -> dict[int, int]:
    """{layer: its edge count} for the layers whose k `resolve_ks(..., cap=True)` caps below `k`."""
    layer_ks = layer_ks or {}
    return {layer: n for layer, n in enumerate(model.config.num_edges) if layer not in layer_ks and k > n}


class Clusterer:
    """K-means of one model's edge vectors per (layer, k), computed once and cached, to assemble clustered models
    with any per-layer ks (one `cluster_model` call, or the many trials of a size-accuracy search).

    With `grams` (`weighting.input_grams`: per layer G_i, or None), a layer's K-means is refined in the metric of
    its output error on the data (`weighting.weighted_kmeans`, started from the plain solution, which stays
    available: `layer(..., data_aware=False)` reuses it rather than clustering again)."""

    def __init__(
        self,
        model: KANModel,
        seed: int = 0,
        n_init: int = 4,
        codebook_dtype: str = "float32",
        index_coding: str = "packed",
        backend: str = "auto",
        grams: list[torch.Tensor | None] | None = None,
    ):
        if model.kind == "clustered":
            raise FormatError("model is already clustered; cluster its dense or meta source instead")
        check_storage(codebook_dtype, index_coding)
        self.model, self.seed, self.n_init, self.backend = model, seed, n_init, backend
        self.codebook_dtype, self.index_coding = codebook_dtype, index_coding
        self.vectors = model.edge_vectors()
        self.grams = grams or [None] * len(self.vectors)
        self._cache: dict[tuple[int, int, bool], tuple[torch.Tensor, torch.Tensor]] = {}

    def data_aware(self, layer: int) -> bool:
        """Whether `layer` has a data-aware K-means (a Gram matrix per input; not for conv layers)."""
        return self.grams[layer] is not None

    def layer(self, layer: int, k: int, data_aware: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(codebook (k, |w|) float32, indices (edges,) int64) of `layer` at `k`; data-aware where the layer can be
        (default) or as `data_aware` says."""
        weighted = self.data_aware(layer) if data_aware is None else data_aware and self.data_aware(layer)
        key = (layer, k, weighted)
        if key not in self._cache:
            if weighted:
                codebook, indices = self.layer(layer, k, data_aware=False)
                grams = self.grams[layer]
                assert grams is not None
                codebook, indices = weighted_kmeans(self.vectors[layer], grams, codebook)
                codebook, indices = codebook.cpu(), indices.cpu()
            else:
                codebook, indices = kmeans(self.vectors[layer], k, self.seed, self.n_init, self.backend)
            assert int(indices.max()) < k  # post-condition (coremltools-style check)
            self._cache[key] = codebook, indices
        return self._cache[key]

    def build(self, ks: list[int], data_aware: bool | None = None) -> KANModel:
        """The clustered model with k = ks[l] in layer l; codebooks snapped to their storage precision, so the
        model evaluates exactly what its file will hold."""
        resolve_ks(self.model, 2, dict(enumerate(ks)))  # validates every k against its layer
        parts = [self.layer(layer, k, data_aware) for layer, k in enumerate(ks)]
        return clustered_from_parts(self.model, parts, self.codebook_dtype, self.index_coding)


def clustered_from_parts(
    model: KANModel, parts: list[tuple[torch.Tensor, torch.Tensor]], codebook_dtype: str, index_coding: str
) -> KANModel:
    """The clustered model of `model` with layer l's (codebook, indices) = parts[l], codebooks snapped to their
    storage precision."""
    check_storage(codebook_dtype, index_coding)
    edges = CodebookEdges([c for c, _ in parts], [i for _, i in parts], codebook_dtype, index_coding)
    edges.round_to_storage()
    return with_edges(model, edges, dataclasses.replace(model.config, meta=None))


def cluster_model(
    model: KANModel,
    k: int = 16,
    layer_ks: dict[int, int] | None = None,
    seed: int = 0,
    n_init: int = 4,
    codebook_dtype: str = "float32",
    index_coding: str = "packed",
    backend: str = "auto",
    grams: list[torch.Tensor | None] | None = None,
) -> KANModel:
    """A clustered copy of a dense or meta model: codebooks + indices; the meta-learner and embeddings are gone.

    `codebook_dtype` and `index_coding` choose how its file will store them; `grams` makes it data-aware
    (`Clusterer`).
    """
    ks = resolve_ks(model, k, layer_ks)
    return Clusterer(model, seed, n_init, codebook_dtype, index_coding, backend, grams).build(ks)
