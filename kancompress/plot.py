"""Plots of size-accuracy sweeps (matplotlib, imported only when a plot is asked for)."""

from __future__ import annotations

import io
from collections.abc import Sequence

from kancompress.errors import ConfigError
from kancompress.search import SweepPoint


def require_matplotlib() -> None:
    """Raise a one-line error naming the extra when matplotlib is missing (checked before long work starts)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigError('plotting needs matplotlib: pip install "kancompress[plot]" (or pip install matplotlib)') from None


def sweep_png(series: dict[str, Sequence[SweepPoint]], title: str, dense_bytes: int | None = None) -> bytes:
    """PNG bytes: the test metric (accuracy in %, or MSE on a log scale) against checkpoint size (KB, log scale),
    one line per series, k labelled."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(figsize=(7, 4.5))
    metric = next((p.metric for points in series.values() for p in points), "accuracy")
    factor = 100.0 if metric == "accuracy" else 1.0
    for label, points in series.items():
        sizes = [p.bytes / 1000 for p in points]
        axes.plot(sizes, [factor * p.test for p in points], "o-", label=f"{label} (clustered)")
        tuned = [(size, p.finetuned_test) for size, p in zip(sizes, points) if p.finetuned_test is not None]
        if tuned:
            axes.plot([s for s, _ in tuned], [factor * v for _, v in tuned], "s--", label=f"{label} + fine-tune")
        for p, size in zip(points, sizes):
            axes.annotate(f"k={p.k}", (size, factor * p.test), textcoords="offset points", xytext=(3, -10),
                          fontsize=7)
    if dense_bytes:
        axes.axvline(dense_bytes / 1000, color="grey", linestyle=":", label="dense KAN size")
    axes.set_xscale("log")
    axes.set_xlabel("checkpoint tensors (KB, 1 KB = 1000 bytes)")
    axes.set_ylabel("test accuracy (%)" if metric == "accuracy" else "test MSE")
    if metric != "accuracy":
        axes.set_yscale("log")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    plt.close(figure)
    return buffer.getvalue()
