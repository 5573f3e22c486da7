"""Legendre polynomials of the range-normalised input (torch-conv-kan KALN); |w| = D + 2."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kancompress.bases.spec import CSource, BasisConfig, PolynomialSpec, ConvExtras, FCExtras, LearningRates, register

if TYPE_CHECKING:
    import torch


@register
class Legendre(PolynomialSpec):
    """KALN (torch-conv-kan `KALNLayer` / `KALNConv2DLayer`): x is mapped to [-1, 1] by its range,
    u = 2(x - min x)/(max x - min x) - 1, then P_0 = 1, P_1 = u, (n+1)P_{n+1} = (2n+1)·u·P_n - n·P_{n-1}.
    FC: y = W_base·act(x) + Σ c·P(u), out = SiLU(LayerNorm(y)). Conv: the base conv sees x itself (no
    activation), Dropout2d on u, out = SiLU(BatchNorm(y)).

    One deliberate difference: upstream takes min and max over the whole batch tensor, so a sample's output
    depends on the rest of its batch; here they are taken per sample (over its features, or its channels and
    pixels), which equals upstream at batch size 1 and makes outputs independent of batching. No paper learning
    rates exist for this basis: those of GramKAN are used.
    """

    model = "legendrekan"
    basis = "legendre"
    title = "Legendre polynomials, KALN"
    fc_defaults = BasisConfig(degree=3)
    conv_defaults = BasisConfig(degree=3)
    lr = LearningRates(plain=1e-3, meta=(1e-3, 1e-2))
    fc = FCExtras(output_norm=True)
    conv = ConvExtras(dropout_prepared=True, output="silu", base_activation=False)

    def c_source(self, module: Any) -> CSource:
        return CSource(prepare="""{
    float lo = t[0], hi = t[0], span;
    for (i = 1; i < $n; ++i) { if (t[i] < lo) lo = t[i]; if (t[i] > hi) hi = t[i]; }
    span = hi - lo > 1e-12f ? hi - lo : 1e-12f;
    for (i = 0; i < $n; ++i) t[i] = 2 * (t[i] - lo) / span - 1;
}""", features="""{
    int d;
    f[0] = 1.0f;
    if ($nb > 1) f[1] = u;
    for (d = 1; d + 1 < $nb; ++d) f[d + 1] = ((2 * d + 1) * u * f[d] - d * f[d - 1]) / (d + 1);
}""")

    def prepare(self, module: Any, x: torch.Tensor) -> torch.Tensor:
        """Per-sample range normalisation to [-1, 1]: x is (N, in) or (N, H, W, C) (channels last)."""
        flat = x.reshape(x.shape[0], -1)  # (N, features)
        low = flat.min(dim=1).values.view(-1, *([1] * (x.dim() - 1)))
        high = flat.max(dim=1).values.view(-1, *([1] * (x.dim() - 1)))
        return 2 * (x - low) / (high - low).clamp_min(1e-12) - 1

    def evaluate(self, module: Any, t: torch.Tensor) -> torch.Tensor:
        import torch

        polys = [torch.ones_like(t)]
        if module.degree >= 1:
            polys.append(t)
        for n in range(1, module.degree):
            polys.append(((2 * n + 1) * t * polys[-1] - n * polys[-2]) / (n + 1))
        return torch.stack(polys, dim=-1)  # (..., in, D+1)
