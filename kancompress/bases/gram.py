"""Gram polynomials of tanh(x) with a learned per-layer β (torch-conv-kan KAGN); |w| = D + 2."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kancompress.bases.spec import CSource, BasisConfig, PolynomialSpec, ConvExtras, FCExtras, LearningRates, register

if TYPE_CHECKING:
    import torch


@register
class Gram(PolynomialSpec):
    """P0 = 1, P1 = t, P_m = t·P_{m-1} - β(m-1, m)·P_{m-2} with t = tanh(x), each passed through SiLU, and
    β(n, m) = ((m+n)(m-n)n² / (m²/(4n²-1)))·beta_weights[n], as written in KAGN's `GRAMLayer.beta`.
    FC layers end in SiLU(LayerNorm(y)); conv layers drop out tanh(x) and end in SiLU(BatchNorm(y))."""

    model = "gramkan"
    basis = "gram"
    title = "Gram polynomials, KAGN"
    fc_defaults = BasisConfig(degree=3)
    conv_defaults = BasisConfig(degree=3)
    # Meta: 10x the paper's Table 5 rates (lr_h 1e-4, lr_e 1e-3). At those, MetaGramKAN 784-32-10 on Fashion-MNIST
    # reaches 78.8 % validation accuracy in 15 epochs and 87.9 % only after 39; at (1e-3, 1e-2) 88.9 %, level with
    # the plain GramKAN's 89.0 % (chosen on validation among 1x, 3x, 10x, 30x: examples/meta_gram_rates.py).
    lr = LearningRates(plain=1e-3, meta=(1e-3, 1e-2))
    fc = FCExtras(output_norm=True)
    conv = ConvExtras(dropout_prepared=True, output="silu")

    def stored_tensors(self, basis: BasisConfig, in_features: int) -> dict[str, tuple[int, ...]]:
        return {"beta_weights": (basis.degree + 1,)}

    def setup(self, module: Any, basis: BasisConfig, in_features: int) -> None:
        import torch
        from torch import nn

        super().setup(module, basis, in_features)
        module.beta_weights = nn.Parameter(torch.empty(basis.degree + 1))  # (D+1,), shared by the layer's edges
        nn.init.normal_(module.beta_weights, mean=0.0, std=1.0 / (in_features * (basis.degree + 1.0)))

    def export_constants(self, module: Any) -> dict[str, Any]:
        """β(m-1, m) for m = 2..D (at index m-2), as the recurrence uses them; [0] when D < 2 (unused)."""
        weights = module.beta_weights.detach().float().cpu()
        return {"betas": [float(beta(weights, m - 1, m)) for m in range(2, module.degree + 1)] or [0.0]}

    def c_source(self, module: Any) -> CSource:
        return CSource(prepare="for (i = 0; i < $n; ++i) t[i] = tanhf(t[i]);", features="""{
    float p0 = 1.0f, p1 = u, p2;
    int m;
    f[0] = p0;
    if ($nb > 1) f[1] = p1;
    for (m = 2; m < $nb; ++m) { p2 = u * p1 - $betas[m - 2] * p0; f[m] = p2; p0 = p1; p1 = p2; }
    for (m = 0; m < $nb; ++m) f[m] = f[m] / (1.0f + expf(-f[m]));
}""")

    def prepare(self, module: Any, x: torch.Tensor) -> torch.Tensor:
        import torch

        return torch.tanh(x)

    def evaluate(self, module: Any, t: torch.Tensor) -> torch.Tensor:
        import torch
        from torch.nn import functional as F

        p0 = torch.ones_like(t)
        polys = [p0]
        if module.degree >= 1:
            p1 = t
            polys.append(p1)
            for m in range(2, module.degree + 1):
                p0, p1 = p1, t * p1 - beta(module.beta_weights, m - 1, m) * p0
                polys.append(p1)
        return F.silu(torch.stack(polys, dim=-1))  # (..., in, D+1)


def beta(weights: torch.Tensor, n: int, m: int) -> torch.Tensor:
    return ((m + n) * (m - n) * n**2) / (m**2 / (4.0 * n**2 - 1.0)) * weights[n]
