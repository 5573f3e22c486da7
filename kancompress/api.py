"""The Python API behind every CLI command: train, cluster, finetune, evaluate.

Example:
    >>> from kancompress import api
    >>> result = api.train("kan", "digits", meta=True, train_config=api.TrainConfig(epochs=2))
    >>> clustered, provenance = api.cluster(result.model, api.ClusterConfig(k=16))
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from kancompress import __version__, distributed
from kancompress.bases import get_spec
from kancompress.cluster import ClusterConfig, Clusterer, default_k
from kancompress.format.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from kancompress.config import ConvConfig, MetaConfig, default_config, default_conv_config
from kancompress.data import Dataset, Split, load_dataset, needs_augmentation, random_crop_flip, split_validation
from kancompress.distributed import resolve_device
from kancompress.edges import MetaEdges
from kancompress.errors import ConfigError, DataError, FormatError
from kancompress.models import KANModel, build_model
from kancompress.search import SweepPoint, choose_ks
from kancompress.search import sweep as search_sweep
from kancompress.train import (
    EpochReport,
    History,
    Metrics,
    TrainConfig,
    evaluate,
    fit,
)

__all__ = [
    "ClusterConfig",
    "TrainConfig",
    "TrainResult",
    "cluster",
    "default_k",
    "evaluate_model",
    "finetune",
    "import_checkpoint",
    "load_checkpoint",
    "parameter_groups",
    "save_checkpoint",
    "sweep",
    "train",
]

BatchCallback = Callable[[int, int], None]
EpochCallback = Callable[[EpochReport], None]
StateCallback = Callable[[dict[str, Any]], None]


@dataclass
class TrainResult:
    model: KANModel
    history: History
    test: Metrics
    provenance: dict[str, Any]


def parameter_groups(
    model: KANModel, lr: float, lr_meta: float | None = None, lr_embed: float | None = None
) -> list[dict[str, Any]]:
    """AdamW groups: meta-learner at `lr_meta`, embeddings at `lr_embed`, everything else at `lr`."""
    extras = {"params": model.extra_parameters(), "lr": lr}
    if isinstance(model.edges, MetaEdges):
        return [
            {"params": list(model.edges.learners.parameters()), "lr": lr if lr_meta is None else lr_meta},
            {"params": list(model.edges.embeddings.parameters()), "lr": lr if lr_embed is None else lr_embed},
            extras,
        ]
    return [{"params": list(model.edges.parameters()), "lr": lr}, extras]


def _check_inputs(model: KANModel, dataset: Dataset) -> None:
    if model.config.conv is not None:
        if model.config.widths[0] != dataset.input_shape[0]:
            raise DataError(f"the model takes {model.config.widths[0]}-channel images but {dataset.name} has "
                            f"{dataset.input_shape[0]} channels; use the dataset it was trained on")
    elif model.config.widths[0] != dataset.num_features:
        raise DataError(
            f"the model takes {model.config.widths[0]} inputs but {dataset.name} images have "
            f"{dataset.num_features} values; use the dataset it was trained on"
        )
    if model.config.num_outputs < dataset.num_classes:
        raise DataError(f"the model has {model.config.num_outputs} outputs but {dataset.name} has "
                        f"{dataset.num_classes} classes")


def train(
    model_name: str,
    dataset: str | Dataset,
    *,
    meta: bool | MetaConfig = False,
    hidden: tuple[int, ...] = (32,),
    conv: bool | ConvConfig = False,
    channels: tuple[int, ...] = (32, 64, 128, 256),
    train_config: TrainConfig = TrainConfig(),
    lr: float | None = None,
    lr_meta: float | None = None,
    lr_embed: float | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
    on_batch: BatchCallback | None = None,
    on_epoch: EpochCallback | None = None,
    on_state: StateCallback | None = None,
    resume: dict[str, Any] | None = None,
    device: str = "auto",
) -> TrainResult:
    """Train a KAN (MetaKAN when `meta`; convolutional when `conv`) with the paper's learning rates by default.

    Fully-connected: layers (features, *hidden, classes). Conv: Drokin's design with `channels`; a meta conv
    model defaults to d_emb = 2 for kan/fastkan and 1 for gramkan (paper Table 7).
    """
    data = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, data_dir, download)
    meta_config = (default_meta(model_name, bool(conv)) if meta is True else meta) or None
    if conv:
        conv_config = conv if isinstance(conv, ConvConfig) else None
        config = default_conv_config(model_name, data.input_shape[0], data.num_classes, tuple(channels),
                                     meta_config, conv_config)
    else:
        config = default_config(model_name, (data.num_features, *hidden, data.num_classes), meta_config)
    target = resolve_device(device)
    distributed.setup(target)
    torch.manual_seed(train_config.seed)
    model = build_model(config, "meta" if meta_config else "dense").to(target)
    groups = parameter_groups(model, *default_learning_rates(model_name, bool(conv), bool(meta_config),
                                                             lr, lr_meta, lr_embed))
    split = split_validation(data, seed=train_config.seed)
    augment = random_crop_flip if conv and needs_augmentation(data.name) else None
    history = fit(model, split, groups, train_config, on_batch, on_epoch, on_state, resume, augment)
    test = evaluate(model, data.test_x, data.test_y)
    extra = {"lrs": [g["lr"] for g in groups], "processes": distributed.world_size(), "device": target.type}
    provenance = _provenance("train", data.name, history, test, train_config, extra)
    return TrainResult(model.cpu(), history, test, provenance)


def default_meta(model_name: str, conv: bool) -> MetaConfig:
    """Paper Tables 5 and 7: d_emb = 1, except for conv models of bases whose spec says otherwise (B-spline, RBF: 2)."""
    return MetaConfig(d_emb=get_spec(model_name).conv_meta_d_emb if conv else 1)


def default_learning_rates(
    model_name: str, conv: bool, meta: bool, lr: float | None = None, lr_meta: float | None = None,
    lr_embed: float | None = None,
) -> tuple[float, float | None, float | None]:
    """(lr of the edges or the extras, lr of the meta-learner, lr of the embeddings): the given ones, else the
    basis's defaults (paper Tables 4-7 where it has them). The last two are None for a plain model."""
    rates = get_spec(model_name).lr
    if not meta:
        return (lr if lr is not None else rates.conv_plain if conv else rates.plain), None, None
    if conv:
        lr_h, lr_e, rest = rates.conv_meta
    else:
        (lr_h, lr_e), rest = rates.meta, rates.plain
    return (lr if lr is not None else rest, lr_meta if lr_meta is not None else lr_h,
            lr_embed if lr_embed is not None else lr_e)


def default_finetune_lr(model: KANModel) -> float:
    """Paper lr_c: the basis's fine-tuning rate (FC 1e-4, conv 1e-5)."""
    rates = model.config.spec.lr
    return rates.conv_finetune if model.config.conv is not None else rates.finetune


def cluster(
    checkpoint: Checkpoint | KANModel,
    options: ClusterConfig = ClusterConfig(),
    dataset: str | Dataset | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
) -> tuple[KANModel, dict[str, Any]]:
    """Cluster a dense or meta model (or loaded checkpoint) as `options` say; returns the clustered model and its
    provenance (which records every option). With `options.max_drop` the per-layer k is searched on the
    validation split of `dataset` (default: the one the checkpoint records; needs a `Checkpoint`)."""
    model = checkpoint.model if isinstance(checkpoint, Checkpoint) else checkpoint
    parent = checkpoint.header.provenance if isinstance(checkpoint, Checkpoint) else {}
    source_kind = model.kind
    source = model.to(resolve_device(options.device))
    clusterer = Clusterer(source, options.seed, options.n_init, options.codebook_dtype, options.index_coding,
                          options.kmeans)
    extra: dict[str, Any] = {}
    if options.max_drop is None:
        clustered = clusterer.build(options.ks_for(model))
    else:
        if not isinstance(checkpoint, Checkpoint):
            raise ConfigError("--max-drop needs a loaded checkpoint (its dataset and training seed)")
        data = _dataset_for(checkpoint, dataset, data_dir, download)
        _check_inputs(model, data)
        ks, base, accuracy = choose_ks(clusterer, _source_split(checkpoint, data), options.max_drop)
        clustered = clusterer.build(ks)  # reuses the K-means runs of the search
        extra = {"source_val_accuracy": base, "val_accuracy": accuracy, "dataset": data.name}
    provenance = _cluster_provenance(clustered, source_kind, parent, options)
    provenance.update(extra)
    return clustered, provenance


def _cluster_provenance(
    clustered: KANModel, source_kind: str, parent: dict[str, Any], options: ClusterConfig
) -> dict[str, Any]:
    return {
        "stage": "cluster",
        "dataset": parent.get("dataset"),
        "clustered_from": source_kind,
        "k": [book.k for book in clustered.edges.layers],
        "options": dataclasses.asdict(options),
        "kancompress_version": __version__,
        "parent": parent,
    }


def finetune(
    checkpoint: Checkpoint,
    dataset: str | Dataset | None = None,
    *,
    train_config: TrainConfig = TrainConfig(epochs=5, patience=3),
    lr: float | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
    on_batch: BatchCallback | None = None,
    on_epoch: EpochCallback | None = None,
    on_state: StateCallback | None = None,
    resume: dict[str, Any] | None = None,
    reassign_from: KANModel | None = None,
    device: str = "auto",
) -> TrainResult:
    """Paper stage 3: train the codebooks (and the small extras) of a clustered model; indices stay frozen.

    With `reassign_from` (the dense or meta model that was clustered), indices move instead: after every epoch
    each edge is re-assigned to the centroid nearest its original vector (clustering-aware fine-tuning).
    """
    if checkpoint.kind != "clustered":
        raise FormatError(f"{checkpoint.header.path}: finetune needs a clustered checkpoint, this one is "
                          f"{checkpoint.kind}; run `kancompress cluster` first")
    data = _dataset_for(checkpoint, dataset, data_dir, download)
    target = resolve_device(device)
    distributed.setup(target)
    model = checkpoint.model.to(target)
    _check_inputs(model, data)
    torch.manual_seed(train_config.seed)
    split = split_validation(data, seed=train_config.seed)
    conv = model.config.conv is not None
    lr = lr if lr is not None else default_finetune_lr(model)
    augment = random_crop_flip if conv and needs_augmentation(data.name) else None
    moved: list[int] = []
    if reassign_from is not None:
        if reassign_from.config.num_edges != model.config.num_edges:
            raise ConfigError("--reassign needs the checkpoint that was clustered (its layers differ)")
        reference = [v.to(target) for v in reassign_from.edge_vectors()]
        user_on_epoch = on_epoch

        def on_epoch(report: EpochReport) -> None:
            moved.append(model.edges.reassign(reference))
            if user_on_epoch is not None:
                user_on_epoch(report)

    history = fit(model, split, parameter_groups(model, lr), train_config, on_batch, on_epoch, on_state, resume,
                  augment)
    model.edges.round_to_storage()
    test = evaluate(model, data.test_x, data.test_y)
    extra = {"lr": lr, "reassigned_per_epoch": moved if reassign_from is not None else None,
             "parent": checkpoint.header.provenance}
    return TrainResult(model.cpu(), history, test, _provenance("finetune", data.name, history, test, train_config, extra))


def evaluate_model(
    checkpoint: Checkpoint,
    dataset: str | Dataset | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
    device: str = "auto",
    fc_forward: str = "auto",
) -> tuple[str, Metrics]:
    """Test accuracy and loss of a checkpoint on its recorded dataset (or `dataset`). `fc_forward` says how
    clustered fully-connected layers run (`kancompress.fastpath`: auto | decode | gather | onehot)."""
    checkpoint.model.set_fc_forward(fc_forward)
    data = _dataset_for(checkpoint, dataset, data_dir, download)
    _check_inputs(checkpoint.model, data)
    return data.name, evaluate(checkpoint.model.to(resolve_device(device)), data.test_x, data.test_y)


def _source_split(checkpoint: Checkpoint, data: Dataset) -> Split:
    """The validation split the checkpoint was trained with (same seed), so it holds unseen data."""
    seed = (checkpoint.header.provenance.get("train_config") or {}).get("seed", 0)
    return split_validation(data, seed=seed if isinstance(seed, int) else 0)


def _finetuner(epochs: int, lr: float | None, split: Split, seed: int) -> Callable[[KANModel], KANModel]:
    def tune(model: KANModel) -> KANModel:
        rate = lr if lr is not None else default_finetune_lr(model)
        fit(model, split, parameter_groups(model, rate), TrainConfig(epochs=epochs, patience=3, seed=seed))
        model.edges.round_to_storage()
        return model

    return tune


def sweep(
    checkpoint: Checkpoint,
    ks: list[int],
    dataset: str | Dataset | None = None,
    *,
    finetune_epochs: int = 0,
    lr: float | None = None,
    seed: int = 0,
    n_init: int = 4,
    codebook_dtype: str = "float32",
    index_coding: str = "packed",
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
    on_point: Callable[[SweepPoint], None] | None = None,
    device: str = "cpu",
) -> list[SweepPoint]:
    """Accuracy and size of a dense or meta checkpoint clustered at each k (optionally fine-tuned); the torch
    K-means of large layers runs on `device`."""
    if checkpoint.kind == "clustered":
        raise FormatError(f"{checkpoint.header.path}: sweep needs a dense or meta checkpoint, not a clustered one")
    if not ks or any(k < 2 for k in ks):
        raise ConfigError("--ks needs codebook sizes >= 2, e.g. --ks 2,4,8,16")
    data = _dataset_for(checkpoint, dataset, data_dir, download)
    _check_inputs(checkpoint.model, data)
    split = _source_split(checkpoint, data)
    clusterer = Clusterer(checkpoint.model.to(resolve_device(device)), seed, n_init, codebook_dtype, index_coding)
    tune = _finetuner(finetune_epochs, lr, split, seed) if finetune_epochs > 0 else None
    return search_sweep(clusterer, split, (data.test_x, data.test_y), ks, tune, on_point)


def import_checkpoint(
    source: str | os.PathLike[str],
    library: str | None = None,
    denominator: float | None = None,
    dataset: str | None = None,
    config_file: str | os.PathLike[str] | None = None,
    conv_options: Any = None,
) -> tuple[KANModel, dict[str, Any]]:
    """A dense model from an upstream library's state_dict file (pykan: with its `_config.yml`), and provenance."""
    from kancompress.data import DATASETS
    from kancompress.importers import (
        ConvImportOptions,
        detect_library,
        import_state_dict,
        read_pykan_config,
        read_state_dict,
    )

    if dataset is not None and dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; choose from: {', '.join(DATASETS)}")
    state = read_state_dict(source)
    library = library or detect_library(state)
    sidecar = read_pykan_config(config_file) if config_file else None
    model = import_state_dict(state, library, denominator, sidecar, conv_options or ConvImportOptions())
    provenance = {"stage": "import", "source_library": library, "source_file": os.path.basename(source),
                  "dataset": dataset, "kancompress_version": __version__}
    return model, provenance


LEAN_PROVENANCE_KEYS: tuple[str, ...] = ("stage", "dataset")


def lean_provenance(provenance: dict[str, Any]) -> dict[str, Any]:
    """Only what later commands need (stage, dataset): for the smallest file, at the cost of the history."""
    return {key: provenance[key] for key in LEAN_PROVENANCE_KEYS if key in provenance}


def export_checkpoint(checkpoint: Checkpoint, library: str) -> dict[str, torch.Tensor]:
    """The checkpoint's model (any kind, decoded) as a state_dict in `library`'s own layout."""
    from kancompress.importers import export_state_dict

    return export_state_dict(checkpoint.model, library)


def _dataset_for(
    checkpoint: Checkpoint, dataset: str | Dataset | None, data_dir: str | os.PathLike[str] | None, download: bool
) -> Dataset:
    if isinstance(dataset, Dataset):
        return dataset
    name = dataset or checkpoint.header.provenance.get("dataset")
    if not name:
        raise ConfigError(f"{checkpoint.header.path}: no dataset recorded in the checkpoint; pass --dataset")
    return load_dataset(name, data_dir, download)


def _provenance(
    stage: str, dataset: str, history: History, test: Metrics, config: TrainConfig, extra: dict[str, Any]
) -> dict[str, Any]:
    best = history.best_val
    return {
        "stage": stage,
        "dataset": dataset,
        "epochs": len(history.epochs),
        "best_epoch": history.best_epoch,
        "val_accuracy": best.accuracy if best else None,
        "test_accuracy": test.accuracy,
        "test_loss": test.loss,
        "train_config": dataclasses.asdict(config),
        "kancompress_version": __version__,
        **extra,
    }
