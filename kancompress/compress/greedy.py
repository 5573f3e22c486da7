"""The thorough search (`compress --search thorough`): per-layer k chosen greedily, every trial judged by its
validation metric (after fine-tuning, in `compress`)."""

from __future__ import annotations

from collections.abc import Callable

from kancompress.cluster import Clusterer, candidate_ks
from kancompress.data import Split
from kancompress.errors import ConfigError
from kancompress.tasks import Metrics, within_budget
from kancompress.train import evaluate


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
    options = [candidate_ks(candidates, n) for n in counts]
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
