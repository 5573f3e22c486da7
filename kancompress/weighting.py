"""Data-aware clustering: K-means in the metric of what an edge's vector error costs on the layer's real inputs.

Edge (o, i) with vector v adds v·f(x_i) to output o's pre-activation, f(x) = [B_1(x), ..., B_{G+k}(x), act(x)]
(the basis values and the base branch: `KANLinear.edge_features`). Replacing v by a centroid c changes that by
(v - c)·f(x_i), whose mean square over the layer's inputs is

    E_n[((v - c)·f(x_ni))²] = (v - c)ᵀ G_i (v - c),      G_i = E_n[f(x_ni) f(x_ni)ᵀ]    (|w| × |w| per input i)

— the layer-output objective of activation-aware weight quantisation (GPTQ, AWQ), here per KAN input. Plain
K-means is the case G_i = I: it spends centroids on coefficients of basis functions the data never evaluate (a
background pixel sits at one value, so only one direction of its edges' vectors matters at all). `weighted_kmeans`
runs Lloyd's algorithm in this metric from the plain K-means solution:

    I_e = argmin_c (v_e - c)ᵀ G_i(e) (v_e - c),      c = (Σ_{e∈c} G_i(e))⁻¹ Σ_{e∈c} G_i(e) v_e.

A small ridge (`RIDGE` of the mean diagonal) keeps every G_i positive definite. Fully-connected layers only; a
conv layer's edges see image patches, and keep plain K-means.
"""

from __future__ import annotations

import torch

from kancompress.models import KANModel

RIDGE = 1e-3
GRAM_SAMPLES = 20_000  # the moments see at most this many samples (evenly strided)
ITERATIONS = 20
_BLOCK = 1 << 22  # elements of one (outputs, in, k) distance block


@torch.no_grad()
def layer_inputs(model: KANModel, x: torch.Tensor, batch_size: int = 2048) -> list[torch.Tensor]:
    """What each fully-connected layer of `model` receives for the samples `x`: [(N, in_l)], raw (before the
    layer's own normalisation), on x's device."""
    was_training = model.training
    model.eval()
    try:
        current = model.prepare(x)  # (N, in)
        seen = [current]
        for layer, vectors in zip(model.fc_layers(), model.edge_vectors()):
            edges = vectors.view(layer.out_features, layer.in_features, -1)  # (out, in, |w|)
            current = torch.cat([layer(chunk, edges) for chunk in torch.split(current, batch_size)])
            seen.append(current)
    finally:
        model.train(was_training)
    return seen[:-1]


@torch.no_grad()
def input_grams(model: KANModel, x: torch.Tensor, batch_size: int = 2048) -> list[torch.Tensor | None]:
    """Per layer, G_i for each of its inputs, (in, |w|, |w|) float64 with the ridge; None for a conv layer.
    `x`: training inputs (at most `GRAM_SAMPLES` of them are used, evenly strided)."""
    if model.config.conv is not None or model.config.spec.parametric:  # no linear features: plain K-means
        return [None] * len(model.config.layer_shapes)
    x = x[:: -(-x.shape[0] // GRAM_SAMPLES)]  # stride ceil(N / GRAM_SAMPLES)
    grams: list[torch.Tensor | None] = []
    for layer, raw in zip(model.fc_layers(), layer_inputs(model, x, batch_size)):
        width = layer.num_basis + 1
        gram = torch.zeros(layer.in_features, width, width, dtype=torch.float64, device=x.device)
        for chunk in torch.split(raw, batch_size):
            features = layer.edge_features(chunk).double()  # (N, in, |w|)
            gram += torch.einsum("nia,nib->iab", features, features)
        gram /= raw.shape[0]
        ridge = RIDGE * gram.diagonal(dim1=1, dim2=2).mean().clamp_min(1e-12)
        grams.append(gram + ridge * torch.eye(width, dtype=gram.dtype, device=gram.device))
    return grams


@torch.no_grad()
def weighted_kmeans(vectors: torch.Tensor, grams: torch.Tensor, codebook: torch.Tensor,
                    iterations: int = ITERATIONS) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's algorithm in the G-metric (module doc) from `codebook` (k, |w|); `vectors` (out·in, |w|) in edge
    order (out, in), `grams` (in, |w|, |w|). Returns the float32 codebook and int64 indices. An emptied centroid
    keeps its place. Deterministic."""
    inputs, width = grams.shape[0], grams.shape[-1]
    edges = vectors.detach().double().reshape(-1, inputs, width)  # (out, in, |w|)
    weighted = torch.einsum("oia,iab->oib", edges, grams)  # G_i v per edge
    centroids = codebook.detach().double().to(edges.device).clone()
    k = centroids.shape[0]
    rows = max(1, _BLOCK // (inputs * k))
    indices = torch.full(edges.shape[:2], -1, dtype=torch.int64, device=edges.device)
    for _ in range(iterations):
        own = torch.einsum("ka,iab,kb->ik", centroids, grams, centroids)  # cᵀ G_i c: (in, k)
        # ||v - c||²_G = vᵀGv - 2 vᵀGc + cᵀGc; the first term does not depend on c.
        nearest = torch.cat([(own - 2 * torch.einsum("oib,kb->oik", block, centroids)).argmin(dim=-1)
                             for block in torch.split(weighted, rows)])  # (out, in)
        if torch.equal(nearest, indices):
            break
        indices = nearest
        counts = torch.zeros(inputs, k, dtype=torch.float64, device=edges.device)
        counts.scatter_add_(1, indices.T, torch.ones_like(indices.T, dtype=torch.float64))  # (in, k): edges per input
        mass = torch.einsum("ik,iab->kab", counts, grams)  # Σ_{e∈c} G_i(e)
        pull = torch.zeros(k, width, dtype=torch.float64, device=edges.device)
        pull.index_add_(0, indices.reshape(-1), weighted.reshape(-1, width))  # Σ_{e∈c} G_i(e) v_e
        used = counts.sum(dim=0) > 0
        centroids[used] = torch.linalg.solve(mass[used], pull[used])
    return centroids.float(), indices.reshape(-1)
