"""Size-accuracy search: sweep the codebook size, and pick k per layer under an accuracy budget."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch

from kancompress.cluster import Clusterer
from kancompress.format.checkpoint import payload_bytes
from kancompress.data import Split
from kancompress.errors import ConfigError
from kancompress.models import KANModel
from kancompress.train import evaluate


@dataclass(frozen=True)
class SweepPoint:
    k: int
    bytes: int  # tensor bytes of the clustered checkpoint
    val_accuracy: float
    test_accuracy: float
    finetuned_val_accuracy: float | None = None
    finetuned_test_accuracy: float | None = None


SWEEP_COLUMNS: tuple[str, ...] = ("k", "bytes", "val_accuracy", "test_accuracy", "finetuned_val_accuracy",
                                   "finetuned_test_accuracy")


def sweep_csv(points: list[SweepPoint]) -> str:
    """The sweep as CSV: a header row (`SWEEP_COLUMNS`; accuracies as fractions, bytes = tensor bytes of the
    clustered file), one row per k, empty cells where a point was not fine-tuned."""
    rows = [",".join(SWEEP_COLUMNS)]
    rows += [",".join("" if value is None else str(value) for value in dataclasses.astuple(point)) for point in points]
    return "\n".join(rows) + "\n"


def sweep(
    clusterer: Clusterer,
    split: Split,
    test: tuple[torch.Tensor, torch.Tensor],
    ks: list[int],
    finetune: Callable[[KANModel], KANModel] | None = None,
    on_point: Callable[[SweepPoint], None] | None = None,
) -> list[SweepPoint]:
    """Cluster every layer at each k (capped at the layer's edge count); accuracy and size, optionally fine-tuned."""
    points = []
    counts = clusterer.model.config.num_edges
    for k in ks:
        model = clusterer.build([min(k, n) for n in counts])
        val, tested = evaluate(model, split.val_x, split.val_y), evaluate(model, *test)
        tuned_val = tuned_test = None
        if finetune is not None:
            model = finetune(model)
            tuned_val = evaluate(model, split.val_x, split.val_y).accuracy
            tuned_test = evaluate(model, *test).accuracy
        point = SweepPoint(k, payload_bytes(model), val.accuracy, tested.accuracy, tuned_val, tuned_test)
        points.append(point)
        if on_point is not None:
            on_point(point)
    return points


def choose_ks(
    clusterer: Clusterer,
    split: Split,
    max_drop: float,
    candidates: tuple[int, ...] = (2, 4, 8, 16, 32, 64, 128, 256),
    on_trial: Callable[[list[int], float], None] | None = None,
) -> tuple[list[int], float, float]:
    """Per-layer k minimising size with validation accuracy within `max_drop` points of the source model.

    Greedy, largest layers first (their indices dominate the size): each layer takes the smallest candidate k
    that keeps the whole model within budget, the layers not yet visited staying at their largest candidate.
    Returns (ks, source validation accuracy, clustered validation accuracy).
    """
    if max_drop < 0:
        raise ConfigError("--max-drop must be >= 0 (accuracy points)")
    base = evaluate(clusterer.model, split.val_x, split.val_y).accuracy
    floor = base - max_drop / 100.0
    counts = clusterer.model.config.num_edges
    options = [[k for k in candidates if k <= n] or [n] for n in counts]
    ks = [opts[-1] for opts in options]
    accuracy = evaluate(clusterer.build(ks), split.val_x, split.val_y).accuracy
    for layer in sorted(range(len(counts)), key=lambda l: -counts[l]):
        for k in options[layer]:
            if k >= ks[layer]:
                break
            trial = ks[:layer] + [k] + ks[layer + 1 :]
            trial_accuracy = evaluate(clusterer.build(trial), split.val_x, split.val_y).accuracy
            if on_trial is not None:
                on_trial(trial, trial_accuracy)
            if trial_accuracy >= floor:
                ks, accuracy = trial, trial_accuracy
                break
    return ks, base, accuracy
