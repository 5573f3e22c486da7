"""`train`'s defaults on small tables: the datasets scikit-learn ships, each written as a CSV and read the way a user
would (`--data FILE.csv --target label`: a seeded 80/20 test split, then 10 % of the rest for validation), trained
with nothing but `--hidden 16`, KAN and MetaKAN (and 5 Feynman equations, 2,000 samples each, the same way),
before the step floor (50 epochs: one optimizer step each on 150 rows) and with it (`--min-steps 2000`, the
default when --epochs is not given), against scikit-learn's MLPClassifier/MLPRegressor and HistGradientBoosting*
with their defaults on the same training rows; 3 seeds.

    python examples/bench_defaults.py            # prints the table; --write also writes examples/results/bench_defaults.md

Classification: test accuracy (%); regression (diabetes, Feynman): test MSE in the target's units. Means over seeds.
"""

from __future__ import annotations

import argparse
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
from kancompress.cli import DEFAULT_MIN_STEPS, step_floors
from kancompress.config import TrainConfig

RESULTS = Path(__file__).resolve().parent / "results"
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    started = time.monotonic()
    warnings.filterwarnings("ignore", module="sklearn")  # convergence notes of the baselines' defaults
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in [*SETS, *(f"feynman:{equation}" for equation in FEYNMAN)]:
            inputs, target, task = table(name)
            frame = pd.DataFrame(inputs, columns=[f"x{i}" for i in range(inputs.shape[1])])
            frame["label"] = target
            path = Path(scratch) / f"{name.replace(':', '-')}.csv"
            frame.to_csv(path, index=False)
            data = api.load_data(None, path, "label", task)
            results: dict[str, list[float]] = {}
            for seed in range(args.seeds):
                for meta in (False, True):
                    for label, floors in (("50 epochs", step_floors(None, True)),
                                          (f"--min-steps {DEFAULT_MIN_STEPS}", step_floors(None, False))):
                        options = api.TrainOptions.build(data_file=str(path), target="label", task=task, hidden=(16,),
                                                         meta=meta, train=TrainConfig(seed=seed, **floors))
                        test = api.train(options).test
                        value = test.accuracy * 100 if task == "classification" else test.mse
                        results.setdefault(f"{'MetaKAN' if meta else 'KAN'}, {label}", []).append(float(value))
                x, y = data.train_x.numpy(), data.train_y.numpy()
                tx, ty = data.test_x.numpy(), data.test_y.numpy()
                baselines = ((MLPClassifier(random_state=seed, max_iter=1000), HistGradientBoostingClassifier(random_state=seed))
                             if task == "classification" else
                             (MLPRegressor(random_state=seed, max_iter=2000), HistGradientBoostingRegressor(random_state=seed)))
                for model in baselines:
                    model.fit(x, y.reshape(-1) if y.ndim > 1 and y.shape[1] == 1 else y)
                    results.setdefault(type(model).__name__, []).append(score(task, model.predict(tx), ty))
            for variant, values in results.items():
                rows.append((name, task, variant, float(np.mean(values)), float(np.std(values))))
    unit = {"classification": "accuracy %", "regression": "MSE"}
    lines = ["# train's defaults on small tables (scikit-learn datasets as CSV, --hidden 16, 3 seeds)", "",
             f"`python examples/bench_defaults.py --write` at commit {stamp.commit()}, torch {torch.__version__}, "
             f"Python {platform.python_version()}, {(time.monotonic() - started) / 60:.1f} min wall. Test metric, "
             "mean ± std over seeds; baselines with scikit-learn's defaults on the same training rows (the "
             "validation rows included).", "", "| dataset | metric | variant | mean | std |",
             "| --- | --- | --- | ---: | ---: |"]
    lines += [f"| {name} | {unit[task]} | {variant} | {mean:.4g} | {std:.2g} |" if task == "regression" else
              f"| {name} | {unit[task]} | {variant} | {mean:.2f} | {std:.2f} |" for name, task, variant, mean, std in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        (RESULTS / "bench_defaults.md").write_text(text)


if __name__ == "__main__":
    main()
