"""Size-metric search: sweep the codebook size, and pick k per layer under a budget of the task's metric."""

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
from kancompress.tasks import Metrics, metric_name, within_budget
from kancompress.train import evaluate


@dataclass(frozen=True)
class SweepPoint:
    """One codebook size of a sweep. The metric is the task's headline one: accuracy (a fraction) for
    classification, MSE for regression (`metric` names it)."""

    k: int
    bytes: int  # tensor bytes of the clustered checkpoint
    val: float
    test: float
    finetuned_val: float | None = None
    finetuned_test: float | None = None
    metric: str = "accuracy"


def sweep_columns(metric: str) -> tuple[str, ...]:
    return ("k", "bytes", f"val_{metric}", f"test_{metric}", f"finetuned_val_{metric}", f"finetuned_test_{metric}")


def sweep_csv(points: list[SweepPoint]) -> str:
    """The sweep as CSV: a header row naming the metric (`k, bytes, val_accuracy, test_accuracy,
    finetuned_val_accuracy, finetuned_test_accuracy`, or `..._mse` for regression; accuracies as fractions, bytes =
    tensor bytes of the clustered file), one row per k, empty cells where a point was not fine-tuned."""
    metric = points[0].metric if points else "accuracy"
    rows = [",".join(sweep_columns(metric))]
    rows += [",".join("" if value is None else str(value) for value in dataclasses.astuple(point)[:6])
             for point in points]
    return "\n".join(rows) + "\n"


def read_sweep_csv(text: str) -> list[SweepPoint]:
    """The points of a sweep CSV written by `sweep_csv` (e.g. the kept rows of an interrupted sweep)."""
    import csv
    import io

    rows = list(csv.reader(io.StringIO(text)))
    if not rows or len(rows[0]) != 6 or rows[0][0] != "k":
        return []
    metric = rows[0][2].removeprefix("val_")
    points = []
    for row in rows[1:]:
        if len(row) != 6:
            continue
        k, size, val, test, tuned_val, tuned_test = row
        points.append(SweepPoint(int(k), int(size), float(val), float(test),
                                 float(tuned_val) if tuned_val else None, float(tuned_test) if tuned_test else None,
                                 metric))
    return points


def sweep(
    clusterer: Clusterer,
    split: Split,
    test: tuple[torch.Tensor, torch.Tensor],
    ks: list[int],
    finetune: Callable[[KANModel], KANModel] | None = None,
    on_point: Callable[[SweepPoint], None] | None = None,
) -> list[SweepPoint]:
    """Cluster every layer at each k (capped at the layer's edge count); the metric and size, optionally
    fine-tuned."""
    points = []
    counts = clusterer.model.config.num_edges
    metric = metric_name(clusterer.model.config.task)
    for k in ks:
        model = clusterer.build([min(k, n) for n in counts])
        val, tested = evaluate(model, split.val_x, split.val_y).headline, evaluate(model, *test).headline
        tuned_val = tuned_test = None
        if finetune is not None:
            model = finetune(model)
            tuned_val = evaluate(model, split.val_x, split.val_y).headline
            tuned_test = evaluate(model, *test).headline
        point = SweepPoint(k, payload_bytes(model), val, tested, tuned_val, tuned_test, metric)
        points.append(point)
        if on_point is not None:
            on_point(point)
    return points


def choose_ks(
    clusterer: Clusterer,
    split: Split,
    max_drop: float,
    candidates: tuple[int, ...] = (2, 4, 8, 16, 32, 64, 128, 256),
    on_trial: Callable[[list[int], Metrics], None] | None = None,
    score: Callable[[list[int]], Metrics] | None = None,
    base: Metrics | None = None,
) -> tuple[list[int], Metrics, Metrics]:
    """Per-layer k minimising size with the validation metric within budget of the source model (`max_drop`:
    accuracy points for classification, a relative MSE increase for regression; `tasks.within_budget`).

    Greedy, largest layers first (their indices dominate the size): each layer takes the smallest candidate k
    that keeps the whole model within budget, the layers not yet visited staying at their largest candidate.
    `score` gives a trial's validation metrics (default: the clustered model as K-means leaves it; `compress`
    fine-tunes it first); the budget is counted from `base` (default: the clusterer's model on the validation
    split). Returns (ks, source validation metrics, the chosen ks' validation metrics).
    """
    if max_drop < 0:
        raise ConfigError("--max-drop must be >= 0")

    def clustered_only(ks: list[int]) -> Metrics:
        return evaluate(clusterer.build(ks), split.val_x, split.val_y)

    base = base if base is not None else evaluate(clusterer.model, split.val_x, split.val_y)
    counts = clusterer.model.config.num_edges
    options = [[k for k in candidates if k <= n] or [n] for n in counts]
    order = sorted(range(len(counts)), key=lambda l: -counts[l])
    ks, result = smallest_per_layer(options, order, score or clustered_only,
                                    lambda trial: within_budget(trial, base, max_drop), on_trial)
    return ks, base, result


def smallest_per_layer(
    options: list[list[int]],
    order: list[int],
    score: Callable[[list[int]], Metrics],
    accept: Callable[[Metrics], bool],
    on_trial: Callable[[list[int], Metrics], None] | None = None,
) -> tuple[list[int], Metrics]:
    """Greedy per-layer sizes: every layer starts at its largest option (`options[l]`, ascending); then, layer by
    layer in `order`, each takes its smallest option whose whole-model `score` is accepted, the others staying as
    they are. Returns the sizes and their score (the start's, when nothing smaller is accepted)."""
    sizes = [opts[-1] for opts in options]
    result = score(sizes)
    if on_trial is not None:
        on_trial(sizes, result)
    for layer in order:
        for size in options[layer]:
            if size >= sizes[layer]:
                break
            trial = sizes[:layer] + [size] + sizes[layer + 1 :]
            trial_result = score(trial)
            if on_trial is not None:
                on_trial(trial, trial_result)
            if accept(trial_result):
                sizes, result = trial, trial_result
                break
    return sizes, result
