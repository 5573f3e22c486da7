"""Pass/fail gates for pipelines (CI): limits on a checkpoint's test metrics (`eval`) or its size (`inspect`),
checked here and reported by the CLI with its own exit code (`GATE_EXIT`).

Accuracy limits are read unambiguously: "93%" or a number above 1 is percent points, a number up to 1 a fraction
(`--min-accuracy 0.93` = `--min-accuracy 93` = `--min-accuracy 93%`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from kancompress.errors import ConfigError

GATE_EXIT = 3
"""The exit status of a command whose gate failed (1 stays an error, 2 a usage error, 130 an interruption)."""


@dataclass(frozen=True)
class Check:
    """One limit: `name` measured `value` against `limit` (`at_least` True: value >= limit passes)."""

    option: str
    name: str
    value: float | None
    limit: float
    at_least: bool
    unit: str = ""

    @property
    def passed(self) -> bool:
        if self.value is None or math.isnan(self.value):
            return False
        return self.value >= self.limit if self.at_least else self.value <= self.limit

    def describe(self) -> str:
        sign = ">=" if self.at_least else "<="
        measured = "not measured" if self.value is None else f"{self.value:.6g}{self.unit}"
        return f"{self.name} {measured}, limit {sign} {self.limit:.6g}{self.unit} ({self.option})"

    def to_json(self) -> dict[str, Any]:
        return {"option": self.option, "name": self.name, "value": self.value, "limit": self.limit,
                "at_least": self.at_least, "passed": self.passed}


def accuracy_limit(text: str) -> float:
    """A --min-accuracy value as a fraction: "93%" and numbers above 1 are percent points, others fractions."""
    raw = text.strip()
    try:
        value = float(raw.removesuffix("%"))
    except ValueError:
        raise ConfigError(f"--min-accuracy {text!r} must be a number: a fraction (0.93) or points (93, 93%)") from None
    percent = raw.endswith("%") or value > 1
    fraction = value / 100 if percent else value
    if not 0 <= fraction <= 1:
        raise ConfigError(f"--min-accuracy {text!r} is outside 0..100 %")
    return fraction


def metric_checks(metrics: dict[str, Any], min_accuracy: str | None = None, max_mse: float | None = None,
                  min_r2: float | None = None, max_loss: float | None = None) -> list[Check]:
    """The checks asked for, against `eval --json`'s metrics; a limit for the other task is refused."""
    checks: list[Check] = []
    task = metrics.get("task")
    if min_accuracy is not None:
        if task != "classification":
            raise ConfigError(f"--min-accuracy is for classification models; this one is a {task} model (use "
                              "--max-mse or --min-r2)")
        accuracy = metrics.get("accuracy")
        checks.append(Check("--min-accuracy", "accuracy", None if accuracy is None else 100 * accuracy,
                            100 * accuracy_limit(min_accuracy), True, " %"))
    for option, name, limit, at_least in (("--max-mse", "mse", max_mse, False), ("--min-r2", "r2", min_r2, True)):
        if limit is not None:
            if task != "regression":
                raise ConfigError(f"{option} is for regression models; this one is a {task} model (use "
                                  "--min-accuracy)")
            checks.append(Check(option, name, metrics.get(name), limit, at_least))
    if max_loss is not None:
        checks.append(Check("--max-loss", "loss", metrics.get("loss"), max_loss, False))
    return checks


def size_checks(report: dict[str, Any], max_bytes: int | None = None,
                max_bits_per_edge: float | None = None) -> list[Check]:
    """The checks asked for, against `inspect --json`'s storage report: the file's size on disk, and its bits per
    edge all-in (file bytes · 8 / edges)."""
    checks: list[Check] = []
    if max_bytes is not None:
        checks.append(Check("--max-bytes", "file size", float(report["file_bytes"]), float(max_bytes), False, " B"))
    if max_bits_per_edge is not None:
        edges = sum(layer["n"] for layer in report["layers"])
        checks.append(Check("--max-bits-per-edge", "bits per edge (all-in)", 8 * report["file_bytes"] / edges,
                            max_bits_per_edge, False))
    return checks


def gate_json(checks: list[Check]) -> dict[str, Any]:
    """What `--json` output gains when gates were asked for."""
    return {"passed": all(check.passed for check in checks), "gates": [check.to_json() for check in checks]}
