"""`sweep`: the size and metric of a model clustered at each codebook size (compress's search is `compress/`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch

from kancompress.cluster import Clusterer
from kancompress.format.checkpoint import payload_bytes
from kancompress.data import Split
from kancompress.models import KANModel
from kancompress.tasks import metric_name
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
