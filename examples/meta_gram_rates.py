"""MetaGramKAN's learning rates on Fashion-MNIST 784-32-10 (issue 17): the paper's Table 5 rates (lr_h 1e-4,
lr_e 1e-3) against larger ones at the same 1:10 ratio, with plain GramKAN as the reference, chosen on validation.

    python examples/meta_gram_rates.py                 # 5 runs of at most 50 epochs; about 35 min on 2 cores
    python examples/meta_gram_rates.py --epochs 15     # the budget of the first measurement

Every run: seed 0, at most --epochs epochs, early stopping (patience 10) on the validation split; the table
reports the best validation accuracy (what a default is chosen on) and the test accuracy beside it. Writes
meta-gram-rates-fashion-mnist.md into --out (and examples/results/ with --write-results). Needs Fashion-MNIST
(apt-get install dataset-fashion-mnist).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import _stamp as stamp  # examples/_stamp.py (scripts run with examples/ on sys.path)

import torch

from kancompress import api
from kancompress.config import TrainConfig

RESULTS = Path(__file__).resolve().parent / "results"
RATES = ((1e-4, 1e-3), (3e-4, 3e-3), (1e-3, 1e-2), (3e-3, 3e-2))  # (lr_h, lr_e); the first is the paper's


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/meta-gram-rates"))
    parser.add_argument("--write-results", action="store_true", help="also write into examples/results/")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    data = api.load_data("fashion-mnist")
    train = TrainConfig(epochs=args.epochs, patience=args.patience, seed=args.seed)
    runs: list[tuple[str, float | None, float | None]] = [("GramKAN (plain)", None, None)]
    runs += [("MetaGramKAN", lr_h, lr_e) for lr_h, lr_e in RATES]
    rows = []
    start = time.monotonic()
    for name, lr_h, lr_e in runs:
        began = time.monotonic()
        options = api.TrainOptions.build(model="gramkan", meta=lr_h is not None, dataset="fashion-mnist",
                                         lr_meta=lr_h, lr_embed=lr_e, train=train)
        result = api.train(options, data)
        val = result.history.best_val
        assert val is not None and val.accuracy is not None and result.test.accuracy is not None
        rows.append((name, lr_h, lr_e, result.history.best_epoch, len(result.history.epochs), 100 * val.accuracy,
                     100 * result.test.accuracy, time.monotonic() - began))
        print(f"{name:16} lr_h {lr_h or '-'!s:>6} lr_e {lr_e or '-'!s:>6}  best epoch {rows[-1][3]:>2}  "
              f"val {rows[-1][5]:.2f}  test {rows[-1][6]:.2f}  {rows[-1][7]:.0f} s", flush=True)
    command = "python examples/meta_gram_rates.py " + " ".join(a for a in sys.argv[1:] if a != "--write-results")
    lines = ["# MetaGramKAN learning rates, Fashion-MNIST 784-32-10", "",
             f"`{command}` at commit {stamp.commit()}, torch {torch.__version__}, python "
             f"{platform.python_version()}, {os.cpu_count()} cores — seed {args.seed}, at most {args.epochs} epochs "
             f"(patience {args.patience}), batch size {train.batch_size}; the rest of the model (norms, biases) at "
             f"the basis's plain rate. Wall time {(time.monotonic() - start) / 60:.1f} min. The choice is made on "
             "validation accuracy; test accuracy is only reported.", "",
             "| model | lr_h | lr_e | best epoch / run | val (%) | test (%) | time (s) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, lr_h, lr_e, best, ran, val, test, seconds in rows:
        lines.append(f"| {name} | {lr_h or '—'} | {lr_e or '—'} | {best} / {ran} | {val:.2f} | {test:.2f} | "
                     f"{seconds:.0f} |")
    for folder in [args.out] + ([RESULTS] if args.write_results else []):
        (folder / "meta-gram-rates-fashion-mnist.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
