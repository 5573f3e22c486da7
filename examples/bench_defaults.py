"""`train`'s defaults on small tables: the datasets scikit-learn ships, each written as a CSV and read the way a user
would (`--data FILE.csv --target label`: a seeded 80/20 test split, then 10 % of the rest for validation), trained
with nothing but `--hidden 16`, KAN and MetaKAN (and 5 Feynman equations, 2,000 samples each, the same way):
with `--epochs 50` (one optimizer step an epoch on 150 rows) and with the defaults (a step floor of 2000 steps for
classification and 10000 for regression, `config.DEFAULT_MIN_STEPS`; regression rates 10x the paper's for the
B-spline KAN), against scikit-learn's MLPClassifier/MLPRegressor and HistGradientBoosting* with their defaults on
the same training rows; 3 seeds.

    python examples/bench_defaults.py            # prints the table; --write also writes examples/results/bench_defaults.md

Classification: test accuracy (%); regression (diabetes, Feynman): test MSE in the target's units. Means over seeds.

The defaults are also held against a small grid around them, chosen on the validation split (issue 29's target:
within 1 point, or 10 % of the MSE, of the grid's choice): for each dataset, seed and model, every default learning
rate scaled by 1/3, 1 and 3 (`--lr`, and `--lr-meta`/`--lr-embed` for MetaKAN) × `--min-steps` of the task's floor
and 2.5 times it (2000 and 5000, or 10000 and 25000); the run with the best validation metric (the defaults are
one of the six) gives the grid's test number.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
import platform
import warnings
import tempfile
import time
from pathlib import Path

import _stamp as stamp  # examples/_stamp.py (scripts run with examples/ on sys.path)

import numpy as np
import pandas as pd
import torch
from sklearn import datasets
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.neural_network import MLPClassifier, MLPRegressor

from kancompress import api
from kancompress.cli import StepFloors, step_floors
from kancompress.config import DEFAULT_MIN_STEPS, TrainConfig
from kancompress.optim import default_learning_rates
from kancompress.tasks import rank

RESULTS = Path(__file__).resolve().parent / "results"
LR_SCALES = (1 / 3, 1.0, 3.0)
GRID_STEPS = (1.0, 2.5)  # times the task's step floor
GRID_LABEL = "grid chosen on validation"
DEFAULTS_LABEL = "defaults"
SETS = {"iris": datasets.load_iris, "wine": datasets.load_wine, "breast_cancer": datasets.load_breast_cancer,
        "digits": datasets.load_digits, "diabetes": datasets.load_diabetes}
FEYNMAN = ("I.6.20a", "I.8.4", "I.12.5", "I.13.4", "I.16.6")  # 2,000 samples each (kancompress.feynman), as a CSV


def table(name: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(inputs, target, task) of a scikit-learn dataset or a Feynman equation ("feynman:I.8.4")."""
    if name.startswith("feynman:"):
        from kancompress.feynman import feynman_dataset

        train_x, train_y, test_x, test_y = feynman_dataset(name.partition(":")[2], 1000, 1000)
        return np.concatenate([train_x, test_x]), np.concatenate([train_y, test_y]).reshape(-1), "regression"
    bunch = SETS[name]()
    return bunch.data, bunch.target, "regression" if name == "diabetes" else "classification"  # whole-number targets


def score(task: str, predicted: np.ndarray, y: np.ndarray) -> float:
    if task == "classification":
        return 100.0 * float((predicted == y).mean())
    return float(((predicted.reshape(-1) - y.reshape(-1)) ** 2).mean())


def test_value(task: str, result: api.TrainResult) -> float:
    return float(result.test.accuracy * 100 if task == "classification" else result.test.mse)  # type: ignore[operator]


def trained(path: Path, task: str, meta: bool, seed: int, floors: StepFloors,
            rates: tuple[float | None, float | None, float | None] = (None, None, None)) -> api.TrainResult:
    """`train --data PATH --target label --hidden 16` (with --meta), as a user would run it, with these step
    floors and rates (None: the default)."""
    lr, lr_meta, lr_embed = rates
    return api.train(api.TrainOptions.build(data_file=str(path), target="label", task=task, hidden=(16,), meta=meta,
                                            lr=lr, lr_meta=lr_meta, lr_embed=lr_embed,
                                            train=TrainConfig(seed=seed, **floors)))


def grid_choice(path: Path, task: str, meta: bool, seed: int, defaults: api.TrainResult) -> tuple[float, str]:
    """The test value of the grid's run with the best validation metric (module doc), and its setting; `defaults`
    is the run at the defaults (lr ×1, the task's step floor), the first of equals."""
    assert defaults.history.best_val is not None
    base = default_learning_rates("kan", False, meta, task=task)
    best = rank(defaults.history.best_val), test_value(task, defaults), "defaults"
    for scale in LR_SCALES:
        for times in GRID_STEPS:
            if scale == 1.0 and times == 1.0:
                continue
            steps = int(times * DEFAULT_MIN_STEPS[task])
            lr, lr_meta, lr_embed = (None if rate is None else rate * scale for rate in base)
            result = trained(path, task, meta, seed, step_floors(steps, False), (lr, lr_meta, lr_embed))
            assert result.history.best_val is not None
            key = rank(result.history.best_val)
            if key < best[0]:
                best = key, test_value(task, result), f"lr ×{scale:.2g}, {steps} steps"
    return best[1], best[2]


def grid_summary(rows: list[tuple[str, str, str, float, float]], chosen: dict[tuple[str, str], list[str]]) -> list[str]:
    """Defaults against the validation-chosen grid, per dataset and model: the gap and whether it meets the target
    (within 1 point of accuracy, or within 10 % of the grid's MSE)."""
    means = {(name, variant): mean for name, _, variant, mean, _ in rows}
    lines = ["", "Defaults against the grid around them chosen on validation (module doc); "
             "target: within 1 point of accuracy, or an MSE at most 1.1× the grid's.", "",
             "| dataset | model | defaults | grid | gap | target met | grid's choices (per seed) |",
             "| --- | --- | ---: | ---: | ---: | --- | --- |"]
    for (name, kind), choices in chosen.items():
        task = next(task for row_name, task, *_ in rows if row_name == name)
        default = means[(name, f"{kind}, {DEFAULTS_LABEL}")]
        grid = means[(name, f"{kind}, {GRID_LABEL}")]
        if task == "classification":
            gap, met, shown = f"{grid - default:+.2f} points", default >= grid - 1.0, (f"{default:.2f}", f"{grid:.2f}")
        else:
            gap, met, shown = f"×{default / grid:.2f}", default <= 1.1 * grid, (f"{default:.4g}", f"{grid:.4g}")
        lines.append(f"| {name} | {kind} | {shown[0]} | {shown[1]} | {gap} | {'yes' if met else 'no'} | "
                     f"{'; '.join(choices)} |")
    return lines


def run_dataset(name: str, seeds: int, grid: bool
                ) -> tuple[list[tuple[str, str, str, float, float]], dict[tuple[str, str], list[str]]]:
    """One dataset's rows (name, task, variant, mean, std) and the grid's choices per model, in a worker process."""
    torch.set_num_threads(1)  # tiny models: one thread each, a dataset per core
    warnings.filterwarnings("ignore", module="sklearn")  # convergence notes of the baselines' defaults
    inputs, target, task = table(name)
    frame = pd.DataFrame(inputs, columns=[f"x{i}" for i in range(inputs.shape[1])])
    frame["label"] = target
    results: dict[str, list[float]] = {}
    chosen: dict[tuple[str, str], list[str]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / f"{name.replace(':', '-')}.csv"
        frame.to_csv(path, index=False)
        data = api.load_data(None, path, "label", task)
        for seed in range(seeds):
            for meta in (False, True):
                kind = "MetaKAN" if meta else "KAN"
                for label, floors in (("50 epochs", step_floors(None, True)),
                                      (DEFAULTS_LABEL, step_floors(None, False))):
                    result = trained(path, task, meta, seed, floors)
                    results.setdefault(f"{kind}, {label}", []).append(test_value(task, result))
                if grid:  # `result`: the defaults' run, one of the grid's
                    value, choice = grid_choice(path, task, meta, seed, result)
                    results.setdefault(f"{kind}, {GRID_LABEL}", []).append(value)
                    chosen.setdefault((name, kind), []).append(choice)
            x, y = data.train_x.numpy(), data.train_y.numpy()
            tx, ty = data.test_x.numpy(), data.test_y.numpy()
            baselines = ((MLPClassifier(random_state=seed, max_iter=1000), HistGradientBoostingClassifier(random_state=seed))
                         if task == "classification" else
                         (MLPRegressor(random_state=seed, max_iter=2000), HistGradientBoostingRegressor(random_state=seed)))
            for model in baselines:
                model.fit(x, y.reshape(-1) if y.ndim > 1 and y.shape[1] == 1 else y)
                results.setdefault(type(model).__name__, []).append(score(task, model.predict(tx), ty))
    rows = [(name, task, variant, float(np.mean(values)), float(np.std(values))) for variant, values in results.items()]
    return rows, chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--datasets", default=",".join([*SETS, *(f"feynman:{e}" for e in FEYNMAN)]),
                        help="comma-separated (a partial run prints its table; --write refuses it)")
    parser.add_argument("--jobs", type=int, default=2, help="datasets run at once (a process each, one thread)")
    parser.add_argument("--grid", action=argparse.BooleanOptionalAction, default=True,
                        help="also the validation-chosen grid (module doc; 6 more runs per dataset, seed and model)")
    args = parser.parse_args()
    names = [name for name in args.datasets.split(",") if name]
    everything = [*SETS, *(f"feynman:{equation}" for equation in FEYNMAN)]
    if any(name not in everything for name in names):
        raise SystemExit(f"unknown dataset in {args.datasets!r}; choose from: {', '.join(everything)}")
    if args.write and (names != everything or args.seeds != 3):
        raise SystemExit("--write publishes the whole table: run every dataset with 3 seeds")
    started = time.monotonic()
    rows: list[tuple[str, str, str, float, float]] = []
    chosen: dict[tuple[str, str], list[str]] = {}
    with ProcessPoolExecutor(args.jobs) as pool:  # one dataset per process, one thread each
        for dataset_rows, dataset_chosen in pool.map(run_dataset, names, [args.seeds] * len(names),
                                                     [args.grid] * len(names)):
            rows += dataset_rows
            chosen |= dataset_chosen
    unit = {"classification": "accuracy %", "regression": "MSE"}
    lines = ["# train's defaults on small tables (scikit-learn datasets as CSV, --hidden 16, 3 seeds)", "",
             f"`python examples/bench_defaults.py --write` at commit {stamp.commit()}, torch {torch.__version__}, "
             f"Python {platform.python_version()}, {args.jobs} processes of one thread, "
             f"{(time.monotonic() - started) / 60:.1f} min wall. Test metric, "
             "mean ± std over seeds; baselines with scikit-learn's defaults on the same training rows (the "
             "validation rows included).", "", "| dataset | metric | variant | mean | std |",
             "| --- | --- | --- | ---: | ---: |"]
    lines += [f"| {name} | {unit[task]} | {variant} | {mean:.4g} | {std:.2g} |" if task == "regression" else
              f"| {name} | {unit[task]} | {variant} | {mean:.2f} | {std:.2f} |" for name, task, variant, mean, std in rows]
    if args.grid:
        lines += grid_summary(rows, chosen)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        (RESULTS / "bench_defaults.md").write_text(text)


if __name__ == "__main__":
    main()
