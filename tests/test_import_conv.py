"""torch-conv-kan conv checkpoints: import reproduces a reference written from torch-conv-kan's own formulas and
key layout (`KAGNConvNDLayer` v1, `KANConvNDLayer`, `FastKANConvNDLayer`, the `SimpleConv*` baselines)."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from kancompress.errors import FormatError
from kancompress.interop import ImportOptions, detect_library, import_state_dict, source_from_state_dict

CHANNELS = (2, 4, 8)  # in, layer 0, layer 1
STRIDES = (1, 2)


def batch_norm(state: dict, prefix: str, x: torch.Tensor) -> torch.Tensor:
    return F.batch_norm(x, state[prefix + "running_mean"], state[prefix + "running_var"], state[prefix + "weight"],
                        state[prefix + "bias"], training=False)


def make_state(kind: str, groups: int, nb: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for l, (cin, cout) in enumerate(zip(CHANNELS[:-1], CHANNELS[1:])):
        gr = 1 if l == 0 else groups
        cg, og = cin // gr, cout // gr
        p = f"layers.{l}." if l == 0 else f"layers.{l}.module."  # the baselines wrap layers 1.. in L1(...)
        for i in range(gr):
            state[p + f"base_conv.{i}.weight"] = torch.randn(og, cg, 3, 3, generator=g) * 0.3
            size = cg if kind == "rbf" else og
            state[p + f"layer_norm.{i}.weight"] = 1 + 0.1 * torch.randn(size, generator=g)
            state[p + f"layer_norm.{i}.bias"] = 0.1 * torch.randn(size, generator=g)
            state[p + f"layer_norm.{i}.running_mean"] = 0.1 * torch.randn(size, generator=g)
            state[p + f"layer_norm.{i}.running_var"] = 0.5 + torch.rand(size, generator=g)
            state[p + f"layer_norm.{i}.num_batches_tracked"] = torch.tensor(7)
            if kind not in ("gram", "legendre"):
                state[p + f"spline_conv.{i}.weight"] = torch.randn(og, cg * nb, 3, 3, generator=g) * 0.3
            if kind == "bspline":
                state[p + f"prelus.{i}.weight"] = torch.tensor([0.2])
        if kind in ("gram", "legendre"):
            state[p + "poly_weights"] = torch.randn(gr, og, cg * nb, 3, 3, generator=g) * 0.3
        if kind == "gram":
            state[p + "beta_weights"] = 0.2 * torch.randn(nb, generator=g)
        if kind == "rbf":
            state[p + "rbf.grid"] = torch.linspace(-2, 2, nb)
    state["output.1.weight"] = torch.randn(5, CHANNELS[-1], generator=g)
    state["output.1.bias"] = torch.randn(5, generator=g)
    return state


def reference(state: dict, kind: str, groups: int, nb: int, x: torch.Tensor) -> torch.Tensor:
    """The upstream forward, group by group, from the upstream keys."""
    for l in range(len(CHANNELS) - 1):
        gr = 1 if l == 0 else groups
        p = f"layers.{l}." if l == 0 else f"layers.{l}.module."
        cg = x.shape[1] // gr
        outs = []
        for i in range(gr):
            xg = x[:, i * cg : (i + 1) * cg]
            conv = dict(stride=STRIDES[l], padding=1)
            act = F.gelu if kind == "bspline" else (lambda v: v) if kind == "legendre" else F.silu
            base = F.conv2d(act(xg), state[p + f"base_conv.{i}.weight"], **conv)
            if kind == "legendre":  # KALNConvNDLayer.forward_kal: base conv on x, range over the whole batch
                t = 2 * (xg - xg.min()) / (xg.max() - xg.min()) - 1
                polys = [torch.ones_like(t), t]
                for n in range(1, nb - 1):
                    polys.append(((2.0 * n + 1.0) * t * polys[-1] - n * polys[-2]) / (n + 1.0))
                y = F.conv2d(torch.cat(polys[:nb], dim=1), state[p + "poly_weights"][i], **conv)  # degree-major
                outs.append(F.silu(batch_norm(state, p + f"layer_norm.{i}.", y + base)))
            elif kind == "gram":  # KAGNConvNDLayer.forward_kag
                t = torch.tanh(xg)
                beta = state[p + "beta_weights"]
                polys = [torch.ones_like(t), t]
                for m in range(2, nb):
                    n = m - 1
                    polys.append(t * polys[-1] - ((m + n) * (m - n) * n**2) / (m**2 / (4.0 * n**2 - 1.0)) * beta[n] * polys[-2])
                grams = F.silu(torch.cat(polys[:nb], dim=1))  # degree-major channels
                y = F.conv2d(grams, state[p + "poly_weights"][i], **conv)
                outs.append(F.silu(batch_norm(state, p + f"layer_norm.{i}.", y + base)))
            elif kind == "bspline":  # KANConvNDLayer.forward_kan, grid linspace(lo - h·k, hi + h·k, G + 2k + 1)
                order, size = 3, nb - 3
                h = 2.0 / size
                grid = torch.linspace(-1 - h * order, 1 + h * order, size + 2 * order + 1)
                u = xg.unsqueeze(-1)
                bases = ((u >= grid[:-1]) & (u < grid[1:])).to(x.dtype)
                for k in range(1, order + 1):
                    left = (u - grid[: -(k + 1)]) / (grid[k:-1] - grid[: -(k + 1)])
                    right = (grid[k + 1 :] - u) / (grid[k + 1 :] - grid[1:-k])
                    bases = left * bases[..., :-1] + right * bases[..., 1:]
                bases = bases.moveaxis(-1, 2).flatten(1, 2)  # channel-major c·nb + j
                y = base + F.conv2d(bases, state[p + f"spline_conv.{i}.weight"], **conv)
                outs.append(F.prelu(batch_norm(state, p + f"layer_norm.{i}.", y), state[p + f"prelus.{i}.weight"]))
            else:  # FastKANConvNDLayer.forward_fast_kan: norm on the input of the RBF path
                grid = state[p + "rbf.grid"]
                normed = batch_norm(state, p + f"layer_norm.{i}.", xg)
                rbf = torch.exp(-(((normed[..., None] - grid) / ((grid[-1] - grid[0]) / (nb - 1))) ** 2))
                outs.append(base + F.conv2d(rbf.moveaxis(-1, 2).flatten(1, 2), state[p + f"spline_conv.{i}.weight"], **conv))
        x = torch.cat(outs, dim=1)
    return F.linear(x.mean(dim=(2, 3)), state["output.1.weight"], state["output.1.bias"])


@pytest.mark.parametrize("kind,nb", [("gram", 4), ("bspline", 8), ("rbf", 8)])
@pytest.mark.parametrize("groups", [1, 2])
def test_torch_conv_kan_import_matches_reference(kind: str, nb: int, groups: int) -> None:
    g = torch.Generator().manual_seed(groups)
    state = make_state(kind, groups, nb, g)
    assert detect_library(source_from_state_dict(state, "test")) == "torch-conv-kan"
    model = import_state_dict(state, "torch-conv-kan", ImportOptions(strides=STRIDES))
    model.eval()
    x = torch.rand(3, 2, 8, 8, generator=g) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(model(x), reference(state, kind, groups, nb, x), atol=1e-5)


def test_torch_conv_kaln_import_matches_reference_one_sample_at_a_time() -> None:
    """KALNConv maps inputs to [-1, 1] by the whole batch's range, kancompress by each sample's: equal per sample."""
    g = torch.Generator().manual_seed(5)
    state = make_state("legendre", 1, 4, g)
    model = import_state_dict(state, "torch-conv-kan", ImportOptions(strides=STRIDES))
    assert model.config.model == "legendrekan"
    model.eval()
    for x in torch.rand(3, 1, 2, 8, 8, generator=g) * 2 - 1:
        with torch.no_grad():
            assert torch.allclose(model(x), reference(state, "legendre", 1, 4, x), atol=1e-5)


def test_torch_conv_kan_refusals() -> None:
    state = make_state("bspline", 1, 8, torch.Generator().manual_seed(0))
    with pytest.raises(FormatError, match="one stride each"):
        import_state_dict(state, "torch-conv-kan", ImportOptions(strides=(1, 2, 2, 1)))
    del state["layers.1.module.layer_norm.0.weight"]
    with pytest.raises(FormatError, match="layers.1.layer_norm.0.weight"):
        import_state_dict(state, "torch-conv-kan", ImportOptions(strides=STRIDES))
