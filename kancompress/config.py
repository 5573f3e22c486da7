"""Model configuration: one frozen dataclass, validated strictly, stored as JSON in every checkpoint.

Defaults follow the MetaCluster paper (arXiv 2510.19105, Appendix A.1, Tables 4-5) and the upstream libraries
(efficient-kan, FastKAN, torch-conv-kan KAGN); see `../shared/research/kan-libraries.md`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from kancompress.bases import BasisConfig, BasisSpec, get_spec, model_names
from kancompress.bases.spec import BASIS_OPTIONAL_FIELDS, PolynomialSpec
from kancompress.errors import ConfigError

CONFIG_VERSION = 1

MODEL_NAMES: tuple[str, ...] = model_names()
"""The registered models (`kancompress.bases`): kan (B-spline), fastkan (RBF), gramkan (Gram), chebykan
(Chebyshev), legendrekan (Legendre)."""

CONV_MODEL_NAMES: tuple[str, ...] = tuple(name for name in MODEL_NAMES if not get_spec(name).fc_only)
"""The models that have conv layers (every basis but the fully-connected-only ones, e.g. wavkan)."""

TASKS: tuple[str, ...] = ("classification", "regression")
ACTIVATIONS: tuple[str, ...] = ("silu", "gelu", "relu", "tanh", "identity", "zero")
"""Base-branch activations: SiLU (efficient-kan, FastKAN, pykan default), GELU (torch-conv-kan KANConv default,
and what users often pass), ReLU, tanh, identity and zero (pykan's `base_fun='identity'` / `'zero'`)."""
META_SHARING: tuple[str, ...] = ("model", "layer", "groups:C")
ARCHS: tuple[str, ...] = ("mlp", "conv")

# A guard against configs (from a hostile or corrupted header) that would allocate absurd amounts of memory.
MAX_WIDTH = 1 << 20
MAX_EDGES = 1 << 28


DEFAULT_MIN_STEPS: dict[str, int] = {"classification": 2000, "regression": 10000}
"""`train`'s step floor per task when neither --epochs nor --min-steps is given (`TrainConfig.for_task`).
Classification: at the paper's learning rates, wine, iris and breast_cancer go from 63/48/86 % (KAN, 50 one-step
epochs) to 98/93/94 %, and 10x or 30x the rates did not do better (MetaKAN on breast_cancer fell to 76 % at 30x).
Regression (at the basis's `LearningRates.regression` rates): fitting an equation keeps improving long after a
classifier has settled; on Feynman I.8.4 and I.12.5 (B-spline KAN and MetaKAN, rates x10) 10,000 steps gave 1.2x
to 6.7x lower validation MSEs than 5,000, and early stopping ends the runs that have converged."""


@dataclass(frozen=True)
class TrainConfig:
    """How `train` and `finetune` run the optimisation loop (AdamW, early stopping on the validation split)."""

    epochs: int = 50
    batch_size: int = 128
    patience: int = 10  # epochs without a better validation accuracy before stopping; 0 disables
    seed: int = 0
    weight_decay: float = 1e-4
    # Small data: at least this many optimizer steps, and patience of at least this many steps (epochs are
    # raised to reach them; 0: epochs alone). A table of 150 rows makes one step an epoch at batch 128.
    # min_steps None: the task's floor (`DEFAULT_MIN_STEPS`) and a seventh of it as patience (`for_task`).
    min_steps: int | None = 0
    min_patience_steps: int = 0
    # The share of the training data held out for validation (early stopping, and later `compress`'s budget): a
    # seeded random split (`data.split_validation`), recorded in the provenance so later commands draw the same one
    val_fraction: float = 0.1

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 0 or self.weight_decay < 0:
            raise ConfigError("training needs epochs >= 1, batch size >= 1, patience >= 0 and weight decay >= 0")
        if (self.min_steps or 0) < 0 or self.min_patience_steps < 0:
            raise ConfigError("--min-steps and the patience floor must be >= 0")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"--val-fraction {self.val_fraction} must be between 0 and 1, e.g. 0.2")

    def for_task(self, task: str) -> TrainConfig:
        """This config with its step floors resolved: `min_steps` None takes the task's `DEFAULT_MIN_STEPS`, with
        patience of at least a seventh of it."""
        if self.min_steps is not None:
            return self
        steps = DEFAULT_MIN_STEPS[task]
        return dataclasses.replace(self, min_steps=steps, min_patience_steps=steps // 7)

    def for_steps_per_epoch(self, steps: int) -> TrainConfig:
        """The epochs and patience that give at least `min_steps` and `min_patience_steps` at `steps` per epoch
        (the floors resolved first: `for_task`)."""
        if self.min_steps is None:
            raise ConfigError("the step floor is the task's default: resolve it with TrainConfig.for_task first")
        steps = max(steps, 1)
        epochs = max(self.epochs, -(-self.min_steps // steps))
        patience = max(self.patience, -(-self.min_patience_steps // steps)) if self.patience else 0
        return dataclasses.replace(self, epochs=epochs, patience=patience)


@dataclass(frozen=True)
class MetaConfig:
    """The meta-learner M(z) = W2·ReLU(W1·z + b1) + b2 that generates each edge's vector (paper Eq. 6)."""

    d_emb: int = 1  # embedding dimension per edge
    hidden: int = 32  # hidden width of the meta-learner
    sharing: str = "model"  # "model": one meta-learner (paper default); "layer": one per layer; "groups:C": C
    # meta-learners, layers grouped by K-means on their output widths (MetaKAN's rule for deep KANs)

    def learner_count(self, layers: int) -> int:
        """How many meta-learners a model of `layers` layers has under this sharing."""
        if self.sharing == "model":
            return 1
        if self.sharing == "layer":
            return layers
        return int(self.sharing.partition(":")[2])


@dataclass(frozen=True)
class ConvConfig:
    """The convolutional KAN of Drokin (torch-conv-kan `SimpleConv*`): KAN conv layers, global average pool,
    dropout and a linear head. Layer l has `widths[l+1]` output channels and stride `strides[l]`; the first layer
    always has one group, the others `groups`."""

    kernel_size: int = 3
    strides: tuple[int, ...] = (1, 2, 2, 1)
    groups: int = 1
    dropout: float = 0.25  # inside every conv layer but the first
    dropout_linear: float = 0.5  # before the linear head
    num_classes: int = 10
    # None: a linear head; D: a KAN head of degree D in the model's own polynomial basis (torch-conv-kan
    # SimpleConvKAGN / SimpleConvKALN with degree_out >= 2): one fully-connected layer from the pooled channels to
    # the classes, stored uncompressed (`layers.ConvHead`)
    head_degree: int | None = None


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model from a checkpoint's header alone."""

    model: str = "kan"
    widths: tuple[int, ...] = (64, 32, 10)  # mlp: [in, hidden..., out]; conv: [in channels, channels...]
    basis: BasisConfig = field(default_factory=BasisConfig)
    base_activation: str = "silu"
    meta: MetaConfig | None = None  # set for a model whose edge vectors come from a meta-learner
    arch: str = "mlp"
    conv: ConvConfig | None = None  # set when arch == "conv"
    output_bias: bool = False  # a per-output bias in every fully-connected layer (always on for fastkan)
    norm_between: bool = False  # LayerNorm over the input of every fully-connected layer but the first (ChebyKAN)
    # FC: LayerNorms at these positions of the layer stack, 0..L (p < L: over the input of layer p; p = L: over
    # the last layer's output), for imported models whose norms sit elsewhere than between every pair of layers
    layer_norms: tuple[int, ...] | None = None
    basis_norm: bool | None = None  # FC: override the basis's LayerNorm on the basis path (FastKAN's use_layernorm)
    # FC: multiplication nodes (pykan's MultKAN, KAN 2.0): per layer, how many of the `widths[l+1]` nodes after it
    # multiply `mult_arity` consecutive sub-nodes (after the sum nodes); layer l then has widths[l+1] +
    # (mult_arity - 1)·mult_nodes[l] outputs, and ends with a per-node affine (`node_scale`, `node_bias`)
    mult_nodes: tuple[int, ...] | None = None
    mult_arity: int = 2
    task: str = "classification"  # or "regression" (`kancompress.tasks`)
    input_affine: bool = False  # the model maps raw inputs to [-1, 1] with a stored per-feature (conv: channel) affine
    target_affine: bool = False  # regression: outputs are un-standardised with a stored per-output affine
    # FC B-spline only: per layer (lo, hi) of its uniform grid, instead of basis.grid_min/max for every layer
    # (`kancompress.regrid` sets it when it replaces adapted per-input grids)
    grid_ranges: tuple[tuple[float, float], ...] | None = None
    version: int = CONFIG_VERSION

    @property
    def spec(self) -> BasisSpec:
        """The registered basis of `model` (`kancompress.bases`)."""
        return get_spec(self.model)

    def layer_basis(self, layer: int) -> BasisConfig:
        """The basis settings of layer `layer`: `basis`, with that layer's grid range when `grid_ranges` is set."""
        if self.grid_ranges is None:
            return self.basis
        lo, hi = self.grid_ranges[layer]
        return dataclasses.replace(self.basis, grid_min=lo, grid_max=hi)

    def head_config(self) -> ModelConfig | None:
        """The fully-connected KAN head of a conv model with `conv.head_degree`, as a one-layer model config."""
        if self.conv is None or self.conv.head_degree is None:
            return None
        return ModelConfig(model=self.model, widths=(self.widths[-1], self.conv.num_classes),
                           basis=BasisConfig(degree=self.conv.head_degree))

    @property
    def fc_basis_norm(self) -> bool:
        """Whether fully-connected layers put a LayerNorm on the basis path (FastKAN), the basis's default unless
        `basis_norm` overrides it."""
        return self.spec.fc.basis_norm if self.basis_norm is None else self.basis_norm

    def has_pre_norm(self, layer: int) -> bool:
        """A LayerNorm over the input of FC layer `layer` (`norm_between`, or `layer_norms`)."""
        if self.norm_between:
            return layer > 0
        return self.layer_norms is not None and layer in self.layer_norms

    @property
    def has_final_norm(self) -> bool:
        """A LayerNorm over the last FC layer's output (`layer_norms` holding L)."""
        return self.layer_norms is not None and len(self.layer_shapes) in self.layer_norms

    @property
    def num_basis(self) -> int:
        """Number of basis functions per edge (the vector length |w| is this plus one base weight)."""
        return self.spec.num_basis(self.basis)

    @property
    def edge_width(self) -> int:
        """|w|: the per-edge vector length, basis coefficients plus the base-branch weight."""
        return self.num_basis + 1

    @property
    def layer_shapes(self) -> list[tuple[int, int]]:
        """(out, in) features or channels of each KAN layer (with multiplication nodes, out counts sub-nodes)."""
        mult = self.mult_nodes or (0,) * (len(self.widths) - 1)
        return [(o + (self.mult_arity - 1) * m, i) for i, o, m in zip(self.widths[:-1], self.widths[1:], mult)]

    def layer_mult_nodes(self, layer: int) -> int:
        """How many multiplication nodes follow FC layer `layer` (0 without `mult_nodes`)."""
        return self.mult_nodes[layer] if self.mult_nodes is not None else 0

    def layer_groups(self, layer: int) -> int:
        return 1 if self.conv is None or layer == 0 else self.conv.groups

    @property
    def edge_shapes(self) -> list[tuple[int, ...]]:
        """Shape of each layer's edge grid: (out, in) for mlp, (out, in/groups, kh, kw) for conv."""
        if self.conv is None:
            return list(self.layer_shapes)
        k = self.conv.kernel_size
        return [(o, i // self.layer_groups(l), k, k) for l, (o, i) in enumerate(self.layer_shapes)]

    @property
    def num_edges(self) -> list[int]:
        return [math.prod(shape) for shape in self.edge_shapes]

    @property
    def num_outputs(self) -> int:
        return self.conv.num_classes if self.conv is not None else self.widths[-1]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form; the fields added after format version 2 (`OPTIONAL_FIELDS`) appear only when set, so files
        that do not use them stay readable by kancompress versions that predate them."""
        data = dataclasses.asdict(self)
        for key, default in OPTIONAL_FIELDS.items():
            if data[key] == default:
                del data[key]
        for key, default in BASIS_OPTIONAL_FIELDS.items():
            if data["basis"][key] == default:
                del data["basis"][key]
        if data["conv"] is not None and data["conv"]["head_degree"] is None:
            del data["conv"]["head_degree"]
        return data

    @classmethod
    def from_dict(cls, data: Any) -> ModelConfig:
        """Build and validate a config from its JSON form; every problem raises `ConfigError` naming the field."""
        if not isinstance(data, dict):
            raise ConfigError("model config must be a JSON object")
        fields = _checked_keys(data, cls, "model config")
        basis = BasisConfig(**_typed_fields(_checked_keys(fields.pop("basis", {}), BasisConfig, "basis"), BasisConfig))
        conv_data = fields.pop("conv", None)
        conv = None
        if conv_data is not None:
            conv_fields = _typed_fields(_checked_keys(conv_data, ConvConfig, "conv"), ConvConfig)
            strides = conv_fields.get("strides", ConvConfig.strides)
            if not isinstance(strides, (list, tuple)) or not all(_is_int(v) for v in strides):
                raise ConfigError("conv field 'strides' must be a list of integers")
            conv = ConvConfig(**{**conv_fields, "strides": tuple(strides)})
        meta_data = fields.pop("meta", None)
        meta = None
        if meta_data is not None:
            meta = MetaConfig(**_typed_fields(_checked_keys(meta_data, MetaConfig, "meta"), MetaConfig))
        if fields.get("grid_ranges") is not None:
            ranges = fields["grid_ranges"]
            if not isinstance(ranges, (list, tuple)) or not all(
                    isinstance(pair, (list, tuple)) and len(pair) == 2
                    and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair) for pair in ranges):
                raise ConfigError("model config field 'grid_ranges' must be a list of [lo, hi] number pairs")
            fields["grid_ranges"] = tuple((float(lo), float(hi)) for lo, hi in ranges)
        for name in ("layer_norms", "mult_nodes"):
            if fields.get(name) is not None:
                values = fields[name]
                if not isinstance(values, (list, tuple)) or not all(_is_int(v) for v in values):
                    raise ConfigError(f"model config field {name!r} must be a list of integers")
                fields[name] = tuple(values)
        if "widths" in fields:
            widths = fields["widths"]
            if not isinstance(widths, (list, tuple)) or not all(_is_int(w) for w in widths):
                raise ConfigError("model config field 'widths' must be a list of integers")
            fields["widths"] = tuple(int(w) for w in widths)
        config = cls(**_typed_fields(fields, cls), basis=basis, meta=meta, conv=conv)
        config.validate()
        return config

    def validate(self) -> None:
        """Raise `ConfigError` if any field is out of range; also guards against absurd allocations."""
        if self.version > CONFIG_VERSION:
            raise ConfigError(
                f"model config version {self.version} is newer than this kancompress supports ({CONFIG_VERSION}); "
                "upgrade kancompress"
            )
        get_spec(self.model)  # an unknown model is a ConfigError naming the known ones
        _choice("task", self.task, TASKS)
        if self.target_affine and self.task != "regression":
            raise ConfigError("target_affine is for regression models only")
        _choice("arch", self.arch, ARCHS)
        _choice("base_activation", self.base_activation, ACTIVATIONS)
        if len(self.widths) < 2:
            raise ConfigError("model config field 'widths' needs at least an input and an output width")
        for w in self.widths:
            if not 1 <= w <= MAX_WIDTH:
                raise ConfigError(f"layer width {w} is out of range 1..{MAX_WIDTH}")
        if (self.arch == "conv") != (self.conv is not None):
            raise ConfigError("a conv model needs a 'conv' section, and only a conv model may have one")
        if self.conv is not None and self.spec.fc_only:
            raise ConfigError(f"{self.model} has fully-connected layers only (no conv layers)")
        if self.conv is not None:
            c = self.conv
            if len(c.strides) != len(self.widths) - 1 or not all(1 <= s <= 8 for s in c.strides):
                raise ConfigError(f"conv needs one stride in 1..8 per layer ({len(self.widths) - 1})")
            if not 1 <= c.kernel_size <= 15 or c.kernel_size % 2 == 0:
                raise ConfigError("conv kernel_size must be odd, 1..15")
            if not 1 <= c.num_classes <= MAX_WIDTH:
                raise ConfigError(f"conv num_classes {c.num_classes} is out of range")
            if c.head_degree is not None and not (_is_int(c.head_degree) and 0 <= c.head_degree <= 32
                                                  and isinstance(self.spec, PolynomialSpec)):
                raise ConfigError("conv head_degree (a KAN head) needs a polynomial basis and an integer in 0..32 "
                                  "(or null for a linear head)")
            if not (0.0 <= c.dropout < 1.0 and 0.0 <= c.dropout_linear < 1.0):
                raise ConfigError("conv dropout rates must lie in [0, 1)")
            for l, (o, i) in enumerate(self.layer_shapes):
                g = self.layer_groups(l)
                if g < 1 or o % g or i % g:
                    raise ConfigError(f"conv layer {l}: groups={g} must divide {i} input and {o} output channels")
        spec = self.spec
        if self.norm_between and (self.conv is not None or min(self.widths[1:-1], default=2) < 2):
            raise ConfigError("norm_between needs a fully-connected model with hidden widths >= 2")
        if self.layer_norms is not None:
            depth = len(self.layer_shapes)
            if self.conv is not None or self.norm_between:
                raise ConfigError("layer_norms is for fully-connected models without norm_between")
            if list(self.layer_norms) != sorted(set(self.layer_norms)) or not all(
                    _is_int(p) and 0 <= p <= depth for p in self.layer_norms):
                raise ConfigError(f"layer_norms needs increasing positions in 0..{depth} (the number of layers)")
        if self.mult_nodes is not None:
            depth = len(self.widths) - 1
            if self.conv is not None or len(self.mult_nodes) != depth or not 2 <= self.mult_arity <= 16 or not all(
                    _is_int(m) and 0 <= m <= w for m, w in zip(self.mult_nodes, self.widths[1:])):
                raise ConfigError(f"mult_nodes needs one count per layer ({depth}), each at most that layer's width, "
                                  "mult_arity in 2..16, and a fully-connected model")
        if self.basis_norm is not None and self.conv is not None:
            raise ConfigError("basis_norm overrides fully-connected layers only")
        if self.fc_basis_norm and self.conv is None and min(self.widths[:-1]) < 2:
            raise ConfigError(f"{self.model} layers need at least 2 inputs (LayerNorm of one value is always 0)")
        if sum(self.num_edges) > MAX_EDGES:
            raise ConfigError(f"model has {sum(self.num_edges)} edges, more than the limit {MAX_EDGES}")
        spec.check(self.basis)
        if self.grid_ranges is not None:
            if not self.spec.layer_grid_ranges or self.conv is not None or self.basis.stored_grid:
                raise ConfigError(f"grid_ranges is for fully-connected models of a basis with a uniform grid (kan), "
                                  f"not {self.arch} {self.model}{' with stored grids' if self.basis.stored_grid else ''}")
            if len(self.grid_ranges) != len(self.layer_shapes):
                raise ConfigError(f"grid_ranges needs one [lo, hi] per layer ({len(self.layer_shapes)})")
            for layer in range(len(self.layer_shapes)):
                spec.check(self.layer_basis(layer))
        if self.meta is not None:
            sharing, _, count = self.meta.sharing.partition(":")
            if self.meta.sharing not in ("model", "layer") and not (
                    sharing == "groups" and count.isascii() and count.isdigit()
                    and 1 <= int(count) <= len(self.layer_shapes)):
                raise ConfigError(f"unknown --meta-sharing {self.meta.sharing!r}; choose model, layer or groups:C with "
                                  f"1 <= C <= {len(self.layer_shapes)} (the number of layers)")
            if not 1 <= self.meta.d_emb <= 64 or not 1 <= self.meta.hidden <= 4096:
                raise ConfigError("meta needs 1 <= d_emb <= 64 and 1 <= hidden <= 4096")


OPTIONAL_FIELDS: dict[str, Any] = {"norm_between": False, "task": "classification", "input_affine": False,
                                   "target_affine": False, "grid_ranges": None, "layer_norms": None,
                                   "basis_norm": None, "mult_nodes": None, "mult_arity": 2}
"""Fields written only when they differ from these defaults."""


def default_config(
    model: str, widths: tuple[int, ...], meta: MetaConfig | None = None, task: str = "classification",
    input_affine: bool = False, target_affine: bool = False, mult_nodes: tuple[int, ...] | None = None,
) -> ModelConfig:
    """The paper's configuration of `model` (Tables 4-5) with the given layer widths (and multiplication nodes)."""
    spec = get_spec(model)
    config = ModelConfig(model=model, widths=tuple(widths), basis=spec.fc_defaults, meta=meta,
                         norm_between=spec.norm_between and len(widths) > 2, task=task, input_affine=input_affine,
                         target_affine=target_affine, mult_nodes=mult_nodes)
    config.validate()
    return config


def default_conv_config(
    model: str,
    in_channels: int,
    num_classes: int,
    channels: tuple[int, ...] = (32, 64, 128, 256),
    meta: MetaConfig | None = None,
    conv: ConvConfig | None = None,
    task: str = "classification",
    input_affine: bool = False,
    target_affine: bool = False,
) -> ModelConfig:
    """The paper's convolutional KAN (Drokin's 4-layer design, Tables 6-7) for `model` (num_classes: outputs)."""
    spec = get_spec(model)
    conv = dataclasses.replace(conv or ConvConfig(), num_classes=num_classes)
    config = ModelConfig(model=model, widths=(in_channels, *channels), basis=spec.conv_defaults, meta=meta,
                         arch="conv", conv=conv, task=task, input_affine=input_affine, target_affine=target_affine)
    config.validate()
    return config


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; choose from: {', '.join(choices)}")


def _checked_keys(data: Any, cls: type, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ConfigError(f"{what} must be a JSON object")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in {what}; known keys: {', '.join(sorted(known))}")
    return dict(data)


def _typed_fields(data: dict[str, Any], cls: type) -> dict[str, Any]:
    """Check scalar field types against the dataclass annotations (str, int, float, optional float)."""
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value, kind = data[f.name], str(f.type)
        ok = True
        if kind == "str":
            ok = isinstance(value, str)
        elif kind == "int":
            ok = _is_int(value)
        elif kind == "bool":
            ok = isinstance(value, bool)
        elif kind == "int | None":
            ok = value is None or _is_int(value)
        elif kind == "bool | None":
            ok = value is None or isinstance(value, bool)
        elif kind == "tuple[int, ...]":
            ok = isinstance(value, (list, tuple))
        elif kind in ("float", "float | None"):
            ok = (value is None and "None" in kind) or (isinstance(value, (int, float)) and not isinstance(value, bool))
            if ok and value is not None:
                data[f.name] = float(value)
        if not ok:
            raise ConfigError(f"model config field {f.name!r} has the wrong type ({type(value).__name__})")
    return data
