"""The Python API behind every CLI command: one function per command, each taking that command's options object.

Example:
    >>> from kancompress import api
    >>> result = api.train(api.TrainOptions.build(model="kan", meta=True, train=api.TrainConfig(epochs=2)))
    >>> clustered, provenance = api.cluster(result.model, api.ClusterConfig(k=16))

No function here reseeds the global random number generators (each run seeds its own, and the global state is
restored afterwards) or moves a model it was given: work on another device happens on a copy.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch

from kancompress import __version__, distributed
from kancompress.cluster import Clusterer
from kancompress.config import ModelConfig, TrainConfig, default_config, default_conv_config
from kancompress.data import Dataset, Split, load_dataset, needs_augmentation, random_crop_flip, split_validation
from kancompress.distributed import resolve_device
from kancompress.edges import CodebookEdges
from kancompress.errors import ConfigError, DataError, FormatError
from kancompress.userdata import dataset_from_arrays, load_data_file
from kancompress.optim import default_finetune_lr, default_learning_rates, on_device, own_rng, parameter_groups
from kancompress.format.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from kancompress.models import KANModel, build_model, with_edges
from kancompress.weighting import input_grams
from kancompress.options import (
    ClusterConfig,
    CompressOptions,
    FinetuneOptions,
    TrainOptions,
    conv_strides,
    default_k,
    default_meta,
)
from kancompress.compress.engine import compress_model
from kancompress.compress.greedy import choose_ks
from kancompress.compress.policy import finetuner
from kancompress.compress.trials import CompressTrial, Progress
from kancompress.search import SweepPoint
from kancompress.search import sweep as search_sweep
from kancompress.tasks import Metrics
from kancompress.train import EpochReport, History, evaluate, fit

__all__ = [
    "ClusterConfig",
    "CompressOptions",
    "CompressTrial",
    "FinetuneOptions",
    "TrainConfig",
    "TrainOptions",
    "SweepPoint",
    "TrainResult",
    "check_data",
    "cluster",
    "compress",
    "conv_strides",
    "default_k",
    "default_meta",
    "evaluate_model",
    "evaluation",
    "export_checkpoint",
    "finetune",
    "dataset_from_arrays",
    "import_checkpoint",
    "load_data",
    "load_checkpoint",
    "parameter_groups",
    "save_checkpoint",
    "source_split",
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


def load_data(
    dataset: str | None = None,
    data_file: str | os.PathLike[str] | None = None,
    target: str | None = None,
    task: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
) -> Dataset:
    """A built-in dataset by name (digits, mnist, fashion-mnist, cifar10, cifar100, diabetes, feynman:NAME), or the
    user's data file (`kancompress.userdata`: npz, safetensors, pt, csv with `target`, pykan dataset dicts)."""
    if data_file is not None:
        if dataset is not None:
            raise ConfigError("give either --dataset or --data, not both")
        return load_data_file(data_file, target, task)
    if dataset is None:
        raise ConfigError("no data: pass --dataset or --data")
    data = load_dataset(dataset, data_dir, download)
    if task is not None and task != data.task:
        raise ConfigError(f"{dataset} is a {data.task} dataset; --task {task} does not apply to it")
    return data


def data_provenance(data: Dataset, data_file: str | os.PathLike[str] | None, target: str | None,
                    task: str | None) -> dict[str, Any]:
    """What later commands need to load the same data again: the dataset name, and for a file its path."""
    entry: dict[str, Any] = {"dataset": data.name, "task": data.task}
    if data_file is not None:
        entry["data"] = {"file": str(Path(data_file).resolve()), "target": target, "task": task}
    return entry


def check_data(config: ModelConfig, dataset: Dataset) -> None:
    """Refuse data the model cannot take (task, input width or channels, outputs) with one line; needs only the
    model's config, so a command can check it from the file's header before loading any tensor."""
    if config.task != dataset.task:
        fix = ("pass --task regression to read its integer targets as numbers" if config.task == "regression" else
               "use data of its task; a model imported with the wrong task is imported again with --task regression")
        raise DataError(f"the model is a {config.task} model but {dataset.name} holds {dataset.task} targets; {fix}")
    if config.conv is not None:
        if config.widths[0] != dataset.input_shape[0]:
            raise DataError(f"the model takes {config.widths[0]}-channel images but {dataset.name} has "
                            f"{dataset.input_shape[0]} channels; use the dataset it was trained on")
    elif config.widths[0] != dataset.num_features:
        raise DataError(
            f"the model takes {config.widths[0]} inputs but {dataset.name} has {dataset.num_features} "
            "features; use data of the model's input width"
        )
    if dataset.task == "classification" and config.num_outputs < dataset.num_classes:
        raise DataError(f"the model has {config.num_outputs} outputs but {dataset.name} has labels up to "
                        f"{dataset.num_classes - 1}; class labels must be below the number of outputs")
    if dataset.task == "regression" and config.num_outputs != dataset.num_outputs:
        raise DataError(f"the model has {config.num_outputs} outputs but {dataset.name} has "
                        f"{dataset.num_outputs} targets per row")


def train(
    options: TrainOptions = TrainOptions(),
    data: Dataset | None = None,
    *,
    download: bool = False,
    on_batch: BatchCallback | None = None,
    on_epoch: EpochCallback | None = None,
    on_state: StateCallback | None = None,
    resume: dict[str, Any] | None = None,
) -> TrainResult:
    """Train a KAN (MetaKAN when `options.meta`; convolutional when `options.conv`) on `data` (default: the built-in
    dataset `options.dataset`), with the basis's learning rates unless given.

    Fully-connected: layers (features, *hidden, classes). Conv: Drokin's design with `options.channels`.
    """
    if data is None:
        data = load_data(None if options.data_file else options.dataset, options.data_file, options.target,
                         options.task, options.data_dir, download)
    task = data.task
    input_affine, target_affine = not data.prescaled, task == "regression"
    if options.conv is not None:
        if len(data.input_shape) != 3:
            raise DataError(f"a conv model needs images (N, C, H, W) or (N, H, W); {data.name} has inputs "
                            f"{list(data.input_shape)}")
        config = default_conv_config(options.model, data.input_shape[0], data.num_outputs, options.channels,
                                     options.meta, options.conv, task, input_affine, target_affine)
    else:
        config = default_config(options.model, (data.num_features, *options.hidden, data.num_outputs), options.meta,
                                task, input_affine, target_affine,
                                (*options.mult_nodes, 0) if any(options.mult_nodes) else None)
    _check_trainable(config)
    target = resolve_device(options.device)
    distributed.setup(target)
    seed = options.train.seed
    with own_rng(seed, target):
        model = build_model(config, "meta" if options.meta else "dense")
        if model.normalize is not None:  # the data transform, from the training data
            model.normalize.fit(data.train_x, data.train_y if task == "regression" else None)
        model = model.to(target)
        rates = default_learning_rates(options.model, options.conv is not None, options.meta is not None,
                                       options.lr, options.lr_meta, options.lr_embed, task)
        groups = parameter_groups(model, *rates)
        split = split_validation(data, options.train.val_fraction, seed=seed)
        augment = random_crop_flip if options.conv is not None and needs_augmentation(data.name) else None
        train_config = options.train.for_task(task)  # the task's step floor unless one was given
        history = fit(model, split, groups, train_config, on_batch, on_epoch, on_state, resume, augment)
    test = evaluate(model, data.test_x, data.test_y)
    extra = {"lrs": [g["lr"] for g in groups], "options": options.to_json(),
             **data_provenance(data, options.data_file, options.target, options.task)}
    provenance = _provenance("train", data.name, history, test, train_config, target, extra)
    return TrainResult(model.cpu(), history, test, provenance)


def _check_trainable(config: ModelConfig) -> None:
    """Refuse a fully-connected model that could only learn a constant: a layer of one node whose output passes
    through LayerNorm (GramKAN, LegendreKAN: y -> SiLU(LayerNorm(y)), as upstream) is always the same value."""
    if config.arch != "mlp" or not config.spec.fc.output_norm:
        return
    single = [layer for layer, width in enumerate(config.widths[1:]) if width == 1]
    if not single:
        return
    if single[-1] == len(config.widths) - 2:
        where, fix = "the output", "use --model kan, fastkan or chebykan for one target"
    else:
        where, fix = f"hidden layer {single[0] + 1}", "give it --hidden 2 or more"
    raise ConfigError(f"{config.model}'s layers end in LayerNorm, so {where} (one node) would be a constant; {fix}")


def cluster(
    checkpoint: Checkpoint | KANModel,
    options: ClusterConfig = ClusterConfig(),
    data: Dataset | None = None,
    *,
    download: bool = False,
) -> tuple[KANModel, dict[str, Any]]:
    """Cluster a dense or meta model (or loaded checkpoint) as `options` say; returns the clustered model and its
    provenance (which records every option). With `options.max_drop` the per-layer k is searched on the
    validation split of `data` (default: the dataset the checkpoint records; needs a `Checkpoint`); with
    `options.data_aware` its training split weighs the K-means (`weighting`)."""
    model = checkpoint.model if isinstance(checkpoint, Checkpoint) else checkpoint
    parent = checkpoint.header.provenance if isinstance(checkpoint, Checkpoint) else {}
    source_kind = model.kind
    target = resolve_device(options.device)
    source = on_device(model, target)
    split: Split | None = None
    if options.max_drop is not None or options.data_aware:
        if not isinstance(checkpoint, Checkpoint):
            what = "--max-drop" if options.max_drop is not None else "--data-aware"
            raise ConfigError(f"{what} needs a loaded checkpoint (its dataset and training seed)")
        data = data if data is not None else _recorded_dataset(checkpoint, None, None, download)
        check_data(model.config, data)
        split = source_split(checkpoint, data)
    grams = input_grams(source, split.train_x.to(target)) if options.data_aware and split is not None else None
    clusterer = Clusterer(source, options.seed, options.n_init, options.codebook_dtype, options.index_coding,
                          options.kmeans, grams)
    extra: dict[str, Any] = {}
    if options.max_drop is None:
        clustered = clusterer.build(options.ks_for(model))
        capped = options.capped_for(model)
        if capped:  # said by the CLI: "layer l has n edges: its k is capped at n"
            extra = {"k_capped": {str(layer): n for layer, n in capped.items()}}
    else:
        assert split is not None and data is not None
        ks, base, result = choose_ks(clusterer, split, options.max_drop)
        clustered = clusterer.build(ks)  # reuses the K-means runs of the search
        extra = {"source_val": base.to_json(), "val": result.to_json(), "dataset": data.name}
    provenance = {
        "stage": "cluster",
        "dataset": parent.get("dataset"),
        **({"data": parent["data"]} if "data" in parent else {}),
        "clustered_from": source_kind,
        "k": [book.k for book in cast(CodebookEdges, clustered.edges).books()],
        "options": dataclasses.asdict(options),
        **_environment(target, options.seed),
        "parent": parent,
        **extra,
    }
    return clustered, provenance


def finetune(
    checkpoint: Checkpoint | KANModel,
    options: FinetuneOptions = FinetuneOptions(),
    data: Dataset | None = None,
    *,
    download: bool = False,
    on_batch: BatchCallback | None = None,
    on_epoch: EpochCallback | None = None,
    on_state: StateCallback | None = None,
    resume: dict[str, Any] | None = None,
    reassign_from: KANModel | None = None,
) -> TrainResult:
    """Paper stage 3: train the codebooks (and the small extras) of a clustered model; indices stay frozen.

    With `reassign_from` (the dense or meta model that was clustered), indices move instead: after every epoch
    each edge is re-assigned to the centroid nearest its original vector (clustering-aware fine-tuning). The
    checkpoint's own model is left as it was; the result holds a trained copy.
    """
    source = checkpoint.model if isinstance(checkpoint, Checkpoint) else checkpoint
    where = checkpoint.header.path if isinstance(checkpoint, Checkpoint) else "the model"
    if source.kind != "clustered":
        raise FormatError(f"{where}: finetune needs a clustered checkpoint, this one is {source.kind}; run "
                          "`kancompress cluster` first")
    if data is None:
        if not isinstance(checkpoint, Checkpoint):
            raise ConfigError("finetune of an in-memory model needs its data (the `data` argument)")
        data = _recorded_dataset(checkpoint, options.dataset, options.data_dir, download, options.data_file,
                                 options.target, options.task)
    target = resolve_device(options.device)
    distributed.setup(target)
    model = copy.deepcopy(source).to(target)
    assert isinstance(model.edges, CodebookEdges)
    edges = model.edges
    check_data(model.config, data)
    lr = options.lr if options.lr is not None else default_finetune_lr(model)
    conv = model.config.conv is not None
    moved: list[int] = []
    if reassign_from is not None:
        if reassign_from.config.num_edges != model.config.num_edges:
            raise ConfigError("--reassign needs the checkpoint that was clustered (its layers differ)")
        reference = [v.to(target) for v in reassign_from.edge_vectors()]
        user_on_epoch = on_epoch

        def on_epoch(report: EpochReport) -> None:
            moved.append(edges.reassign(reference))
            if user_on_epoch is not None:
                user_on_epoch(report)

    seed = options.train.seed
    edges.quantization_aware = True  # every epoch is judged as the file will hold it (int8/float16 codebooks)
    with own_rng(seed, target):
        split = split_validation(data, options.train.val_fraction, seed=seed)
        augment = random_crop_flip if conv and needs_augmentation(data.name) else None
        history = fit(model, split, parameter_groups(model, lr), options.train, on_batch, on_epoch, on_state,
                      resume, augment, keep_start=True)
    edges.round_to_storage()
    model.round_extras()
    test = evaluate(model, data.test_x, data.test_y)
    parent = checkpoint.header.provenance if isinstance(checkpoint, Checkpoint) else {}
    extra = {"lr": lr, "reassigned_per_epoch": moved if reassign_from is not None else None,
             "options": options.to_json(), "parent": parent,
             **_recorded_data_provenance(parent, data, options.data_file, options.target, options.task)}
    provenance = _provenance("finetune", data.name, history, test, options.train, target, extra)
    return TrainResult(model.cpu(), history, test, provenance)


def evaluate_model(
    checkpoint: Checkpoint,
    data: Dataset | None = None,
    *,
    dataset: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
    device: str = "auto",
    fc_forward: str = "decode",
) -> tuple[str, Metrics]:
    """Test metrics of a checkpoint on `data` (default: its recorded dataset, or `dataset`).

    `fc_forward` says how clustered fully-connected layers run (`kancompress.fastpath`): "decode" (the default:
    the same arithmetic every run, so the same numbers), "auto" (whichever is fastest on this machine, measured:
    results may differ from decode in the last float bits), "gather" or "onehot"."""
    name, metrics, _ = _evaluated(checkpoint, data, dataset, data_dir, download, device, fc_forward)
    return name, metrics


def evaluation(
    checkpoint: Checkpoint,
    data: Dataset | None = None,
    *,
    dataset: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
    device: str = "auto",
    fc_forward: str = "decode",
) -> dict[str, Any]:
    """`eval --json`: path, kind, dataset, the task's metrics (`Metrics.to_json`) and the forward each clustered FC
    layer ran ({layer: [methods]}; empty for other models)."""
    name, metrics, model = _evaluated(checkpoint, data, dataset, data_dir, download, device, fc_forward)
    forward = model.codebook_forward
    paths = forward.chosen() if forward is not None else {}
    return {"path": str(checkpoint.header.path), "kind": checkpoint.kind, "dataset": name, **metrics.to_json(),
            "fc_forward": {str(layer): methods for layer, methods in paths.items()}}


def _evaluated(
    checkpoint: Checkpoint, data: Dataset | None, dataset: str | None, data_dir: str | os.PathLike[str] | None,
    download: bool, device: str, fc_forward: str,
) -> tuple[str, Metrics, KANModel]:
    data = data if data is not None else _recorded_dataset(checkpoint, dataset, data_dir, download)
    check_data(checkpoint.model.config, data)
    model = on_device(checkpoint.model, resolve_device(device))
    model.set_fc_forward(fc_forward)
    return data.name, evaluate(model, data.test_x, data.test_y), model


def source_split(checkpoint: Checkpoint, data: Dataset) -> Split:
    """The validation split the checkpoint was trained with (same seed and fraction), so it holds unseen data."""
    recorded = checkpoint.header.provenance.get("train_config") or {}
    seed, fraction = recorded.get("seed", 0), recorded.get("val_fraction", 0.1)
    fraction = fraction if isinstance(fraction, float) and 0.0 < fraction < 1.0 else 0.1
    return split_validation(data, fraction, seed=seed if isinstance(seed, int) else 0)


def compress(
    checkpoint: Checkpoint,
    options: CompressOptions,
    data: Dataset | None = None,
    *,
    download: bool = False,
    on_trial: Callable[[CompressTrial], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> tuple[KANModel, dict[str, Any], list[CompressTrial]]:
    """The smallest clustered model of a dense or meta checkpoint whose validation metric, after fine-tuning,
    stays within `options.max_drop` of the source's; every choice is made on the validation split the source was
    trained with (the share of its training data `data.split_validation` holds out with the training seed and
    fraction), the test split is only reported. A validation split too small to resolve the budget (one example
    worth more than half of it) is said to `on_warning` and recorded in the provenance (`warnings`).

    Each method clusters with plain K-means and, unless `options.data_aware` is False, also data-aware (`weighting`:
    each layer's K-means in the metric of its output error on the training split). A dense B-spline source with
    adapted per-input grids is first given shared grids (`options.grids` "share": methods named "grids+cluster",
    "grids+distill") or re-gridded ("regrid": "regrid+…"), on the training split, unless "keep"; fine-tuning and
    distillation still answer to the original's validation metric. For each method (`options.methods`; "distill"
    applies to dense sources only; it first distils the source into a MetaKAN whose vectors cluster well; "soft"
    starts each candidate from its K-means and retrains the source with its edges softly assigned to trained
    codebooks, `compress.soft`):
    - `options.search` "fast" (default): every layer's bytes and loss increase at each k and clustering measured
      without training, their rate–distortion frontier across layers, a binary search along it whose candidates
      are fine-tuned at most `search_steps` steps on a slice of the training split (stopping once within budget),
      then the final fine-tuning of the smallest one within budget (`compress.engine`).
    - "thorough": per-layer k chosen greedily, each trial fine-tuned `search_epochs` epochs, finals at every rate.
    Every fine-tuning keeps its starting point unless an epoch beats it on validation; BatchNorm statistics are
    re-estimated after clustering. `on_progress` receives where the run stands (`compress.trials.Progress`).
    The smallest result within budget over the methods is returned, with its provenance and every trial. Raises
    BudgetError when none fits the budget.
    """
    model = checkpoint.model
    if model.kind == "clustered":
        raise FormatError(f"{checkpoint.header.path}: compress needs a dense or meta checkpoint, this one is "
                          "already clustered; give the checkpoint it came from")
    data = data if data is not None else _recorded_dataset(checkpoint, None, None, download)
    check_data(model.config, data)
    split = source_split(checkpoint, data)
    target = resolve_device(options.device)
    distributed.setup(target)  # under torchrun: the search in lockstep on every rank (`distributed`)
    result = compress_model(on_device(model, target), split, options, target, on_trial, on_warning, on_progress)
    best, chosen = result.model.cpu(), result.chosen
    test = evaluate(best, data.test_x, data.test_y)
    parent = checkpoint.header.provenance
    provenance = {
        "stage": "compress",
        "dataset": data.name,
        **_recorded_data_provenance(parent, data, None, None, None),
        "clustered_from": model.kind,
        "method": chosen.method,
        "k": list(chosen.ks),
        "codebook_dtype": chosen.codebook_dtype,
        "lr": chosen.lr,
        "options": dataclasses.asdict(options),
        "source_val": result.base.to_json(),
        "val": chosen.val.to_json(),
        "test": test.to_json(),
        "trials": [trial.to_json() for trial in result.trials],
        **({"warnings": [result.warning]} if result.warning is not None else {}),
        **_environment(target, options.seed),
        "parent": parent,
    }
    return best, provenance, result.trials


def sweep(
    checkpoint: Checkpoint,
    ks: list[int],
    options: ClusterConfig = ClusterConfig(),
    data: Dataset | None = None,
    *,
    finetune: FinetuneOptions | None = None,
    dataset: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
    on_point: Callable[[SweepPoint], None] | None = None,
) -> list[SweepPoint]:
    """Accuracy and size of a dense or meta checkpoint clustered at each k with `options` (its k, layer_ks and
    max_drop unused), each point fine-tuned with `finetune` when given."""
    if checkpoint.kind == "clustered":
        raise FormatError(f"{checkpoint.header.path}: sweep needs a dense or meta checkpoint, not a clustered one")
    if not ks or any(k < 2 for k in ks):
        raise ConfigError("--ks needs codebook sizes >= 2, e.g. --ks 2,4,8,16")
    if options.k is not None or options.layer_ks or options.max_drop is not None:
        raise ConfigError("sweep sets k itself (--ks); -k, --layer-k and --max-drop do not apply")
    data = data if data is not None else _recorded_dataset(checkpoint, dataset, data_dir, download)
    check_data(checkpoint.model.config, data)
    split = source_split(checkpoint, data)
    source = on_device(checkpoint.model, resolve_device(options.device))
    clusterer = Clusterer(source, options.seed, options.n_init, options.codebook_dtype, options.index_coding,
                          options.kmeans)
    tune = finetuner(finetune, split) if finetune is not None else None
    return search_sweep(clusterer, split, (data.test_x, data.test_y), ks, tune, on_point)


@dataclass
class ImportResult:
    """`import_checkpoint`'s model, its provenance, the assumptions it made (one line each, for stderr) and the
    check against the original's outputs (None without `check_file`)."""

    model: KANModel
    provenance: dict[str, Any]
    notes: list[str]
    check: Any = None  # interop.check.CheckResult


def import_checkpoint(
    source: str | os.PathLike[str],
    library: str | None = None,
    options: Any = None,
    dataset: str | None = None,
    *,
    config_file: str | os.PathLike[str] | None = None,
    task: str | None = None,
    data_file: str | os.PathLike[str] | None = None,
    target: str | None = None,
    check_file: str | os.PathLike[str] | None = None,
    check_tolerance: float | None = None,
) -> ImportResult:
    """A dense model from an upstream library's state_dict file, with what the import assumed.

    `options` (`interop.ImportOptions`) gives what the file does not store; what is not given is the library's
    default, said in `notes`. pykan: the `{path}_config.yml` that `saveckpt` writes beside `{path}_state` is read
    by itself (or `config_file`). `check_file`: an .npz with the original model's inputs `x` and outputs `y`; the
    import is refused (FormatError) when the imported model is further than `check_tolerance` (default 1e-4) of
    the output scale from them. Upstream files do not say what the model was trained for: `task` (or the task of
    `data_file`) decides; else a model with one output is a regression model and any other a classifier. The
    model takes inputs as the upstream model did (no data transform is added)."""
    from kancompress.interop import ImportOptions, detect_library, import_source, read_recorded_metadata, read_source
    from kancompress.interop import pykan as pykan_interop
    from kancompress.interop.check import DEFAULT_TOLERANCE, compare, read_check_file

    options = options or ImportOptions()
    if task is not None and task not in ("classification", "regression"):
        raise ConfigError(f"unknown task {task!r}; choose from: classification, regression")
    if dataset is None and data_file is None:  # a file `kancompress export` wrote records where it came from
        recorded = read_recorded_metadata(source)
        name = recorded.get("kancompress_dataset", "")
        if name and not name.startswith("file:") and name != "arrays":
            dataset = name
        task = task or recorded.get("kancompress_task")
    data = load_data(dataset, data_file, target, task) if dataset is not None or data_file is not None else None
    check_arrays = read_check_file(check_file) if check_file is not None else None
    state = read_source(source)
    library = library or detect_library(state)
    sidecar_path = config_file or (pykan_interop.config_beside(source) if library == "pykan" else None)
    if sidecar_path is not None:
        if library != "pykan":
            raise ConfigError(f"--config is pykan's _config.yml; this is a {library} checkpoint: drop --config")
        options = dataclasses.replace(options, pykan_config=pykan_interop.read_config(sidecar_path))
    imported = import_source(state, library, options)
    model, notes = imported.model, imported.notes
    if sidecar_path is not None and config_file is None:
        notes.say(f"read pykan's config {sidecar_path}")
    if task is None and data is None and model.config.num_outputs == 1:
        task = "regression"
        notes.say("the model has one output: imported as a regression model (pass --task to say otherwise)")
    task = task or (data.task if data is not None else "classification")
    if task != model.config.task:
        model = with_edges(model, model.edges, dataclasses.replace(model.config, task=task))
    if data is not None:
        check_data(model.config, data)
    check = None
    if check_arrays is not None:
        check = compare(model, *check_arrays, tolerance=check_tolerance or DEFAULT_TOLERANCE)
        if not check.passed:
            assumed = ", ".join(f"{key}={value}" for key, value in notes.assumed.items())
            cause = (f"one of the defaults it assumed ({assumed}) is wrong: give the right one (--help lists them)"
                     if assumed else "the model has a part kancompress does not reproduce")
            raise FormatError(f"the imported {library} model differs from the original's outputs in {check_file}: "
                              f"{check.describe()}; nothing written: {cause}")
    provenance: dict[str, Any] = {"stage": "import", "source_library": library,
                                  "source_file": os.path.basename(source), "dataset": dataset,
                                  "kancompress_version": __version__}
    if notes.assumed:
        provenance["assumed"] = notes.assumed
    if check is not None:
        provenance["check"] = check.to_json()
    if data is not None:
        provenance.update(data_provenance(data, data_file, target, task))
    return ImportResult(model, provenance, notes.lines, check)


LEAN_PROVENANCE_KEYS: tuple[str, ...] = ("dataset", "data")
PROVENANCE_SHARE = 0.10  # a clustered file whose full provenance would cost more than this share of its tensors


def lean_provenance(provenance: dict[str, Any]) -> dict[str, Any]:
    """Only what later commands need (the dataset, or a data file's path, without the options left unset): for the
    smallest file, at the cost of the history."""
    lean = {key: provenance[key] for key in LEAN_PROVENANCE_KEYS if key in provenance}
    if isinstance(lean.get("data"), dict):
        lean["data"] = {key: value for key, value in lean["data"].items() if value is not None}
    return lean


def heavy_provenance(model: KANModel, provenance: dict[str, Any]) -> tuple[bool, int, int]:
    """Whether the full `provenance` would cost a clustered `model`'s file more than `PROVENANCE_SHARE` of its
    tensor bytes (`cluster` and `finetune` then write `lean_provenance` unless asked for the full one), with the
    provenance's and the tensors' bytes. Dense and meta files keep their history: it holds their training split."""
    if model.kind != "clustered":
        return False, 0, 0
    from kancompress.format.checkpoint import payload_bytes

    history = len(json.dumps(provenance, separators=(",", ":")))
    tensors = payload_bytes(model)
    return history > PROVENANCE_SHARE * tensors, history, tensors


def export_checkpoint(checkpoint: Checkpoint, library: str) -> dict[str, torch.Tensor]:
    """The checkpoint's model (any kind, decoded) as a state_dict in `library`'s own layout."""
    from kancompress.interop import export_state_dict

    return export_state_dict(checkpoint.model, library)


def export_c(checkpoint: Checkpoint, name: str | None = None) -> Any:
    """The checkpoint's model as C source (`interop.c_export.CExport`: the files, flash data and RAM bytes, notes);
    `name` the C prefix (default: from the file name)."""
    from kancompress.interop.arrays import model_arrays
    from kancompress.interop.c_export import c_name, render_c

    return render_c(model_arrays(checkpoint.model), name or c_name(Path(checkpoint.header.path).stem))


def _recorded_dataset(
    checkpoint: Checkpoint, dataset: str | None, data_dir: str | os.PathLike[str] | None, download: bool,
    data_file: str | None = None, target: str | None = None, task: str | None = None,
) -> Dataset:
    """The data given, else the data the checkpoint records (a built-in dataset, or the file it was trained on)."""
    if dataset is not None or data_file is not None:
        return load_data(dataset, data_file, target, task, data_dir, download)
    provenance = checkpoint.header.provenance
    recorded = provenance.get("data")
    if isinstance(recorded, dict) and isinstance(recorded.get("file"), str):
        if not Path(recorded["file"]).is_file():
            raise ConfigError(f"{checkpoint.header.path} was trained on {recorded['file']}, which is gone; pass --data")
        return load_data(None, recorded["file"], recorded.get("target"), recorded.get("task"))
    name = provenance.get("dataset")
    if not isinstance(name, str) or not name or name.startswith("file:") or name == "arrays":
        raise ConfigError(f"{checkpoint.header.path}: no dataset recorded in the checkpoint; pass --dataset or --data")
    return load_data(name, None, None, None, data_dir, download)


def _recorded_data_provenance(parent: dict[str, Any], data: Dataset, data_file: str | None, target: str | None,
                              task: str | None) -> dict[str, Any]:
    """The data entry of a derived checkpoint: the data given now, else the parent's."""
    if data_file is not None:
        return data_provenance(data, data_file, target, task)
    entry: dict[str, Any] = {"dataset": data.name, "task": data.task}
    recorded = parent.get("data")
    if isinstance(recorded, dict) and data.name.startswith("file:"):
        entry["data"] = recorded
    return entry


@functools.lru_cache(maxsize=1)
def _git_commit() -> str | None:
    """The commit of the kancompress checkout this runs from, when it is one (for provenance)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        result = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def _environment(device: torch.device, seed: int) -> dict[str, Any]:
    """What a rerun needs to get the same bytes: versions, commit, device, threads, processes (torchrun), seed."""
    return {"kancompress_version": __version__, "git_commit": _git_commit(), "torch_version": torch.__version__,
            "device": device.type, "threads": torch.get_num_threads(), "processes": distributed.world_size(),
            "seed": seed}


def _provenance(
    stage: str, dataset: str, history: History, test: Metrics, config: TrainConfig, device: torch.device,
    extra: dict[str, Any],
) -> dict[str, Any]:
    best = history.best_val
    metrics: dict[str, Any] = {"val": best.to_json() if best else None, "test": test.to_json()}
    if test.task == "classification":  # the names earlier versions wrote, still read by scripts
        metrics.update(val_accuracy=best.accuracy if best else None, test_accuracy=test.accuracy,
                       test_loss=test.loss)
    return {
        "stage": stage,
        "dataset": dataset,
        "epochs": len(history.epochs),
        "best_epoch": history.best_epoch,
        **metrics,
        "train_config": dataclasses.asdict(config),
        **_environment(device, config.seed),
        **extra,
    }
