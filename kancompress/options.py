"""One frozen, validated options object per command that trains or clusters: the CLI builds it from flags, the
Python API takes it as is, a resumable run stores it (JSON) and continues with it. Flags that do not combine
are refused here, once, for both. No torch."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kancompress.bases import get_spec
from kancompress.config import TASKS, ConvConfig, MetaConfig, TrainConfig
from kancompress.errors import ConfigError
from kancompress.format.schema import CODEBOOK_DTYPES, INDEX_CODINGS

if TYPE_CHECKING:
    from kancompress.models import KANModel

DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
KMEANS_BACKENDS: tuple[str, ...] = ("auto", "sklearn", "torch")
FC_FORWARDS: tuple[str, ...] = ("decode", "auto", "gather", "onehot")


def conv_strides(layers: int) -> tuple[int, ...]:
    """The paper's strides for a conv KAN of `layers` layers: 1, 2, 2, 1, then 1 for any further layer."""
    return (1, 2, 2, 1)[:layers] + (1,) * max(0, layers - 4)


def _check_lr(name: str, value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} {value} must be a positive number (leave it out for the paper's default)")


def _check_data(data_file: str | None, target: str | None, task: str | None) -> None:
    if task is not None:
        _check_choice("task", task, TASKS)
    if target is not None and data_file is None:
        raise ConfigError("--target names CSV columns of --data; give --data too")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; choose from: {', '.join(choices)}")


def check_storage(codebook_dtype: str, index_coding: str) -> None:
    """A clustered file's storage choices: a codebook dtype and an index coding."""
    _check_choice("codebook dtype", codebook_dtype, tuple(CODEBOOK_DTYPES))
    _check_choice("index coding", index_coding, INDEX_CODINGS)


def _check_clustering(codebook_dtype: str, index_coding: str, kmeans: str, device: str) -> None:
    """The storage and K-means choices `cluster` and `compress` share."""
    check_storage(codebook_dtype, index_coding)
    _check_choice("K-means backend", kmeans, KMEANS_BACKENDS)
    _check_choice("device", device, DEVICES)


@dataclass(frozen=True)
class TrainOptions:
    """Everything `train` needs besides the data.

    model: a registered model name; meta: the meta-learner (None: a plain KAN); hidden: FC hidden widths;
    conv: the conv design (None: fully-connected; strides default to `conv_strides(len(channels))`); lr, lr_meta,
    lr_embed: None for the basis's defaults (paper Tables 4-7); dataset: a built-in name recorded for later commands.
    """

    model: str = "kan"
    dataset: str = "digits"
    data_dir: str | None = None
    data_file: str | None = None  # the user's data (`kancompress.userdata`) instead of a built-in dataset
    target: str | None = None  # CSV target column(s)
    task: str | None = None  # force classification or regression (default: inferred from the targets)
    meta: MetaConfig | None = None
    hidden: tuple[int, ...] = (32,)
    mult_nodes: tuple[int, ...] = ()
    conv: ConvConfig | None = None
    channels: tuple[int, ...] = (32, 64, 128, 256)
    lr: float | None = None
    lr_meta: float | None = None
    lr_embed: float | None = None
    train: TrainConfig = field(default_factory=TrainConfig)
    device: str = "auto"

    def __post_init__(self) -> None:
        get_spec(self.model)
        _check_choice("device", self.device, DEVICES)
        _check_data(self.data_file, self.target, self.task)
        for name in ("lr", "lr_meta", "lr_embed"):
            _check_lr("--" + name.replace("_", "-"), getattr(self, name))
        if (self.lr_meta is not None or self.lr_embed is not None) and self.meta is None:
            raise ConfigError("--lr-meta and --lr-embed need --meta")
        if not self.hidden or any(w < 1 for w in self.hidden):
            raise ConfigError("--hidden widths must be >= 1")
        if self.mult_nodes and (len(self.mult_nodes) != len(self.hidden) or self.conv is not None or any(
                not 0 <= m <= w for m, w in zip(self.mult_nodes, self.hidden))):
            raise ConfigError("--mult-nodes needs one count per --hidden layer, each from 0 to that layer's width "
                              "(fully-connected models)")
        if self.conv is not None:
            if not self.channels or any(c < 1 for c in self.channels):
                raise ConfigError("--channels must be >= 1")
            if len(self.conv.strides) != len(self.channels):
                raise ConfigError(f"the conv model has {len(self.channels)} layers but {len(self.conv.strides)} "
                                  "strides; give one stride per layer")

    @classmethod
    def build(cls, *, conv: bool | ConvConfig = False, meta: bool | MetaConfig = False, **fields: Any) -> TrainOptions:
        """Options with conv=True (the paper's conv design, strides by `conv_strides`) and meta=True (the basis's
        meta defaults, paper Tables 5 and 7) spelled out."""
        model = fields.get("model", cls.model)
        channels = tuple(fields.pop("channels", cls.channels))
        conv_config = (ConvConfig(strides=conv_strides(len(channels))) if conv is True else conv) or None
        meta_config = (default_meta(model, conv_config is not None) if meta is True else meta) or None
        return cls(conv=conv_config, meta=meta_config, channels=channels, **fields)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainOptions:
        data = dict(data)
        conv = data.pop("conv")
        meta = data.pop("meta")
        data["mult_nodes"] = tuple(data.get("mult_nodes", ()))
        return cls(conv=ConvConfig(**{**conv, "strides": tuple(conv["strides"])}) if conv else None,
                   meta=MetaConfig(**meta) if meta else None, train=TrainConfig(**data.pop("train")),
                   hidden=tuple(data.pop("hidden")), channels=tuple(data.pop("channels")), **data)


def default_meta(model: str, conv: bool) -> MetaConfig:
    """Paper Tables 5 and 7: d_emb = 1, except for conv models of bases whose spec says otherwise (B-spline, RBF: 2)."""
    return MetaConfig(d_emb=get_spec(model).conv_meta_d_emb if conv else 1)


@dataclass(frozen=True)
class FinetuneOptions:
    """Everything `finetune` needs besides the clustered checkpoint and the data: dataset None means the one the
    checkpoint records; lr None means the basis's lr_c (paper: 1e-4 FC, 1e-5 conv)."""

    dataset: str | None = None
    data_dir: str | None = None
    lr: float | None = None
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=5, patience=3))
    device: str = "auto"
    data_file: str | None = None  # the user's data instead of the recorded dataset
    target: str | None = None
    task: str | None = None

    def __post_init__(self) -> None:
        _check_choice("device", self.device, DEVICES)
        _check_lr("--lr", self.lr)
        _check_data(self.data_file, self.target, self.task)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FinetuneOptions:
        data = dict(data)
        return cls(train=TrainConfig(**data.pop("train")), **data)


@dataclass(frozen=True)
class ClusterConfig:
    """Every option of `cluster`, validated once, the same from the CLI and the API (`api.cluster`).

    k: codebook size of every layer (None: `default_k`, 16 for FC models and 256 for conv); layer_ks: per-layer
    overrides ((layer, k), ...); max_drop: instead of k, choose k per layer as the smallest file whose validation
    accuracy stays within this many points of the source (needs data; excludes k and layer_ks); data_aware:
    weigh each edge's error by what it does to its layer's output on the training inputs (`weighting`; needs
    data; fully-connected layers).
    """

    k: int | None = None
    layer_ks: tuple[tuple[int, int], ...] = ()
    seed: int = 0
    n_init: int = 4
    codebook_dtype: str = "float32"
    index_coding: str = "packed"
    kmeans: str = "auto"
    device: str = "cpu"
    max_drop: float | None = None
    data_aware: bool = False  # K-means in the metric of each layer's output error on the training inputs

    def __post_init__(self) -> None:
        if self.index_coding == "entropy":  # the name before rANS had one; kept so old scripts run
            object.__setattr__(self, "index_coding", "rans")
        if self.k is not None and self.k < 2:
            raise ConfigError(f"-k {self.k} is too small; use k >= 2")
        if self.n_init < 1:
            raise ConfigError(f"--n-init {self.n_init} must be >= 1")
        _check_clustering(self.codebook_dtype, self.index_coding, self.kmeans, self.device)
        if self.max_drop is not None:
            if not (math.isfinite(self.max_drop) and self.max_drop >= 0):
                raise ConfigError("--max-drop must be >= 0 (accuracy points)")
            if self.k is not None or self.layer_ks:
                raise ConfigError("--max-drop chooses k per layer itself; drop -k/--layer-k, or drop --max-drop")

    def ks_for(self, model: KANModel) -> list[int]:
        """Each layer's k for `model` (without max_drop), checked against its edge counts; `k` is capped at the
        edge count of a layer that has fewer edges (`capped_for` names those)."""
        from kancompress.cluster import resolve_ks

        return resolve_ks(model, self.k if self.k is not None else default_k(model), dict(self.layer_ks), cap=True)

    def capped_for(self, model: KANModel) -> dict[int, int]:
        """{layer: edge count} of the layers whose k `ks_for` caps at their edge count."""
        from kancompress.cluster import capped_layers

        return capped_layers(model, self.k if self.k is not None else default_k(model), dict(self.layer_ks))


COMPRESS_METHODS = ("cluster", "distill", "soft")
SEARCH_MODES = ("fast", "thorough")  # CompressOptions.search
FAST_DISTILL_EPOCHS = 10  # at most; it stops once the MetaKAN is close enough (`compress.engine`)
GRID_MODES = ("share", "keep", "regrid")  # CompressOptions.grids
GRID_BUDGET = 0.2  # the share of --max-drop that sharing adapted grids may spend (the rest is clustering's)


@dataclass(frozen=True)
class CompressOptions:
    """Every option of `compress` (`api.compress`): the smallest clustered file whose validation metric, after
    fine-tuning, stays within `max_drop` of the source's (accuracy points, or a relative MSE increase).

    methods: "cluster" clusters the source's own vectors; "distill" (dense sources) first distils it into a
    MetaKAN (`distill_epochs` of task training; None: `FAST_DISTILL_EPOCHS` with the fast search, 20 with the
    thorough one); "soft" retrains the source for at most `soft_epochs` epochs with each candidate's edges softly
    assigned to a trained codebook, then assigns them hard (`compress.soft`); the smallest result within budget
    wins.
    search: "fast" (default) picks per-layer k from measured per-layer losses and bytes without training, then
    fine-tunes candidates along the rate–distortion frontier for at most `search_steps` optimizer steps each
    (`compress.engine`); "thorough" is the greedy search, every trial fine-tuned `search_epochs` epochs.
    ks: the codebook sizes tried per layer; epochs/patience: the final fine-tuning (the fast search's runs at least
    `search_steps` steps); lrs: the final fine-tuning's candidate rates (None: 10× and 1× the basis's lr_c; the
    fast search and the thorough one's trials use the first, the thorough one's finals all); codebook_dtype:
    "auto" (default) stores int8 codebooks and moves to float16, then float32 only when nothing fits the budget
    at a lower precision; index_coding: the smallest by default; grids: what happens first to a dense
    B-spline source whose grids were adapted per input (`update_grid`): "share" (default) gives each layer the
    fewest of `grid_counts` shared grids that keep the validation metric within `GRID_BUDGET` of the budget
    (`regrid.share_grids`; the file then stores a few grid rows and an index per input), "keep" stores every
    input's grid, "regrid" re-fits one uniform grid per layer (`regrid.regrid`; on the Fashion-MNIST frontier's
    efficient-kan model no re-gridded trial stayed within 0.5 points); data_aware:
    besides plain K-means, also K-means in the metric of each layer's output error on the training inputs
    (`weighting`; the fast search picks per layer, the thorough one searches each separately).
    """

    max_drop: float
    ks: tuple[int, ...] = (2, 4, 8, 16, 32, 64, 128, 256)
    search: str = "fast"
    search_steps: int = 400
    search_epochs: int = 2
    epochs: int = 10
    patience: int = 3
    lrs: tuple[float, ...] | None = None
    methods: tuple[str, ...] = COMPRESS_METHODS
    distill_epochs: int | None = None
    soft_epochs: int = 3
    batch_size: int = TrainConfig.batch_size
    codebook_dtype: str = "auto"
    index_coding: str = "context"
    seed: int = 0
    n_init: int = 4
    kmeans: str = "auto"
    device: str = "auto"
    grids: str = "share"
    grid_counts: tuple[int, ...] = (1, 4, 16, 64)
    data_aware: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max_drop) and self.max_drop >= 0):
            raise ConfigError("--max-drop must be >= 0 (accuracy points, or a relative MSE increase)")
        if not self.ks or min(self.ks) < 2:
            raise ConfigError("--ks needs codebook sizes >= 2, e.g. 2,4,8,16")
        if (self.search_epochs < 1 or self.search_steps < 1 or self.epochs < 1 or self.patience < 0
                or (self.distill_epochs is not None and self.distill_epochs < 1) or self.soft_epochs < 1):
            raise ConfigError("compress needs --search-steps, --search-epochs, --epochs, --distill-epochs and "
                              "--soft-epochs >= 1 and --patience >= 0")
        _check_choice("search", self.search, SEARCH_MODES)
        if not self.methods or len(set(self.methods)) != len(self.methods):
            raise ConfigError(f"--methods needs one or more distinct methods: {', '.join(COMPRESS_METHODS)}")
        for method in self.methods:
            _check_choice("compress method", method, COMPRESS_METHODS)
        for lr in self.lrs or ():
            _check_lr("--lr", lr)
        if self.lrs is not None and not self.lrs:
            raise ConfigError("give at least one --lr")
        object.__setattr__(self, "ks", tuple(sorted(set(self.ks))))
        _check_choice("grids mode", self.grids, GRID_MODES)
        if not self.grid_counts or min(self.grid_counts) < 1:
            raise ConfigError("--grid-counts needs shared-grid counts >= 1, e.g. 1,4,16,64")
        object.__setattr__(self, "grid_counts", tuple(sorted(set(self.grid_counts))))
        _check_choice("codebook dtype", self.codebook_dtype, ("auto", *CODEBOOK_DTYPES))
        _check_clustering("float32" if self.codebook_dtype == "auto" else self.codebook_dtype, self.index_coding,
                          self.kmeans, self.device)

    @property
    def distillation_epochs(self) -> int:
        """`distill_epochs`, or the search's default for it."""
        if self.distill_epochs is not None:
            return self.distill_epochs
        return FAST_DISTILL_EPOCHS if self.search == "fast" else 20

    def train_config(self, epochs: int, patience: int) -> TrainConfig:
        return TrainConfig(epochs=epochs, batch_size=self.batch_size, patience=patience, seed=self.seed)


def default_k(model: KANModel) -> int:
    """The paper's codebook size: 16 for fully-connected KANs (Table 1), 256 for conv KANs (Table 2)."""
    return 256 if model.config.conv is not None else 16
