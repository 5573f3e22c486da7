"""One training loop for `train` and `finetune`, with early stopping on a validation split.

The loop never prints: progress reaches the caller through `on_batch(done, total)` and `on_epoch(report)`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from kancompress import distributed
from kancompress.config import TrainConfig
from kancompress.data import Split

@dataclass(frozen=True)
class Metrics:
    accuracy: float
    loss: float
    n: int


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


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> Metrics:
    """Accuracy and mean cross-entropy of `model` on (x, y), computed on the model's device."""
    model.eval()
    device = next(model.parameters()).device
    correct, total_loss = 0, 0.0
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            logits = model(x[start : start + batch_size].to(device))
            target = y[start : start + batch_size].to(device)
            total_loss += F.cross_entropy(logits, target, reduction="sum").item()
            correct += int((logits.argmax(dim=1) == target).sum())
    n = int(x.shape[0])
    return Metrics(correct / max(n, 1), total_loss / max(n, 1), n)


def batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def _better(candidate: Metrics, best: Metrics | None) -> bool:
    if best is None:
        return True
    return candidate.accuracy > best.accuracy or (candidate.accuracy == best.accuracy and candidate.loss < best.loss)


def fit(
    model: nn.Module,
    data: Split,
    param_groups: list[dict[str, Any]],
    config: TrainConfig,
    on_batch: Callable[[int, int], None] | None = None,
    on_epoch: Callable[[EpochReport], None] | None = None,
    on_state: Callable[[dict[str, Any]], None] | None = None,
    resume: dict[str, Any] | None = None,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
) -> History:
    """Train with AdamW and cross-entropy; keep the weights of the best validation epoch.

    `param_groups` are AdamW groups (each with its own "lr"); parameters in no group stay frozen.
    `on_state` receives, after every epoch, a resumable state (plain tensors, numbers and lists, loadable with
    `torch.load(weights_only=True)`); passing it back as `resume` continues exactly where it was taken, so an
    interrupted run resumed from its last state ends with the same weights as an uninterrupted one.
    """
    trainable = {id(p) for group in param_groups for p in group["params"]}
    for p in model.parameters():
        p.requires_grad_(id(p) in trainable)
    device = next(model.parameters()).device
    train_x, train_y = data.train_x.to(device), data.train_y.to(device)
    parallel = distributed.active()
    forward = model
    if parallel:  # every rank holds the same weights; DDP averages the gradients of each rank's batch slice
        forward = nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
        part, parts = distributed.rank(), distributed.world_size()
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
        history = _history_from_state(resume["history"], resume["best_epoch"])
    n = data.train_x.shape[0]
    steps = math.ceil(n / config.batch_size)
    for epoch in range(first_epoch, config.epochs + 1):
        if config.patience and stale >= config.patience:
            break
        model.train()
        total_loss = 0.0
        for step, index in enumerate(batches(n, config.batch_size, generator), start=1):
            inputs, targets = train_x[index], train_y[index]
            if augment is not None:
                inputs = augment(inputs, generator)
            if parallel:  # this rank's share of the global batch (a DistributedSampler over the batch)
                if index.numel() < parts:
                    continue  # too small to give every rank a sample; every rank skips it alike
                inputs, targets = inputs[part::parts], targets[part::parts]
            loss = F.cross_entropy(forward(inputs), targets)
            optimizer.zero_grad(set_to_none=True)
            torch.autograd.backward(loss)
            optimizer.step()
            total_loss += loss.item() * index.numel()
            if on_batch is not None:
                on_batch(step, steps)
        val = _validate(model, data, device)
        improved = _better(val, history.best_val)
        if improved:
            history.best_epoch, history.best_val, stale = epoch, val, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
        report = EpochReport(epoch, config.epochs, total_loss / n, val, improved)
        history.epochs.append(report)
        if on_epoch is not None:  # before the state is taken: what it changes (finetune --reassign) is resumed too
            on_epoch(report)
        if on_state is not None:
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


def _validate(model: nn.Module, data: Split, device: torch.device) -> Metrics:
    """Validation metrics; under torchrun each rank takes a slice and the sums are all-reduced, so every rank
    reaches the same numbers (and the same early-stopping decision) whatever kernels it ran."""
    if not distributed.active():
        return evaluate(model, data.val_x, data.val_y)
    part, parts = distributed.rank(), distributed.world_size()
    mine = evaluate(model, data.val_x[part::parts], data.val_y[part::parts])
    correct, loss_sum, n = distributed.sum_across_ranks([mine.accuracy * mine.n, mine.loss * mine.n, mine.n], device)
    return Metrics(round(correct) / max(n, 1), loss_sum / max(n, 1), int(n))


def _report_to_state(report: EpochReport) -> list[float]:
    return [report.epoch, report.epochs, report.train_loss, report.val.accuracy, report.val.loss, report.val.n,
            float(report.improved)]


def _history_from_state(rows: list[list[float]], best_epoch: int) -> History:
    history = History(best_epoch=int(best_epoch))
    for epoch, epochs, loss, accuracy, val_loss, n, improved in rows:
        report = EpochReport(int(epoch), int(epochs), loss, Metrics(accuracy, val_loss, int(n)), bool(improved))
        history.epochs.append(report)
        if report.epoch == history.best_epoch:
            history.best_val = report.val
    return history
