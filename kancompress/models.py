"""The KAN model: a stack of layers whose edge vectors come from one edge store."""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from kancompress.config import ModelConfig
from kancompress.edges import KINDS, CodebookEdges, DenseEdges, EdgeStore, MetaEdges
from kancompress.errors import ConfigError
from kancompress.fastpath import CodebookForward, check_mode
from kancompress.layers import ConvHead, KANConv2d, KANLinear, build_layers, init_edge_vectors


class Normalization(nn.Module):
    """The data transform a model was trained with, stored in its checkpoint (format version 3), so a raw input
    goes in and an output in the user's units comes out: x -> x·input_scale + input_shift per feature (per channel
    for conv models), y -> y·target_scale + target_shift per output (regression)."""

    input_scale: torch.Tensor
    input_shift: torch.Tensor
    target_scale: torch.Tensor
    target_shift: torch.Tensor

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.input_affine:
            self.register_buffer("input_scale", torch.ones(config.widths[0]))
            self.register_buffer("input_shift", torch.zeros(config.widths[0]))
        if config.target_affine:
            self.register_buffer("target_scale", torch.ones(config.num_outputs))
            self.register_buffer("target_shift", torch.zeros(config.num_outputs))

    def fit(self, inputs: torch.Tensor | None, targets: torch.Tensor | None) -> None:
        """Set the transforms from training data: inputs to [-1, 1] by their range (constant ones to 0) — per feature
        for tabular inputs (N, in), per channel for images (N, C, H, W) (for a fully-connected model each pixel
        takes its channel's transform, so 0..255 images map as x/255·2 - 1); targets (N, T) standardised (mean 0,
        std 1) per output."""
        with torch.no_grad():
            if inputs is not None and hasattr(self, "input_scale"):
                per_feature = inputs.transpose(0, 1).reshape(inputs.shape[1], -1).double()  # (in or C, N·H·W)
                low, high = per_feature.min(dim=1).values, per_feature.max(dim=1).values
                span = high - low
                scale = torch.where(span > 0, 2.0 / span.clamp_min(1e-300), torch.ones_like(span))
                shift = torch.where(span > 0, -1.0 - low * scale, -low)
                pixels = self.input_scale.numel() // scale.numel()  # 1, or H·W for images into an FC model
                self.input_scale.copy_(scale.repeat_interleave(pixels))
                self.input_shift.copy_(shift.repeat_interleave(pixels))
            if targets is not None and hasattr(self, "target_scale"):
                values = targets.reshape(targets.shape[0], -1).double()
                std = values.std(dim=0, unbiased=False)
                self.target_scale.copy_(torch.where(std > 0, std, torch.ones_like(std)))
                self.target_shift.copy_(values.mean(dim=0))

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        if not hasattr(self, "input_scale"):
            return x
        view = (1, -1) + (1,) * (x.dim() - 2)  # (1, in) or (1, C, 1, 1)
        return x * self.input_scale.view(view) + self.input_shift.view(view)

    def outputs(self, y: torch.Tensor) -> torch.Tensor:
        if not hasattr(self, "target_scale"):
            return y
        return y * self.target_scale + self.target_shift


class KANModel(nn.Module):
    """A fully-connected or convolutional KAN. `config` rebuilds it; `edges.kind` says how its edge vectors are
    stored. A conv model ends with a pooled linear head (an uncompressed extra)."""

    def __init__(self, config: ModelConfig, edges: EdgeStore):
        super().__init__()
        self.config = config
        self.layers = nn.ModuleList(build_layers(config))
        conv = config.conv
        self.head = ConvHead(config) if conv is not None else None
        self.edges: EdgeStore = edges
        self.normalize = Normalization(config) if config.input_affine or config.target_affine else None
        # Clustered fully-connected layers may run inference in codebook space (`kancompress.fastpath`).
        self.codebook_forward: CodebookForward | None = None
        if isinstance(edges, CodebookEdges) and self.head is None:
            self.codebook_forward = CodebookForward(edges)
        # Precision the extras (norms, biases, BatchNorm statistics, the conv head: every float tensor outside
        # `edges` but stored grids) are stored at: "float32", or "float16" (format 7, clustered files;
        # `round_extras` makes the model compute it).
        self.extras_dtype = "float32"

    @property
    def kind(self) -> str:
        return self.edges.kind

    def extras(self) -> dict[str, torch.Tensor]:
        """The floating-point tensors of the state_dict that `extras_dtype` applies to: outside the edge store,
        stored grids excepted (`format.lean.rounded_extra`); they share the model's storage."""
        from kancompress.format.lean import rounded_extra

        return {name: tensor for name, tensor in self.state_dict().items()
                if rounded_extra(name) and tensor.is_floating_point()}

    def round_extras(self) -> None:
        """Snap the extras to `extras_dtype`, so the model computes what its file will hold."""
        if self.extras_dtype == "float32":
            return
        with torch.no_grad():
            for tensor in self.extras().values():
                tensor.copy_(tensor.to(torch.float16).float())

    def set_fc_forward(self, mode: str) -> None:
        """How clustered fully-connected layers run inference: "auto" (the fastest, measured), "decode",
        "gather" or "onehot" (see `kancompress.fastpath`). Other models only decode."""
        check_mode(mode)
        if self.codebook_forward is not None:
            self.codebook_forward = CodebookForward(self.codebook_forward.edges, mode)
        elif mode not in ("auto", "decode"):
            raise ConfigError(f"the {mode!r} forward needs a clustered fully-connected checkpoint; "
                              f"this one is {self.kind}{' (conv)' if self.head is not None else ''}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_from(0, self.prepare(x))

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """What the first layer receives for the samples x: flattened (fully-connected models), then the input
        transform."""
        if self.head is None:
            x = x.flatten(1)  # (N, in)
        return self.normalize.inputs(x) if self.normalize is not None else x

    def run_layer(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """Layer `index` alone on what it receives, with its decoded edge vectors."""
        return cast(torch.Tensor, self.layers[index](x, self.layer_vectors(index)))

    def layer_vectors(self, index: int) -> torch.Tensor:
        """Layer `index`'s decoded edge vectors in the layer's shape: (out, in, |w|) or (out, in/g, kh, kw, |w|)."""
        shape = cast(tuple[int, ...], self.layers[index].edge_shape)
        return cast(torch.Tensor, self.edges(index)).view(*shape, -1)

    def forward_from(self, start: int, x: torch.Tensor) -> torch.Tensor:
        """The model from layer `start` on: x is what that layer receives (the input transform already applied
        when start is 0); then the head and the output transform."""
        clustered_fc = None if torch.is_grad_enabled() else self.codebook_forward  # inference only
        for index in range(start, len(self.layers)):
            layer = self.layers[index]
            if clustered_fc is not None and isinstance(layer, KANLinear):
                x = clustered_fc(index, layer, x)
                continue
            x = self.run_layer(index, x)
        if self.head is not None:
            x = self.head(x)
        if self.normalize is not None:
            x = self.normalize.outputs(x)
        return x

    def target_scale(self) -> torch.Tensor | None:
        """Regression with standardised targets: the per-output scale the training loss divides by."""
        if self.normalize is None or not hasattr(self.normalize, "target_scale"):
            return None
        return self.normalize.target_scale

    def fc_layers(self) -> list[KANLinear]:
        """The layers of a fully-connected model."""
        if self.head is not None:
            raise ConfigError("this is a conv model; it has no fully-connected KAN layers")
        return [cast(KANLinear, layer) for layer in self.layers]

    def conv_layers(self) -> list[KANConv2d]:
        """The layers of a conv model."""
        if self.head is None:
            raise ConfigError("this is a fully-connected model; it has no conv KAN layers")
        return [cast(KANConv2d, layer) for layer in self.layers]

    def dense_edges(self) -> DenseEdges:
        """The edge store of a dense model (importers fill its vectors)."""
        if not isinstance(self.edges, DenseEdges):
            raise ConfigError(f"a dense model was expected, this one is {self.kind}")
        return self.edges

    def edge_vectors(self) -> list[torch.Tensor]:
        """Every layer's (n_l, |w|) edge vectors, materialised and detached (paper: M_θ(z) for a meta model)."""
        return self.edges.all_vectors()

    def extra_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters outside the edge store (norms, biases, Gram β, PReLU, the conv head)."""
        return list(self.layers.parameters()) + (list(self.head.parameters()) if self.head is not None else [])


def first_features_fixed(model: KANModel) -> bool:
    """Whether the first layer's edge features f(x) = [B(x), act(x)] depend on the samples alone: a
    fully-connected model whose input transform and first layer's basis (grid, prepared input) hold no trainable
    parameter (not FastKAN's basis LayerNorm, not Gram's β) and whose edge functions are linear in their vectors."""
    if model.head is not None:
        return False
    layer = model.fc_layers()[0]
    before = [layer.basis, layer.input_norm, layer.pre_norm]
    return not layer.parametric and not any(part is not None and any(True for _ in part.parameters())
                                            for part in before)


@torch.no_grad()
def first_features(model: KANModel, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """The first layer's edge features of the samples x (on the model's device), (N, in, |w|) float32."""
    layer = model.fc_layers()[0]
    device = next(model.parameters()).device
    return torch.cat([layer.edge_features(model.prepare(x[start : start + batch_size].to(device)))
                      for start in range(0, x.shape[0], batch_size)])


class FirstLayerFed(nn.Module):
    """`model` fed its first layer's edge features (`first_features`) instead of samples, with the same outputs
    when `first_features_fixed(model)`: training or validating on features computed once skips the basis
    evaluation, most of a step's cost when the first layer is wide (784 inputs of a B-spline against 32). It
    shares `model`'s parameters; `train.fit` and `train.evaluate` take it as they take the model."""

    def __init__(self, model: KANModel):
        super().__init__()
        self.model = model
        self.config = model.config

    def target_scale(self) -> torch.Tensor | None:
        return self.model.target_scale()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features: (N, in, |w|) -> the model's outputs (N, outputs)."""
        first = self.model.fc_layers()[0].forward_features(features, self.model.layer_vectors(0))
        return self.model.forward_from(1, first)


def build_model(config: ModelConfig, kind: str = "dense", ks: list[int] | None = None) -> KANModel:
    """A freshly initialised model of the given checkpoint kind.

    kind "meta" needs `config.meta`; kind "clustered" needs `ks`, the codebook size of each layer (codebooks
    and indices start at zero and are meant to be filled by `load_state_dict`).
    """
    config.validate()
    width = config.edge_width
    if kind == "dense":
        edges: EdgeStore = DenseEdges([init_edge_vectors(config, shape) for shape in config.edge_shapes])
    elif kind == "meta":
        if config.meta is None:
            raise ConfigError("a meta model needs a meta-learner config (train with --meta)")
        edges = MetaEdges(config.num_edges, width, config.meta, [o for o, _ in config.layer_shapes])
    elif kind == "clustered":
        if ks is None or len(ks) != len(config.layer_shapes):
            raise ConfigError(f"a clustered model needs one k per layer ({len(config.layer_shapes)})")
        codebooks = [torch.zeros(k, width) for k in ks]
        indices = [torch.zeros(n, dtype=torch.int64) for n in config.num_edges]
        edges = CodebookEdges(codebooks, indices)
    else:
        raise ConfigError(f"unknown checkpoint kind {kind!r}; choose from: {', '.join(KINDS)}")
    return KANModel(config, edges)


def with_edges(model: KANModel, edges: EdgeStore, config: ModelConfig | None = None) -> KANModel:
    """A new model with `model`'s layers, head and normalisation (copied) and another edge store."""
    new = KANModel(config or model.config, edges)
    new.layers.load_state_dict(model.layers.state_dict())
    if model.normalize is not None and new.normalize is not None:
        new.normalize.load_state_dict(model.normalize.state_dict())
    if model.head is not None and new.head is not None:
        new.head.load_state_dict(model.head.state_dict())
    return new
