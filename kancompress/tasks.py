"""What a model is trained for: its loss, its metrics, which result is better, and what a metric budget means.

- classification: cross-entropy; accuracy (fraction) and mean cross-entropy. Better = higher accuracy, then
  lower loss. A budget (`--max-drop P`) is P accuracy points below the reference.
- regression: mean squared error; MSE, RMSE and R² in the user's units (R² averaged over outputs, as
  scikit-learn's `r2_score`). The training loss is the MSE of standardised targets (divided by the model's stored
  target scale), so learning rates do not depend on the units. Better = lower MSE. A budget (`--max-drop R`) is a
  relative increase of the reference MSE: at most (1 + R)·MSE.

Metrics are computed from sums (`batch_sums`), so slices evaluated apart (batches, torchrun ranks) add up exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional as F

TASKS: tuple[str, ...] = ("classification", "regression")


@dataclass(frozen=True)
class Metrics:
    task: str
    loss: float  # mean cross-entropy, or mean squared error of standardised targets
    n: int
    accuracy: float | None = None  # classification
    mse: float | None = None  # regression, in the targets' units
    r2: float | None = None  # regression

    @property
    def rmse(self) -> float | None:
        return math.sqrt(self.mse) if self.mse is not None else None

    @property
    def headline(self) -> float:
        """The number reports lead with: accuracy, or MSE."""
        value = self.accuracy if self.task == "classification" else self.mse
        assert value is not None
        return value

    def to_json(self) -> dict[str, float | int | str | None]:
        if self.task == "classification":
            return {"task": self.task, "accuracy": self.accuracy, "loss": self.loss, "n": self.n}
        return {"task": self.task, "mse": self.mse, "rmse": self.rmse, "r2": self.r2, "loss": self.loss, "n": self.n}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Metrics:
        """Inverse of `to_json` (the derived `rmse` is recomputed)."""
        return cls(data["task"], data["loss"], data["n"], data.get("accuracy"), data.get("mse"), data.get("r2"))

    def describe(self) -> str:
        """One line for people: accuracy in percent (JSON and the API keep fractions; `--max-drop` is in points of
        this percent)."""
        if self.task == "classification":
            assert self.accuracy is not None
            return f"accuracy {100 * self.accuracy:.2f} %  loss {self.loss:.4f}"
        return f"MSE {self.mse:.4g}  RMSE {self.rmse:.4g}  R² {self.r2:.4f}"


def metric_name(task: str) -> str:
    """The name of the headline metric: `accuracy` or `mse`."""
    return "accuracy" if task == "classification" else "mse"


def loss(task: str, outputs: torch.Tensor, targets: torch.Tensor, target_scale: torch.Tensor | None) -> torch.Tensor:
    """The training loss of a batch: cross-entropy of logits, or MSE of standardised outputs (N, T)."""
    if task == "classification":
        return F.cross_entropy(outputs, targets)
    scale = target_scale if target_scale is not None else torch.ones(1, device=outputs.device)
    return F.mse_loss(outputs / scale, targets / scale)


DISTILLATION_TEMPERATURE = 2.0
DISTILLATION_WEIGHT = 0.5


def distillation_loss(task: str, outputs: torch.Tensor, teacher_outputs: torch.Tensor, targets: torch.Tensor,
                      target_scale: torch.Tensor | None) -> torch.Tensor:
    """Knowledge distillation (Hinton et al. 2015): (1 - a)·task loss + a·T²·KL(softmax(t/T) ‖ softmax(s/T)) for
    classification, (1 - a)·task loss + a·MSE to the teacher's standardised outputs for regression; a = 0.5, T = 2."""
    weight = DISTILLATION_WEIGHT
    if task == "classification":
        temperature = DISTILLATION_TEMPERATURE
        pulled = F.kl_div(F.log_softmax(outputs / temperature, dim=1), F.log_softmax(teacher_outputs / temperature,
                          dim=1), reduction="batchmean", log_target=True) * temperature**2
    else:
        scale = target_scale if target_scale is not None else torch.ones(1, device=outputs.device)
        pulled = F.mse_loss(outputs / scale, teacher_outputs / scale)
    return (1 - weight) * loss(task, outputs, targets, target_scale) + weight * pulled


def batch_sums(task: str, outputs: torch.Tensor, targets: torch.Tensor, target_scale: torch.Tensor | None
               ) -> torch.Tensor:
    """Float64 sums from which `metrics_from_sums` computes the metrics of all batches together.

    classification: [n, correct, Σ cross-entropy]; regression with T outputs: [n, Σ standardised squared error,
    per output Σ squared error (T), Σ target (T), Σ target² (T)].
    """
    n = float(outputs.shape[0])
    if task == "classification":
        correct = float((outputs.argmax(dim=1) == targets).sum())
        total = float(F.cross_entropy(outputs, targets, reduction="sum"))
        return torch.tensor([n, correct, total], dtype=torch.float64)
    out, tgt = outputs.double(), targets.double()
    scale = target_scale.double() if target_scale is not None else torch.ones(1, dtype=torch.float64)
    standardised = float((((out - tgt) / scale) ** 2).mean(dim=1).sum()) if out.numel() else 0.0
    return torch.cat([torch.tensor([n, standardised], dtype=torch.float64),
                      ((out - tgt) ** 2).sum(dim=0), tgt.sum(dim=0), (tgt**2).sum(dim=0)])


def metrics_from_sums(task: str, sums: torch.Tensor) -> Metrics:
    n = int(round(float(sums[0])))
    count = max(n, 1)
    if task == "classification":
        return Metrics(task, float(sums[2]) / count, n, accuracy=round(float(sums[1])) / count)
    outputs = (sums.numel() - 2) // 3
    sse, total, total_sq = sums[2 : 2 + outputs], sums[2 + outputs : 2 + 2 * outputs], sums[2 + 2 * outputs :]
    variance = total_sq - total**2 / count  # per output Σ (t - mean)²
    r2 = 1 - sse / torch.where(variance > 0, variance, torch.ones_like(variance))
    r2 = torch.where(variance > 0, r2, torch.where(sse > 0, torch.zeros_like(r2), torch.ones_like(r2)))
    return Metrics(task, float(sums[1]) / count, n, mse=float(sse.sum()) / (count * max(outputs, 1)),
                   r2=float(r2.mean()))


def rank(metrics: Metrics) -> tuple[float, ...]:
    """A sort key of validation results, the better first: classification by accuracy, ties by loss; regression
    by loss."""
    if metrics.task == "classification":
        assert metrics.accuracy is not None
        return (-metrics.accuracy, metrics.loss)
    return (metrics.loss,)


def better(candidate: Metrics, best: Metrics | None) -> bool:
    """Is `candidate` a better validation result than `best` (early stopping keeps the best epoch)?"""
    return best is None or rank(candidate) < rank(best)


def within_budget(candidate: Metrics, reference: Metrics, budget: float) -> bool:
    """classification: at most `budget` accuracy points below; regression: MSE at most (1 + budget)·reference."""
    if candidate.task == "classification":
        assert candidate.accuracy is not None and reference.accuracy is not None
        return candidate.accuracy >= reference.accuracy - budget / 100.0
    assert candidate.mse is not None and reference.mse is not None
    return candidate.mse <= reference.mse * (1.0 + budget)


def budget_resolution_warning(reference: Metrics, budget: float) -> str | None:
    """A warning when the validation split cannot resolve a classification budget: one example is worth
    100/n accuracy points, and a budget under two examples' worth is mostly noise (None when it resolves)."""
    if reference.task != "classification" or reference.n <= 0:
        return None
    per_example = 100.0 / reference.n
    if per_example <= budget / 2:
        return None
    return (f"the validation split has {reference.n} examples, so one example is {per_example:.2g} accuracy points: "
            f"it cannot resolve --max-drop {budget:g}; the test drop may be larger (train with a larger "
            "--val-fraction, use more data, or allow a larger --max-drop)")
