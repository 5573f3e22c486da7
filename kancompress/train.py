"""One training loop for `train` and `finetune`, with early stopping on a validation split.

The loop never prints: progress reaches the caller through `on_batch(done, total)` and `on_epoch(report)`.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from kancompress import distributed, tasks
from kancompress.config import TrainConfig
from kancompress.data import Split
from kancompress.models import FirstLayerFed, KANModel
from kancompress.tasks import Metrics

Trainable = KANModel | FirstLayerFed  # a model, or one fed its first layer's cached features

@dataclass(frozen=True)
class EpochReport:
    epoch: int  # 1-based
    epochs: int
    train_loss: float
    val: Metrics
    improved: bool


@dataclass
class History:
    epochs: list[EpochReport] = field(default_factory=list)
    best_epoch: int = 0
    best_val: Metrics | None = None
    stopped_early: bool = False


def evaluate(model: Trainable, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> Metrics:
    """The task's metrics of `model` on (x, y) (`kancompress.tasks`), computed on the model's device."""
    return tasks.metrics_from_sums(model.config.task, _sums(model, x, y, batch_size))


def _sums(model: Trainable, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    model.eval()
    device = next(model.parameters()).device
    task, scale = model.config.task, model.target_scale()
    total = tasks.batch_sums(task, *_empty_batch(model, x, y))
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            outputs = model(x[start : start + batch_size].to(device))
            total += tasks.batch_sums(task, outputs.cpu(), y[start : start + batch_size], scale)
    return total


def _empty_batch(model: Trainable, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
    """Zero sums of the right length: no outputs for no samples."""
    outputs = torch.zeros(0, model.config.num_outputs)
    return outputs, y[:0], None


def batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def batch_stream(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Shuffled passes over n samples, one after another, without end (each pass its own permutation)."""
    while True:
        yield from batches(n, batch_size, generator)


def fit(
    model: Trainable,
    data: Split,
    param_groups: list[dict[str, Any]],
    config: TrainConfig,
    on_batch: Callable[[int, int], None] | None = None,
    on_epoch: Callable[[EpochReport], None] | None = None,
    on_state: Callable[[dict[str, Any]], None] | None = None,
    resume: dict[str, Any] | None = None,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    teacher: nn.Module | None = None,
    keep_start: bool = False,
    stop_when: Callable[[Metrics], bool] | None = None,
    chunk_steps: int = 0,
    judge: Trainable | None = None,
) -> History:
    """Train with AdamW and cross-entropy; keep the weights of the best validation epoch.

    With `keep_start` the starting weights count as epoch 0: an epoch must beat them on validation to be kept, so
    the result is never worse on validation than the model given (fine-tuning; `History.best_epoch` 0 then says
    no epoch improved on it). `stop_when(best validation metrics)` ends training as soon as it holds (checked
    after epoch 0 with `keep_start`, then after every epoch): a search that only needs to know whether a trial can
    meet a budget stops paying once it has.

    With `chunk_steps` an "epoch" is that many optimizer steps of a continuing stream of shuffled passes over the
    training data (validation, patience and `stop_when` then count chunks): a short fine-tuning sees fresh
    samples at every step and is judged often. Such a run is not resumable (`on_state` is not called).

    `param_groups` are AdamW groups (each with its own "lr"); parameters in no group stay frozen.
    `on_state` receives, after every epoch, a resumable state (plain tensors, numbers and lists, loadable with
    `torch.load(weights_only=True)`); passing it back as `resume` continues exactly where it was taken, so an
    interrupted run resumed from its last state ends with the same weights as an uninterrupted one.
    With a `teacher` (a model of the same task, left unchanged), the loss also pulls the outputs towards the
    teacher's (`tasks.distillation_loss`). `judge` is what validation runs when it is not `model` itself: a
    `FirstLayerFed(model)` for a split whose validation rows are the first layer's features
    (`compress.cache.FeatureCache.validation_for`).
    """
    judge = model if judge is None else judge
    trainable = {id(p) for group in param_groups for p in group["params"]}
    for p in model.parameters():
        p.requires_grad_(id(p) in trainable)
    device = next(model.parameters()).device
    train_x, train_y = data.train_x.to(device), data.train_y.to(device)
    parallel = distributed.active()
    forward: nn.Module = model
    if parallel:  # every rank holds the same weights; DDP averages the gradients of each rank's batch slice
        forward = nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    optimizer = torch.optim.AdamW(param_groups, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    history = History()
    best_state = copy.deepcopy(model.state_dict())
    stale, first_epoch = 0, 1
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        generator.set_state(resume["generator"])
        best_state = resume["best_model"]
        stale, first_epoch = resume["stale"], resume["epoch"] + 1
        history = _history_from_state(resume["history"], resume["best_epoch"], model.config.task)
    elif keep_start:
        history.best_val = validate(judge, data)
    n = data.train_x.shape[0]
    steps = chunk_steps or math.ceil(n / config.batch_size)
    config = config.for_steps_per_epoch(steps)  # small data: the step floors raise epochs and patience
    target_scale = model.target_scale()
    stream = batch_stream(n, config.batch_size, generator) if chunk_steps else None
    for epoch in range(first_epoch, config.epochs + 1):
        if config.patience and stale >= config.patience:
            break
        if stop_when is not None and history.best_val is not None and stop_when(history.best_val):
            break  # checked before each epoch: after epoch 0 (keep_start) and after every epoch since
        model.train()
        total_loss, seen = 0.0, 0
        epoch_batches = (itertools.islice(stream, chunk_steps) if stream is not None
                         else batches(n, config.batch_size, generator))
        for step, index in enumerate(epoch_batches, start=1):
            inputs, targets = train_x[index], train_y[index]
            if augment is not None:
                inputs = augment(inputs, generator)
            if parallel:  # this rank's share of the global batch (a DistributedSampler over the batch)
                if index.numel() < distributed.world_size():
                    continue  # too small to give every rank a sample; every rank skips it alike
                inputs, targets = distributed.share(inputs), distributed.share(targets)
            outputs = forward(inputs)
            if teacher is None:
                loss = tasks.loss(model.config.task, outputs, targets, target_scale)
            else:
                with torch.no_grad():
                    guide = teacher(inputs)
                loss = tasks.distillation_loss(model.config.task, outputs, guide, targets, target_scale)
            optimizer.zero_grad(set_to_none=True)
            torch.autograd.backward(loss)
            optimizer.step()
            total_loss += loss.item() * index.numel()
            seen += index.numel()
            if on_batch is not None:
                on_batch(step, steps)
        val = validate(judge, data)
        improved = tasks.better(val, history.best_val)
        if improved:
            history.best_epoch, history.best_val, stale = epoch, val, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
        report = EpochReport(epoch, config.epochs, total_loss / (max(seen, 1) if stream is not None else n), val,
                             improved)
        history.epochs.append(report)
        if on_epoch is not None:  # before the state is taken: what it changes (finetune --reassign) is resumed too
            on_epoch(report)
        if on_state is not None and stream is None:
            on_state({
                "epoch": epoch,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "generator": generator.get_state(),
                "best_model": best_state,
                "best_epoch": history.best_epoch,
                "stale": stale,
                "history": [_report_to_state(r) for r in history.epochs],
            })
    history.stopped_early = bool(config.patience and stale >= config.patience)
    model.load_state_dict(best_state)
    model.eval()
    return history


def validate(model: Trainable, data: Split) -> Metrics:
    """`data`'s validation metrics; under torchrun each rank takes a slice and the sums are all-reduced, so every
    rank reaches the same numbers (and the same early-stopping or search decision) whatever kernels it ran."""
    if not distributed.active():
        return evaluate(model, data.val_x, data.val_y)
    mine = _sums(model, distributed.share(data.val_x), distributed.share(data.val_y))
    device = next(model.parameters()).device
    return tasks.metrics_from_sums(model.config.task, distributed.sum_across_ranks(mine, device))


_NAN = float("nan")


def _report_to_state(report: EpochReport) -> list[float]:
    val = report.val
    return [report.epoch, report.epochs, report.train_loss, _NAN if val.accuracy is None else val.accuracy, val.loss,
            val.n, float(report.improved), _NAN if val.mse is None else val.mse, _NAN if val.r2 is None else val.r2]


def _history_from_state(rows: list[list[float]], best_epoch: int, task: str) -> History:
    history = History(best_epoch=int(best_epoch))
    for row in rows:
        epoch, epochs, loss, accuracy, val_loss, n, improved, mse, r2 = [*row, _NAN, _NAN][:9]
        metrics = tasks.Metrics(task, val_loss, int(n), None if math.isnan(accuracy) else accuracy,
                                None if math.isnan(mse) else mse, None if math.isnan(r2) else r2)
        report = EpochReport(int(epoch), int(epochs), loss, metrics, bool(improved))
        history.epochs.append(report)
        if report.epoch == history.best_epoch:
            history.best_val = report.val
    return history
