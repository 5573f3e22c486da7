"""KAN layers. A layer owns its basis and small uncompressed extras, never its per-edge vectors.

Each edge (o, i) of a layer has one vector of |w| = num_basis + 1 numbers: the basis coefficients followed by
the base-branch weight (as MetaKAN generates it). The vectors come from an edge store (`kancompress.edges`)
and reach `forward` as a tensor of shape (out, in, |w|), so the same layer runs dense, meta-generated and
clustered weights unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from kancompress.bases import build_basis
from kancompress.config import ModelConfig

_ACTIVATIONS = {"silu": F.silu, "gelu": F.gelu}


class KANLinear(nn.Module):
    """A fully-connected KAN layer.

    y[n,o] = Σ_i Σ_j w[o,i,j]·B_j(x[n,i]) + Σ_i w[o,i,-1]·act(x[n,i])            (efficient-kan / MetaKAN)

    with two basis-specific extras:
      - rbf (FastKAN): the basis sees LayerNorm(x) (on the RBF path only) and a bias is added;
      - gram (KAGN): the output is SiLU(LayerNorm(y)).
    """

    def __init__(self, config: ModelConfig, in_features: int, out_features: int):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.num_basis = config.num_basis
        self.activation = _ACTIVATIONS[config.base_activation]
        self.basis = build_basis(config, in_features)
        self.input_norm = nn.LayerNorm(in_features) if config.basis_name == "rbf" else None
        self.bias = nn.Parameter(torch.zeros(out_features)) if config.basis_name == "rbf" else None
        self.output_norm = nn.LayerNorm(out_features) if config.basis_name == "gram" else None
        if self.bias is not None:  # nn.Linear's default bias init, as FastKAN's base_linear
            bound = 1.0 / math.sqrt(in_features)
            nn.init.uniform_(self.bias, -bound, bound)

    @property
    def edge_shape(self) -> tuple[int, int]:
        return (self.out_features, self.in_features)

    def forward(self, x: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
        """x: (..., in); edges: (out, in, num_basis + 1). Returns (..., out)."""
        lead = x.shape[:-1]
        x = x.reshape(-1, self.in_features)  # (N, in)
        basis_in = self.input_norm(x) if self.input_norm is not None else x
        bases = self.basis(basis_in)  # (N, in, num_basis)
        coeffs = edges[..., : self.num_basis].reshape(self.out_features, -1)  # (out, in*num_basis)
        y = F.linear(bases.reshape(x.shape[0], -1), coeffs)  # (N, out)
        y = y + F.linear(self.activation(x), edges[..., self.num_basis])  # base branch, weight (out, in)
        if self.bias is not None:
            y = y + self.bias
        if self.output_norm is not None:
            y = F.silu(self.output_norm(y))
        return y.reshape(*lead, self.out_features)


def init_edge_vectors(config: ModelConfig, out_features: int, in_features: int) -> torch.Tensor:
    """Initial (out, in, |w|) edge vectors of a dense layer, following each upstream library's init scale.

    efficient-kan: base U(±1/√in), spline coefficients ~0.1 of that; FastKAN: spline N(0, 0.1), base U(±1/√in);
    KAGN: kaiming-uniform on both (bound 1/√(in·(D+1)) and 1/√in).
    """
    nb = config.num_basis
    base_bound = 1.0 / math.sqrt(in_features)
    vectors = torch.empty(out_features, in_features, nb + 1)
    if config.basis_name == "bspline":
        nn.init.uniform_(vectors[..., :nb], -0.1 * base_bound, 0.1 * base_bound)
    elif config.basis_name == "rbf":
        nn.init.trunc_normal_(vectors[..., :nb], std=0.1)
    else:
        bound = 1.0 / math.sqrt(in_features * nb)
        nn.init.uniform_(vectors[..., :nb], -bound, bound)
    nn.init.uniform_(vectors[..., nb], -base_bound, base_bound)
    return vectors
