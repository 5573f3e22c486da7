"""Re-gridding: a B-spline KAN whose grids were adapted per input (efficient-kan's or pykan's `update_grid`) as the
same functions on one uniform grid per layer, so the file no longer stores a grid per input.

An adapted grid is (in, G+2k+1) float32 numbers per layer: 37.6 KB for a 784-input first layer, more than a
MetaCluster file of the whole model. Here each layer gets the uniform grid of G intervals over the range its
inputs take on the given data, and each edge's spline is re-fitted to the old one there by least squares,

    c'[o,i] = argmin_c Σ_n (B'(x[n,i])·c - B(x[n,i])·c[o,i])² + ε·Σ_m (B'(u_m)·c - B(u_m)·c[o,i])²  =  M_i·c[o,i],
    M_i = (B'_iᵀB'_i + ε·U'_iᵀU'_i)⁻¹ (B'_iᵀB_i + ε·U'_iᵀU_i),

with B (N, G+k) the old basis and B' the new one at input i's N samples, and U, U' both at `PRIOR_POINTS` evenly
spaced points u_m over the layer's range: one small solve per input, shared by all its outputs. The second term,
whose points together weigh `PRIOR_WEIGHT` of the samples, decides what the data leave open (a pixel that is
nearly always background has samples at one value only): there the new spline follows the old function, which is
zero beyond an adapted grid's last knot. When the new basis equals the old one, M_i = I exactly. The base branch
w_b·act(x) does not depend on the grid and is kept. The fit is exact where the new grid can represent the old
spline and least-squares elsewhere; `compress` fine-tunes (or distils) afterwards against the original model, so
what matters is that it starts close.
"""

from __future__ import annotations

import dataclasses

import torch

from kancompress.errors import ConfigError
from kancompress.models import KANModel, build_model
from kancompress.weighting import layer_inputs

PRIOR_POINTS = 64  # u_m per layer
PRIOR_WEIGHT = 1e-3  # all prior points together weigh this fraction of the samples
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
    for old, new, raw, (lo, hi), vectors, target in zip(model.fc_layers(), result.fc_layers(), inputs, spans,
                                                        model.edge_vectors(), result.dense_edges().vectors):
        nb = old.num_basis
        gram = torch.zeros(old.in_features, nb, nb, dtype=torch.float64, device=x.device)  # Σ B'ᵀB' per input
        cross = torch.zeros_like(gram)  # Σ B'ᵀB per input
        stride = -(-raw.shape[0] // FIT_SAMPLES)  # ceil(N / FIT_SAMPLES)
        fitted = raw[::stride]
        for chunk in torch.split(fitted, batch_size):
            seen = old.normalise(chunk)  # (N, in): what the basis sees
            before, after = old.basis(seen).double(), new.basis(seen).double()  # (N, in, nb) each
            gram += torch.einsum("nia,nib->iab", after, after)
            cross += torch.einsum("nia,nib->iab", after, before)
        points = torch.linspace(lo, hi, PRIOR_POINTS, device=x.device).unsqueeze(1).expand(-1, old.in_features)
        before, after = old.basis(points).double(), new.basis(points).double()  # (M, in, nb) each
        weight = PRIOR_WEIGHT * fitted.shape[0] / PRIOR_POINTS
        maps = torch.linalg.solve(gram + weight * torch.einsum("mia,mib->iab", after, after),
                                  cross + weight * torch.einsum("mia,mib->iab", after, before))  # (in, nb, nb): M_i
        edges = vectors.reshape(old.out_features, old.in_features, nb + 1).double()  # (out, in, |w|)
        coeffs = torch.einsum("iab,oib->oia", maps, edges[..., :nb])  # (out, in, nb)
        refit = torch.cat([coeffs, edges[..., nb:]], dim=-1).float()  # (out, in, |w|)
        target.data.copy_(refit.reshape(-1, nb + 1))
    return result
