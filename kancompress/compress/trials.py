"""What `compress` reports while it works: every configuration it tried (`CompressTrial`) and where it stands
(`Progress`: stage, trial i of about n, an estimate of the time left)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kancompress.tasks import Metrics, rank


@dataclass(frozen=True)
class CompressTrial:
    """One configuration `compress` tried: the method ("cluster": the source's own vectors; "distill": those of a
    MetaKAN distilled from it; with the clustering variant), per-layer k, fine-tuning rate and length (`epochs`, or
    for the fast search's trials `steps`, the most optimizer steps, with `epochs` 0), tensor bytes, the codebook
    dtype, and the validation metrics after that fine-tuning. The distillation itself is a trial with no k."""

    method: str
    ks: tuple[int, ...]
    lr: float
    epochs: int
    bytes: int
    val: Metrics
    within: bool
    codebook_dtype: str | None = None  # None: not a clustered model (distillation, shared grids)
    steps: int = 0

    @property
    def length(self) -> str:
        """The fine-tuning length as people read it: "400 steps" or "2 epochs"."""
        return f"{self.steps} steps" if self.steps else f"{self.epochs} epochs"

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "k": list(self.ks), "lr": self.lr, "epochs": self.epochs,
                **({"steps": self.steps} if self.steps else {}), "bytes": self.bytes,
                **({"codebook_dtype": self.codebook_dtype} if self.codebook_dtype else {}),
                "val": self.val.to_json(), "within_budget": self.within}


def best_trial(trials: Iterable[CompressTrial]) -> CompressTrial:
    """The trial with the best validation metrics (`tasks.rank`); the first of equals."""
    return min(trials, key=lambda trial: rank(trial.val))


@dataclass(frozen=True)
class Progress:
    """Where a compress run stands: `stage` (e.g. "clustering", "proxy", "verify", "final"), the method it works
    on, `done` of about `total` units of work (trials; the total is an estimate until the search has its
    candidates), seconds so far and an estimate of those left (None before the first unit is done)."""

    stage: str
    method: str
    done: int
    total: int
    elapsed_s: float
    left_s: float | None

    def left_text(self) -> str:
        return f"about {_clock(self.left_s)} left" if self.left_s is not None else "estimating time left"

    def describe(self) -> str:
        where = f"{self.done} of ~{self.total}; {_clock(self.elapsed_s)}, {self.left_text()}"
        return f"{self.method}: {self.stage} ({where})"


def _clock(seconds: float) -> str:
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes}:{rest:02d}"


class ProgressMeter:
    """Counts units of work against a running estimate of the total and reports `Progress` to a callback."""

    def __init__(self, on_progress: Callable[[Progress], None] | None, total: int):
        self.on_progress, self.total, self.done = on_progress, max(total, 1), 0
        self.started = time.monotonic()

    def plan(self, more: int) -> None:
        """Add `more` expected units to the total (a search that now knows its candidates)."""
        self.total += more

    def step(self, stage: str, method: str, finished: int = 0) -> None:
        """Report `stage` of `method`; `finished` units were completed since the last report."""
        self.done += finished
        self.total = max(self.total, self.done + 1)
        if self.on_progress is None:
            return
        elapsed = time.monotonic() - self.started
        left = elapsed / self.done * (self.total - self.done) if self.done else None
        self.on_progress(Progress(stage, method, self.done, self.total, elapsed, left))
