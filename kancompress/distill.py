"""A MetaKAN from a plain KAN without its training run: fit embeddings and a meta-learner to the edge vectors.

MetaCluster needs edge vectors that lie on the low-dimensional manifold a meta-learner generates (paper §3); a
plain KAN's vectors do not, which is why clustering it loses accuracy. `meta_from_dense` moves a trained plain
model onto such a manifold: a MetaKAN (same layers and extras, the given `MetaConfig`) whose generated vectors
M(z_e) approximate the plain vectors w_e in least squares,

    min over z, θ of  Σ_l Σ_e ||M_θ(z_e) - w_e||² / Σ_l Σ_e ||w_e - mean_l(w)||²,

with each layer's embeddings started at its edges' leading principal-component scores (d_emb of them, scaled to
unit variance), so the fit begins from the best d_emb-dimensional linear summary. A short task fine-tune of the
result (`api.compress`) then recovers what the fit lost; the model is clustered as any MetaKAN.
"""

from __future__ import annotations

import dataclasses

import torch

from kancompress.config import MetaConfig
from kancompress.edges import MetaEdges
from kancompress.models import KANModel, with_edges


def meta_from_dense(model: KANModel, meta: MetaConfig, steps: int = 1500, lr: float = 1e-2,
                    seed: int = 0) -> tuple[KANModel, float]:
    """A meta model (on the CPU) generating (approximately) `model`'s edge vectors; returns it and the fit's relative
    squared error (0: exact; 1: no better than each layer's mean vector). Deterministic for a given seed; `model`
    is not changed or moved."""
    config = dataclasses.replace(model.config, meta=meta)
    config.validate()
    targets = [vectors.detach().float().cpu() for vectors in model.edge_vectors()]  # per layer (n_l, |w|)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        edges = MetaEdges(config.num_edges, config.edge_width, meta, [o for o, _ in config.layer_shapes])
        with torch.no_grad():
            for layer, vectors in enumerate(targets):
                edges.embeddings[layer].copy_(principal_scores(vectors, meta.d_emb))
        spread = sum(float(((v - v.mean(dim=0)) ** 2).sum()) for v in targets) or 1.0
        optimizer = torch.optim.Adam(edges.parameters(), lr=lr)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
        error = torch.zeros(())
        for _ in range(steps):
            optimizer.zero_grad()
            error = sum((((edges(layer) - vectors) ** 2).sum() for layer, vectors in enumerate(targets)),
                        torch.zeros(())) / spread
            error.backward()
            optimizer.step()
            schedule.step()
    return with_edges(model, edges, config), float(error.detach())


def principal_scores(vectors: torch.Tensor, components: int) -> torch.Tensor:
    """(n, |w|) -> (n, components): projections on the leading principal directions, each scaled to unit variance
    (fewer directions than asked for are padded with zeros)."""
    centred = vectors - vectors.mean(dim=0)
    _, _, directions = torch.linalg.svd(centred, full_matrices=False)  # rows: principal directions
    scores = centred @ directions[:components].T  # (n, min(components, |w|))
    scores = scores / scores.std(dim=0).clamp_min(1e-12)
    if scores.shape[1] < components:
        scores = torch.cat([scores, torch.zeros(len(vectors), components - scores.shape[1])], dim=1)
    result: torch.Tensor = scores
    return result
