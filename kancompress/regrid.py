"""Fewer grids for a B-spline KAN whose grids were adapted per input (efficient-kan's or pykan's `update_grid`):
the same functions on grids the file stores in a few bytes.

An adapted grid is (in, G+2k+1) float32 numbers per layer: 37.6 KB for a 784-input first layer, more than a
MetaCluster file of the whole model. Two ways out, both ending in the same re-fit:
- `share_grids`: K-means over a layer's per-input knot vectors; each input takes its cluster's mean grid, and the
  file stores the few distinct grids once plus an index per input (format 5). The grids stay near the adapted
  ones, so the coefficients keep their scale (what clustering and fine-tuning need). `compress` does this.
- `regrid`: one uniform grid of G intervals per layer over the range its inputs take on the data; the file stores
  two numbers per layer (format 4). Cheaper to store, but the re-fitted coefficients of a wide-ranging layer are
  large, and on the Fashion-MNIST frontier model they clustered and fine-tuned worse.
Each edge's spline is then re-fitted to the old one by least squares,

    c'[o,i] = argmin_c Σ_n (B'(x[n,i])·c - B(x[n,i])·c[o,i])² + ε·Σ_m (B'(u_m)·c - B(u_m)·c[o,i])²
              + λ·|c - c[o,i]|²  =  M_i·c[o,i],
    M_i = (B'_iᵀB'_i + ε·U'_iᵀU'_i + λI)⁻¹ (B'_iᵀB_i + ε·U'_iᵀU_i + λI),

with B (N, G+k) the old basis and B' the new one at input i's N samples, and U, U' both at `PRIOR_POINTS` evenly
spaced points u_m over the layer's range: one small solve per input, shared by all its outputs. The second term,
whose points together weigh `PRIOR_WEIGHT` of the samples, decides what the data leave open (a pixel that is
nearly always background has samples at one value only): there the new spline follows the old function, which is
zero beyond an adapted grid's last knot. The third (λ = `STAY_RIDGE` of the mean diagonal) keeps a coefficient
that neither decides near its old value: without it, a basis function that the data barely touch takes a huge
coefficient that fits them to the last digit and ruins the layer's clustering (on Fashion-MNIST, edge vector norms
up to 560 against 3 before; λ = 1e-3 keeps them at 3 and the validation accuracy within 0.05 points). When the new
basis equals the old one, M_i = I exactly. The base branch w_b·act(x) does not depend on the grid and is kept.
`compress` fine-tunes (or distils) afterwards against the original model, so what matters is that it starts close.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence

import torch

from kancompress.errors import ConfigError
from kancompress.models import KANModel, build_model
from kancompress.weighting import layer_inputs

PRIOR_POINTS = 64  # u_m per layer
PRIOR_WEIGHT = 1e-3  # all prior points together weigh this fraction of the samples
STAY_RIDGE = 1e-3  # of the mean diagonal: the pull of the old coefficients (see `_refit`)
FIT_SAMPLES = 16_384  # the least squares see at most this many samples (evenly strided); the ranges see them all


def has_adapted_grid(model: KANModel) -> bool:
    """True for a model that stores a grid per input (a B-spline KAN after update_grid)."""
    return model.config.basis.stored_grid


@torch.no_grad()
def regrid(model: KANModel, x: torch.Tensor, batch_size: int = 2048) -> KANModel:
    """A dense copy of `model` (B-spline, adapted grids) on a uniform grid per layer spanning the layer's inputs on
    `x` (the training inputs), each edge's spline least-squares fitted to the original there (module doc; at most
    `FIT_SAMPLES` of them, evenly strided).

    Layer l's grid range becomes `config.grid_ranges[l]`; G and the spline order are kept."""
    if not has_adapted_grid(model):
        raise ConfigError("regrid is for B-spline models with adapted (stored) grids; this one has none")
    if model.kind != "dense":
        raise ConfigError(f"regrid needs a dense model, this one is {model.kind}")
    if x.shape[0] < 2:
        raise ConfigError("regrid needs at least 2 input samples to fit the splines on")
    config = model.config
    inputs = layer_inputs(model, x, batch_size)
    spans = []
    for old, raw in zip(model.fc_layers(), inputs):
        seen = old.normalise(raw)
        lo, hi = float(seen.min()), float(seen.max())
        if hi - lo < 1e-6:  # a layer whose inputs never vary: any grid around the value will do
            lo, hi = lo - 1.0, hi + 1.0
        spans.append((lo, hi))
    uniform = dataclasses.replace(config, basis=dataclasses.replace(config.basis, stored_grid=False),
                                  grid_ranges=tuple(spans))
    uniform.validate()
    result = build_model(uniform).to(x.device)
    result.load_state_dict({name: value for name, value in model.state_dict().items()
                            if not name.endswith(".basis.grid")}, strict=False)
    _refit(model, result, inputs, spans, batch_size)
    return result


@torch.no_grad()
def share_grids(model: KANModel, x: torch.Tensor, counts: Sequence[int], seed: int = 0,
                batch_size: int = 2048) -> KANModel:
    """A dense copy of `model` (B-spline, adapted grids) in which layer l has at most `counts[l]` distinct grids:
    K-means over the layer's per-input knot vectors, each input taking its cluster's mean grid (a mean of
    increasing knot vectors increases, so it is a valid grid), and each edge's spline least-squares re-fitted to
    the original on `x` (the training inputs; at most `FIT_SAMPLES` of them, evenly strided) as in `regrid`. The
    grids stay close to the adapted ones, so the refitted coefficients keep their scale; the file then stores each
    layer's grids as `counts[l]` rows and one small index per input (`format.checkpoint`)."""
    if not has_adapted_grid(model):
        raise ConfigError("sharing grids is for B-spline models with adapted (stored) grids; this one has none")
    if model.kind != "dense":
        raise ConfigError(f"sharing grids needs a dense model, this one is {model.kind}")
    layers = model.fc_layers()
    if len(counts) != len(layers) or any(count < 1 for count in counts):
        raise ConfigError(f"sharing grids needs one count >= 1 per layer ({len(layers)}), got {list(counts)}")
    if x.shape[0] < 2:
        raise ConfigError("sharing grids needs at least 2 input samples to fit the splines on")
    from kancompress.cluster import kmeans

    inputs = layer_inputs(model, x[:: -(-x.shape[0] // FIT_SAMPLES)], batch_size)  # stride ceil(N / FIT_SAMPLES)
    result = copy.deepcopy(model)
    spans = []
    for old, new, raw, count in zip(layers, result.fc_layers(), inputs, counts):
        grid = old.basis.grid  # (in, G+2k+1)
        if count < grid.shape[0]:
            centroids, members = kmeans(grid.double(), count, seed)
            new.basis.grid.copy_(centroids.to(grid)[members.to(grid.device)])  # (in, G+2k+1)
        seen = old.normalise(raw)
        spans.append((float(seen.min()), float(seen.max()) + 1e-6))
    _refit(model, result, inputs, spans, batch_size)
    return result


def _refit(model: KANModel, result: KANModel, inputs: list[torch.Tensor], spans: list[tuple[float, float]],
           batch_size: int) -> None:
    """Each of `result`'s splines (on its own grids) least-squares fitted to `model`'s on the layer `inputs` and
    the prior points over `spans` (module doc); in place."""
    for old, new, raw, (lo, hi), vectors, target in zip(model.fc_layers(), result.fc_layers(), inputs, spans,
                                                        model.edge_vectors(), result.dense_edges().vectors):
        nb = old.num_basis
        device = raw.device
        gram = torch.zeros(old.in_features, nb, nb, dtype=torch.float64, device=device)  # Σ B'ᵀB' per input
        cross = torch.zeros_like(gram)  # Σ B'ᵀB per input
        stride = -(-raw.shape[0] // FIT_SAMPLES)  # ceil(N / FIT_SAMPLES)
        fitted = raw[::stride]
        for chunk in torch.split(fitted, batch_size):
            seen = old.normalise(chunk)  # (N, in): what the basis sees
            before, after = old.basis(seen).double(), new.basis(seen).double()  # (N, in, nb) each
            gram += torch.einsum("nia,nib->iab", after, after)
            cross += torch.einsum("nia,nib->iab", after, before)
        points = torch.linspace(lo, hi, PRIOR_POINTS, device=device).unsqueeze(1).expand(-1, old.in_features)
        before, after = old.basis(points).double(), new.basis(points).double()  # (M, in, nb) each
        weight = PRIOR_WEIGHT * fitted.shape[0] / PRIOR_POINTS
        lhs = gram + weight * torch.einsum("mia,mib->iab", after, after)  # (in, nb, nb)
        rhs = cross + weight * torch.einsum("mia,mib->iab", after, before)
        # λ·|c - c[o,i]|²: what neither the samples nor the prior points decide stays at its old value.
        ridge = STAY_RIDGE * lhs.diagonal(dim1=1, dim2=2).mean() * torch.eye(nb, dtype=lhs.dtype, device=device)
        maps = torch.linalg.solve(lhs + ridge, rhs + ridge)  # (in, nb, nb): M_i
        edges = vectors.reshape(old.out_features, old.in_features, nb + 1).double()  # (out, in, |w|)
        coeffs = torch.einsum("iab,oib->oia", maps, edges[..., :nb])  # (out, in, nb)
        refit = torch.cat([coeffs, edges[..., nb:]], dim=-1).float()  # (out, in, |w|)
        target.data.copy_(refit.reshape(-1, nb + 1))
