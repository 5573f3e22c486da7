"""The proxy of the fast search: what each layer's clustering at each k costs in bytes and in loss, measured
without fine-tuning anything.

For every layer l, codebook size k and clustering (plain K-means, and data-aware where the layer has one:
`weighting`), the layer alone is replaced by its clustered vectors (codebooks at their storage precision) and the
task loss measured on a calibration slice of the training split:
ΔL_l(k) = L(model with layer l clustered) − L(model).
The search then assumes the increases add up over layers (ΔL(k_1..k_L) ≈ Σ_l ΔL_l(k_l); a first-order model,
HAWQ-style per-layer sensitivity measured directly) and that fine-tuning recovers more the smaller ΔL is; both are
checked where it matters, by fine-tuning the candidates it picks (`engine`).
Bytes are exact: what the layer's index stream, table entry and codebook add to the file (`layer_bytes`).
Under torchrun each rank measures its share of the calibration rows and the loss sums are all-reduced, so every
rank sees the same ΔL; each layer's K-means is checked to be the same on every rank (`distributed.check_same`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch

from kancompress import distributed
from kancompress.cluster import Clusterer, candidate_ks
from kancompress.edges import DenseEdges
from kancompress.format.checkpoint import layer_bytes
from kancompress.models import KANModel, with_edges
from kancompress.quant import round_trip
from kancompress.tasks import batch_sums, metrics_from_sums
from kancompress.weighting import layer_inputs

PROXY_SAMPLES = 4096  # calibration rows (evenly strided over the training split)
PROXY_SAMPLES_CONV = 1024  # for conv models, whose every probe runs the conv layers from the focused one on
PROBE_BATCH = 256  # rows per forward when a probe runs whole layers (conv, parametric bases)


@dataclass(frozen=True)
class LayerChoice:
    """One way to cluster one layer: k, which K-means, the result, its bytes and its loss increase ΔL."""

    layer: int
    k: int
    data_aware: bool
    codebook: torch.Tensor  # (k, |w|) float32, as K-means left it
    indices: torch.Tensor  # (edges,) int64
    bytes: int
    loss: float


def calibration(x: torch.Tensor, y: torch.Tensor, conv: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The proxy's calibration rows of (x, y), evenly strided: at most `PROXY_SAMPLES`, or `PROXY_SAMPLES_CONV`
    for a conv model; under torchrun, this rank's share of them."""
    samples = PROXY_SAMPLES_CONV if conv else PROXY_SAMPLES
    stride = -(-x.shape[0] // samples)
    return distributed.share(x[::stride]), distributed.share(y[::stride])


@torch.no_grad()
def layer_choices(
    clusterer: Clusterer,
    ks: tuple[int, ...],
    codebook_dtype: str,
    index_coding: str,
    x: torch.Tensor,
    y: torch.Tensor,
    on_layer: Callable[[int], None] | None = None,
) -> list[list[LayerChoice]]:
    """Per layer, every (k, clustering) choice with its bytes and ΔL on the calibration rows (x, y) (module doc),
    for the layer's `cluster.candidate_ks`."""
    source = clusterer.model
    device = next(source.parameters()).device
    probe = _Probe(with_edges(source, DenseEdges(clusterer.vectors), dataclasses.replace(source.config, meta=None))
                   .to(device).eval(), x.to(device), y)
    layers: list[list[LayerChoice]] = []
    for layer, (count, shape) in enumerate(zip(source.config.num_edges, source.config.edge_shapes)):
        probe.focus(layer)
        choices = []
        for k in candidate_ks(ks, count):
            for aware in (False, True) if clusterer.data_aware(layer) else (False,):
                codebook, indices = clusterer.layer(layer, k, aware)
                decoded = round_trip(codebook, codebook_dtype)[indices]  # (edges, |w|)
                size = layer_bytes(codebook, indices, k, codebook_dtype, index_coding, shape)
                choices.append(LayerChoice(layer, k, aware, codebook, indices, size, probe.increase(decoded)))
        checksum = sum(float(choice.codebook.double().sum()) + float(choice.indices.sum()) for choice in choices)
        distributed.check_same(checksum, f"K-means of layer {layer}", device)
        layers.append(choices)
        if on_layer is not None:
            on_layer(layer)
    return layers


class _Probe:
    """The loss of the model with one layer's edge vectors replaced, the others as they are.

    For a fully-connected model with linear edge features, layer l's input features f(x)
    (`KANLinear.edge_features`) are computed once per layer, so each replacement costs a matrix product and the
    layers after it. Other models (conv, parametric bases) keep what the focused layer receives, computed once
    per layer from the previous one's, and run only the layers from it on, `PROBE_BATCH` rows at a time: memory
    stays bounded by a batch and the layers before the focused one are never recomputed."""

    @torch.no_grad()
    def __init__(self, model: KANModel, x: torch.Tensor, y: torch.Tensor):
        self.model, self.x, self.y = model, x, y
        self.staged = model.head is None and not model.config.spec.parametric
        self.inputs = layer_inputs(model, x) if self.staged else []
        self.layer, self.features = 0, torch.empty(0)
        # Unstaged: what layer `self.layer` receives, one tensor per batch of rows.
        self.received = [] if self.staged else [model.prepare(batch) for batch in torch.split(x, PROBE_BATCH)]
        self.reference = self._loss(model(x)) if self.staged else self._loss_from(0)

    @torch.no_grad()
    def focus(self, layer: int) -> None:
        """Prepare replacements of `layer` (its input features, when staged; what it receives, otherwise). Layers
        are focused in increasing order."""
        if self.staged:
            fc = self.model.fc_layers()[layer]
            self.features = fc.edge_features(self.inputs[layer])  # (N, in, |w|)
        else:
            for index in range(self.layer, layer):
                self.received = [self.model.run_layer(index, batch) for batch in self.received]
        self.layer = layer

    @torch.no_grad()
    def increase(self, vectors: torch.Tensor) -> float:
        """ΔL of `vectors` (edges, |w|) in place of the focused layer's."""
        vectors = vectors.to(self.x.device)
        if not self.staged:
            edges = self.model.edges
            assert isinstance(edges, DenseEdges)
            original = edges.vectors[self.layer].detach().clone()
            edges.vectors[self.layer].copy_(vectors)
            try:
                return self._loss_from(self.layer) - self.reference
            finally:
                edges.vectors[self.layer].copy_(original)
        fc = self.model.fc_layers()[self.layer]
        summed = torch.einsum("nia,oia->no", self.features, vectors.view(fc.out_features, fc.in_features, -1))
        return self._loss(self.model.forward_from(self.layer + 1, fc.finish(summed))) - self.reference

    def _loss_from(self, layer: int) -> float:
        """The loss of the model run from `layer` on the batches it receives (unstaged)."""
        task, scale = self.model.config.task, self.model.target_scale()
        total = None
        for batch, targets in zip(self.received, torch.split(self.y, PROBE_BATCH)):
            sums = batch_sums(task, self.model.forward_from(layer, batch).cpu(), targets, scale)
            total = sums if total is None else total + sums
        assert total is not None  # the calibration slice has rows
        return metrics_from_sums(task, distributed.sum_across_ranks(total, self.x.device)).loss

    def _loss(self, outputs: torch.Tensor) -> float:
        task = self.model.config.task
        sums = batch_sums(task, outputs.cpu(), self.y, self.model.target_scale())
        return metrics_from_sums(task, distributed.sum_across_ranks(sums, self.x.device)).loss
