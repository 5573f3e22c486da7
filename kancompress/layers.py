"""KAN layers. A layer owns its basis and small uncompressed extras, never its per-edge vectors.

Each edge (o, i) of a layer has one vector of |w| = num_basis + 1 numbers: the basis coefficients followed by
the base-branch weight (as MetaKAN generates it). The vectors come from an edge store (`kancompress.edges`)
and reach `forward` as a tensor of shape (out, in, |w|), so the same layer runs dense, meta-generated and
clustered weights unchanged. What differs between bases (the basis math, norms, biases, PReLU) comes from the
basis's registered spec (`kancompress.bases`); no code here knows a basis by name.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from kancompress.bases import BasisConfig, BasisSpec
from kancompress.config import ModelConfig
from kancompress.errors import ConfigError

Activation = Callable[[torch.Tensor], torch.Tensor]


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


_ACTIVATIONS: dict[str, Activation] = {"silu": F.silu, "gelu": F.gelu, "relu": F.relu, "tanh": torch.tanh,
                                       "identity": _identity, "zero": torch.zeros_like}
"""`config.ACTIVATIONS` as functions (GELU: the exact erf form, torch's and upstream's default)."""


class Basis(nn.Module):
    """The basis functions of one layer: `spec.prepare` then `spec.evaluate`, with the spec's own parameters and
    buffers (a stored B-spline grid, Gram's β) registered on this module."""

    num_basis: int
    in_features: int
    # Set by some specs' `setup` only (typed here for the code that reads them).
    grid: torch.Tensor  # B-spline knots (in, G+2k+1) / RBF centres (G,)
    beta_weights: nn.Parameter  # Gram β (D+1,)

    def __init__(self, spec: BasisSpec, config: BasisConfig, in_features: int):
        super().__init__()
        self.spec = spec
        self.in_features = in_features
        spec.setup(self, config, in_features)
        self.num_basis = spec.num_basis(config)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return self.spec.prepare(self, x)

    def evaluate(self, t: torch.Tensor) -> torch.Tensor:
        return self.spec.evaluate(self, t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., in) -> basis values (..., in, num_basis)."""
        return self.evaluate(self.prepare(x))


class KANLinear(nn.Module):
    """A fully-connected KAN layer.

    y[n,o] = Σ_i Σ_j w[o,i,j]·B_j(x[n,i]) + Σ_i w[o,i,-1]·act(x[n,i])            (efficient-kan / MetaKAN)

    with the extras the basis's `FCExtras` asks for: LayerNorm on the basis path (FastKAN), a per-output bias
    (FastKAN, or `output_bias`, e.g. pykan's node bias), SiLU(LayerNorm(y)) after the sum (KAGN, KALN); and, with
    the model's `norm_between`, a LayerNorm over the whole input of every layer but the first (ChebyKAN's model).
    """

    def __init__(self, config: ModelConfig, in_features: int, out_features: int, layer: int = 0):
        super().__init__()
        extras = config.spec.fc
        self.in_features = in_features
        self.out_features = out_features
        self.num_basis = config.num_basis
        self.activation: Activation = _ACTIVATIONS[config.base_activation]
        self.pre_norm = nn.LayerNorm(in_features) if config.has_pre_norm(layer) else None
        self.basis = Basis(config.spec, config.layer_basis(layer), in_features)
        self.input_norm = nn.LayerNorm(in_features) if config.fc_basis_norm else None
        with_bias = extras.bias or config.output_bias
        self.bias = nn.Parameter(torch.zeros(out_features)) if with_bias else None
        self.mult_nodes, self.mult_arity = config.layer_mult_nodes(layer), config.mult_arity
        # the layer's output width as the next layer sees it (sub-nodes folded by multiplication nodes)
        self.node_count = nodes = out_features - (self.mult_arity - 1) * self.mult_nodes
        self.output_norm = nn.LayerNorm(nodes) if extras.output_norm else None
        self.output_bn = nn.BatchNorm1d(nodes) if extras.output_batchnorm else None
        self.parametric = config.spec.parametric
        self.sum_nodes = nodes - self.mult_nodes
        self.node_scale = nn.Parameter(torch.ones(nodes)) if self.mult_nodes else None
        self.node_bias = nn.Parameter(torch.zeros(nodes)) if self.mult_nodes else None
        last = layer == len(config.layer_shapes) - 1
        self.final_norm = nn.LayerNorm(nodes) if last and config.has_final_norm else None
        if self.bias is not None:  # nn.Linear's default bias init, as FastKAN's base_linear
            bound = 1.0 / math.sqrt(in_features)
            nn.init.uniform_(self.bias, -bound, bound)

    @property
    def edge_shape(self) -> tuple[int, int]:
        return (self.out_features, self.in_features)

    def forward(self, x: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
        """x: (..., in); edges: (out, in, num_basis + 1). Returns (..., out)."""
        lead = x.shape[:-1]
        flat = x.dim() != 2  # (a 2-D input needs no reshapes, which keeps the exported ONNX graph short)
        x = self.normalise(x.reshape(-1, self.in_features) if flat else x)  # (N, in)
        if self.parametric:  # each edge's own function: (N, 1, in) against (1, out, in, nb) -> (N, out, in)
            y = self.basis.spec.edge_function(self.basis, self._prepared(x).unsqueeze(1),
                                              edges[..., : self.num_basis].unsqueeze(0)).sum(-1)  # (N, out)
        else:
            bases = self._bases(x)  # (N, in, num_basis)
            coeffs = edges[..., : self.num_basis].reshape(self.out_features, -1)  # (out, in*num_basis)
            y = F.linear(bases.flatten(1), coeffs)  # (N, out)
        y = y + F.linear(self.activation(x), edges[..., self.num_basis])  # base branch, weight (out, in)
        y = self.finish(y)
        return y.reshape(*lead, self.node_count) if flat else y

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """The layer's input as both branches see it: x, or LayerNorm(x) with `norm_between`."""
        return self.pre_norm(x) if self.pre_norm is not None else x

    def centroid_responses(self, x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        """Every centroid's edge function at every input: R[i, c, n] = Σ_j C[c,j]·B_j(x[n,i]) + C[c,-1]·act(x[n,i]).

        x: (N, in); codebook C: (k, num_basis + 1). Returns R of shape (in, k, N). A clustered layer's
        pre-activation is then y[n,o] = Σ_i R[i, I[o,i], n] (`kancompress.fastpath`). A parametric basis evaluates
        each centroid's own function: R[i, c, n] = φ(x[n,i]; C[c,:nb]) + C[c,-1]·act(x[n,i]).
        """
        if self.parametric:
            x = self.normalise(x)
            t = self._prepared(x).T.unsqueeze(1)  # (in, 1, N)
            values = self.basis.spec.edge_function(self.basis, t, codebook[:, None, : self.num_basis])  # (in, k, N)
            return values + codebook[:, self.num_basis, None] * self.activation(x).T.unsqueeze(1)
        features = self.edge_features(x)  # (N, in, |w|)
        return torch.matmul(codebook, features.permute(1, 2, 0))  # (k, |w|) @ (in, |w|, N) -> (in, k, N)

    def edge_features(self, x: torch.Tensor) -> torch.Tensor:
        """What each edge's vector multiplies: f(x_i) = [B_1(x_i), ..., B_nb(x_i), act(x_i)], so that edge (o, i)
        adds w[o,i]·f(x_i) to output o. x: (N, in) -> (N, in, |w|). Parametric bases have no such features."""
        if self.parametric:
            raise ConfigError("this basis's edge functions are not linear in their vectors; it has no edge features")
        x = self.normalise(x)
        return torch.cat([self._bases(x), self.activation(x).unsqueeze(-1)], dim=-1)

    def forward_features(self, features: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
        """`forward` from the layer's `edge_features` instead of its input: features (N, in, |w|), edges
        (out, in, |w|) -> (N, node_count)."""
        y = F.linear(features.flatten(1), edges.flatten(1))  # (N, in·|w|) against (out, in·|w|) -> (N, out)
        return self.finish(y)

    def finish(self, y: torch.Tensor) -> torch.Tensor:
        """The per-output extras applied to the summed edges y: (N, out) -> (N, node_count)."""
        if self.bias is not None:
            y = y + self.bias
        if self.node_scale is not None and self.node_bias is not None:
            # pykan MultKAN: node j >= sum_nodes multiplies sub-nodes sum_nodes + a·j' ... + a·j' + a-1
            products = y[:, self.sum_nodes:].reshape(y.shape[0], self.mult_nodes, self.mult_arity).prod(-1)
            y = torch.cat([y[:, : self.sum_nodes], products], dim=1) * self.node_scale + self.node_bias
        if self.output_norm is not None:
            y = F.silu(self.output_norm(y))
        if self.output_bn is not None:
            y = self.output_bn(y)
        if self.final_norm is not None:
            y = self.final_norm(y)
        return y

    def _prepared(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, in) -> the basis's prepared input (N, in); FastKAN's LayerNorm feeds the basis path only."""
        return self.basis.prepare(self.input_norm(x) if self.input_norm is not None else x)

    def _bases(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, in) -> basis values (N, in, num_basis)."""
        return self.basis.evaluate(self._prepared(x))


class KANConv2d(nn.Module):
    """A convolutional KAN layer (torch-conv-kan): every kernel tap of every (out, in) channel pair is an edge.

    With B(x) the per-channel basis maps laid out channel-major (channel c, basis j -> c·nb + j) and zero-padded:
      y = conv(act(x), w_base) + conv(B(x'), w_coeffs)
    and the basis's `ConvExtras`, as in torch-conv-kan's layers:
      - KANConv:     x' = x;                               out = Dropout2d(PReLU(BatchNorm(y)))   (output "prelu")
      - FastKANConv: x' = BatchNorm(Dropout2d(x)) (basis_norm); out = y
      - KAGNConv v1: basis of Dropout2d(tanh x) (dropout_prepared); out = SiLU(BatchNorm(y))      (output "silu")
      - KALNConv:    the base conv sees x itself (base_activation False)
    Edge (o, c, kh, kw) has vector w[o, c, kh, kw, :] = (coefficients..., base weight).
    """

    def __init__(
        self, config: ModelConfig, in_channels: int, out_channels: int, stride: int, groups: int, dropout: float
    ):
        super().__init__()
        assert config.conv is not None
        self.extras = extras = config.spec.conv
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = config.conv.kernel_size
        self.stride, self.groups, self.padding = stride, groups, self.kernel_size // 2
        self.num_basis = config.num_basis
        self.activation: Activation | None = _ACTIVATIONS[config.base_activation] if extras.base_activation else None
        self.basis = Basis(config.spec, config.basis, in_channels)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.input_norm = nn.BatchNorm2d(in_channels) if extras.basis_norm else None
        self.output_norm = nn.BatchNorm2d(out_channels) if extras.output != "none" else None
        self.prelu = nn.PReLU() if extras.output == "prelu" else None

    @property
    def edge_shape(self) -> tuple[int, int, int, int]:
        return (self.out_channels, self.in_channels // self.groups, self.kernel_size, self.kernel_size)

    def basis_maps(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C, H, W) -> basis maps (N, C·nb, H, W), channel-major."""
        if self.input_norm is not None:
            x = self.input_norm(self.dropout(x))
        t = self.basis.prepare(x)
        if self.extras.dropout_prepared:
            t = self.dropout(t)
        values = self.basis.evaluate(t.permute(0, 2, 3, 1))  # (N, H, W, C, nb)
        n, h, w, c, nb = values.shape
        return values.permute(0, 3, 4, 1, 2).reshape(n, c * nb, h, w)  # (N, C·nb, H, W)

    def forward(self, x: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
        """x: (N, in, H, W); edges: (out, in/groups, kh, kw, nb + 1). Returns (N, out, H', W')."""
        nb = self.num_basis
        out, cg, kh, kw = self.edge_shape
        coeffs = edges[..., :nb].permute(0, 1, 4, 2, 3).reshape(out, cg * nb, kh, kw)  # (out, Cg·nb, kh, kw)
        base_input = self.activation(x) if self.activation is not None else x
        y = F.conv2d(base_input, edges[..., nb], stride=self.stride, padding=self.padding, groups=self.groups)
        y = y + F.conv2d(self.basis_maps(x), coeffs, stride=self.stride, padding=self.padding, groups=self.groups)
        if self.output_norm is not None:
            y = self.output_norm(y)
        if self.prelu is not None:
            y = self.dropout(self.prelu(y))
        elif self.output_norm is not None:
            y = F.silu(y)
        return y


class ConvHead(nn.Module):
    """Global average pool, dropout and the classifier: a linear layer (torch-conv-kan baselines with
    degree_out < 2), or with `ConvConfig.head_degree` a fully-connected KAN layer of the model's basis
    (degree_out >= 2: SimpleConvKAGN's GRAMLayer, SimpleConvKALN's KALNLayer), whose edge vectors `vectors` are an
    uncompressed extra like the linear head's weights."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        assert config.conv is not None
        channels, classes = config.widths[-1], config.conv.num_classes
        head = config.head_config()
        self.dropout = nn.Dropout(config.conv.dropout_linear)
        self.linear = nn.Linear(channels, classes) if head is None else None
        self.kan: KANLinear | None = None
        if head is not None:
            self.kan = KANLinear(head, channels, classes)
            self.vectors = nn.Parameter(init_edge_vectors(head, (classes, channels)).reshape(classes * channels, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.dropout(x.mean(dim=(2, 3)))  # (N, C, H, W) -> (N, C)
        if self.kan is not None:
            logits: torch.Tensor = self.kan(pooled, self.vectors.view(*self.kan.edge_shape, -1))
        else:
            assert self.linear is not None
            logits = self.linear(pooled)
        return logits


def build_layers(config: ModelConfig) -> list[nn.Module]:
    """The KAN layers of a model, in order."""
    if config.conv is None:
        return [KANLinear(config, i, o, layer=l) for l, (o, i) in enumerate(config.layer_shapes)]
    conv = config.conv
    return [
        KANConv2d(config, i, o, conv.strides[l], config.layer_groups(l), conv.dropout if l > 0 else 0.0)
        for l, (o, i) in enumerate(config.layer_shapes)
    ]


def init_edge_vectors(config: ModelConfig, edge_shape: tuple[int, ...]) -> torch.Tensor:
    """Initial edge vectors (*edge_shape, |w|) of a dense layer, at each upstream library's init scale.

    fan_in is `in` for a linear layer and `in/groups·kh·kw` for a conv layer. FC layers follow the basis's
    `init`: "uniform-0.1" (efficient-kan: base U(±1/√fan_in), spline coefficients ~0.1 of that), "normal-0.1"
    (FastKAN: spline N(0, 0.1)); "kaiming" and every conv layer: kaiming-uniform as KAGN and the torch-conv-kan convs (bound 1/√(fan_in·nb)
    for the coefficients, 1/√fan_in for the base weight).
    """
    nb = config.num_basis
    fan_in = math.prod(edge_shape[1:])
    own = config.spec.initial_vectors(edge_shape, fan_in)
    if own is not None:
        return own
    base_bound = 1.0 / math.sqrt(fan_in)
    vectors = torch.empty(*edge_shape, nb + 1)
    scheme = config.spec.init if config.conv is None else "kaiming"
    if scheme == "uniform-0.1":
        nn.init.uniform_(vectors[..., :nb], -0.1 * base_bound, 0.1 * base_bound)
    elif scheme == "normal-0.1":
        nn.init.trunc_normal_(vectors[..., :nb], std=0.1)
    else:
        bound = 1.0 / math.sqrt(fan_in * nb)
        nn.init.uniform_(vectors[..., :nb], -bound, bound)
    nn.init.uniform_(vectors[..., nb], -base_bound, base_bound)
    return vectors
