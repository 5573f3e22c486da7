"""The "soft" compress method: a short retrain of the source in which every layer's edge vectors are softly
assigned to a trained codebook, then the hard assignment (after DKM, Cho et al., ICLR 2022, "differentiable
K-means clustering layer").

Clustering a trained model moves every edge to its nearest centroid and fine-tuning then moves only the centroids:
an edge that K-means put in a group the task would not have chosen stays there. Here the source keeps training with
each layer's vectors W (n, |w|) replaced in the forward pass by A·C, where C (k, |w|) is the layer's codebook
(started from the K-means solution of the frontier point being tried) and

    A_ij = softmax_j(-||w_i - c_j||² / τ)                                              (DKM's attention, Eq. 2)

Both W and C (and the model's extras) follow the task's gradient, so edges move between groups as the loss asks.
τ falls geometrically over the run from `TEMPERATURE_START` to `TEMPERATURE_END` times the layer's mean squared
distance from an edge to its nearest centroid at the start, which makes A all but one-hot by the end. Without a
gradient (validation) the store gives the hard assignment, each edge at its nearest centroid and the codebooks at
their storage precision: what the file will hold is what validation judges, stops on and keeps.

Where this departs from DKM: DKM computes C from W in every forward pass by a few soft K-means iterations. Measured
on the imported efficient-kan model of the frontier (Fashion-MNIST 784-32-10, grids shared, k = [16, 64], 3 epochs,
validation accuracy after the usual fine-tuning): with τ at the mean nearest distance the soft K-means collapsed the
codebook to one centroid (58 %); at a tenth of it, 87.0 %, below plain K-means with its fine-tuning (88.2-88.5 %);
with C a trained parameter, as here (soft-to-hard vector quantisation, Agustsson et al., NeurIPS 2017),
88.7-88.9 %."""

from __future__ import annotations

import copy
from typing import Any, cast

import torch
from torch import nn

from kancompress.edges import EdgeStore
from kancompress.models import KANModel, with_edges
from kancompress.optim import edge_groups
from kancompress.quant import round_trip

TEMPERATURE_START = 0.1  # τ at the start, times the layer's mean squared distance to the nearest centroid
TEMPERATURE_END = 0.003  # ... and at the end of the run's steps (geometric in between)


class SoftCodebookEdges(EdgeStore):
    """A source's edge store (`inner`: dense vectors or a meta-learner) whose layer-l vectors reach the model as
    their soft assignment to the trained codebook `codebooks[l]`, or, without a gradient, as their nearest
    centroid at `codebook_dtype`'s precision. τ advances one step per training forward pass (`steps` in all)."""

    kind = "soft"

    def __init__(self, inner: EdgeStore, codebooks: list[torch.Tensor], steps: int, codebook_dtype: str):
        super().__init__()
        self.inner = inner
        self.codebooks = nn.ParameterList([nn.Parameter(codebook.detach().clone().float()) for codebook in codebooks])
        with torch.no_grad():
            spreads = [squared_distances(vectors.float(), codebook.to(vectors.device)).min(dim=1).values.mean()
                       for vectors, codebook in zip(inner.all_vectors(), self.codebooks)]
        self.register_buffer("spread", torch.stack(spreads).clamp_min(torch.finfo(torch.float32).tiny))
        self.steps, self.taken = max(1, steps), 0
        self.codebook_dtype = codebook_dtype

    def num_layers(self) -> int:
        return self.inner.num_layers()

    def temperature(self, layer: int) -> torch.Tensor:
        progress = min(1.0, self.taken / self.steps)
        scale = TEMPERATURE_START * (TEMPERATURE_END / TEMPERATURE_START) ** progress
        spread = cast(torch.Tensor, self.spread)  # (layers,)
        return cast(torch.Tensor, spread[layer] * scale)

    def forward(self, layer: int) -> torch.Tensor:
        vectors = self.inner(layer)  # (n, |w|)
        codebook: torch.Tensor = self.codebooks[layer]  # (k, |w|)
        if not torch.is_grad_enabled():
            return round_trip(codebook, self.codebook_dtype).index_select(0, self.nearest(layer, vectors))
        distances = squared_distances(vectors, codebook)  # (n, k)
        attention = torch.softmax(-distances / self.temperature(layer), dim=1)  # (n, k), rows sum to 1
        if self.training and layer == self.num_layers() - 1:
            self.taken += 1  # the model's forward pass asked for every layer: the next step is cooler
        return attention @ codebook  # (n, |w|)

    def nearest(self, layer: int, vectors: torch.Tensor | None = None) -> torch.Tensor:
        """(n,) int64: each edge's nearest centroid in layer `layer`."""
        with torch.no_grad():
            points = self.inner(layer) if vectors is None else vectors
            return squared_distances(points.float(), self.codebooks[layer].float()).argmin(dim=1)

    def parts(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every layer's (codebook (k, |w|), indices (n,)) of the hard assignment, detached, on the CPU."""
        return [(self.codebooks[layer].detach().cpu().clone(), self.nearest(layer).cpu())
                for layer in range(self.num_layers())]

    def parameter_groups(self, lr: float, lr_meta: float | None, lr_embed: float | None, lr_codebook: float
                         ) -> list[dict[str, Any]]:
        """AdamW groups of the store: the source's vectors at their training rates, the codebooks at `lr_codebook`."""
        return [{"params": list(self.codebooks.parameters()), "lr": lr_codebook},
                *edge_groups(self.inner, lr, lr_meta, lr_embed)]


def softened(source: KANModel, codebooks: list[torch.Tensor], steps: int, codebook_dtype: str) -> KANModel:
    """A copy of `source` (dense or meta) whose edge vectors go through `SoftCodebookEdges` with these starting
    codebooks."""
    inner = copy.deepcopy(source.edges)  # the source itself is left as it is
    return with_edges(source, SoftCodebookEdges(inner, codebooks, steps, codebook_dtype))


def squared_distances(points: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """(n, k) squared Euclidean distances of (n, d) points to (k, d) centroids, each a sum of squared differences:
    the |x|² - 2x·c + |c|² expansion loses the small differences that a low temperature divides by."""
    return torch.cdist(points, centroids, compute_mode="donot_use_mm_for_euclid_dist").pow(2)
