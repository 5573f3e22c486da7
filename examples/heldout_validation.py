"""Does `compress` fit its validation split? Compress each seed's Fashion-MNIST MetaKAN choosing on half of the
validation split only, then measure the accuracy drop on that half, on the half it never saw, and on test.

    python examples/heldout_validation.py                    # seeds 0 1 2: about 4 min on 2 cores (MetaKANs reused)
    python examples/heldout_validation.py --write-results    # also writes examples/results/heldout-validation.md

If the search and its early stopping fitted the validation images they chose on, the unseen half would lose more
than the seen half. The MetaKANs are `smallest_fashion_mnist.py`'s (same work folder, reused when this kancompress
version wrote them, else trained). Each seed's validation split is halved by a fixed permutation (seed 100 + seed);
`compress --max-drop 0.5` otherwise runs with its defaults. Needs Fashion-MNIST (apt-get install
dataset-fashion-mnist).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import _stamp as stamp  # examples/_stamp.py (scripts run with examples/ on sys.path)
from smallest_fashion_mnist import metakan, seed_options

import torch

from kancompress import api
from kancompress.compress.engine import compress_model
from kancompress.data import Dataset, Split, load_dataset
from kancompress.format.checkpoint import load_checkpoint
from kancompress.models import KANModel
from kancompress.train import evaluate

RESULTS = Path(__file__).resolve().parent / "results"


def accuracy(model: KANModel, x: torch.Tensor, y: torch.Tensor) -> float:
    return 100 * (evaluate(model, x, y).accuracy or 0.0)


def drops(data: Dataset, work: Path, seed: int, max_drop: float) -> dict[str, Any]:
    """Per part (seen half, unseen half, test): the source's accuracy minus the compressed model's."""
    source = load_checkpoint(metakan(work, seed))
    split = api.source_split(source, data)  # the validation split it was trained with
    n = split.val_x.shape[0]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(100 + seed))
    seen, unseen = order[: n // 2], order[n // 2:]
    half = Split(split.train_x, split.train_y, split.val_x[seen], split.val_y[seen])
    result = compress_model(source.model, half, api.CompressOptions(max_drop=max_drop), torch.device("cpu"))
    parts = {"seen": (split.val_x[seen], split.val_y[seen]), "unseen": (split.val_x[unseen], split.val_y[unseen]),
             "test": (data.test_x, data.test_y)}
    row: dict[str, Any] = {"seed": seed, "k": list(result.chosen.ks)}
    for name, (x, y) in parts.items():
        row[name] = accuracy(source.model, x, y) - accuracy(result.model, x, y)
    print(f"seed {seed}: k {row['k']}, drop on the seen half {row['seen']:+.2f}, unseen half {row['unseen']:+.2f}, "
          f"test {row['test']:+.2f} points", flush=True)
    return row


def main() -> None:
    args = seed_options(argparse.ArgumentParser(description=__doc__.splitlines()[0])).parse_args()
    torch.set_num_threads(2)
    args.workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    data = load_dataset("fashion-mnist")
    rows = [drops(data, args.workdir, seed, args.max_drop) for seed in args.seeds]
    lines = [
        "# Does compress fit its validation split? Drops on the half it chose on, the half it never saw, and test",
        "",
        f"`python examples/heldout_validation.py` at commit {stamp.commit()}, torch {torch.__version__}, Python "
        f"{platform.python_version()}, 2 threads; {(time.monotonic() - started) / 60:.0f} min wall. "
        f"`compress --max-drop {args.max_drop:g}` (defaults) of each seed's B-spline MetaKAN 784-32-10 "
        "(`smallest_fashion_mnist.py`'s), choosing on half of its validation split (3,000 images); drops in "
        "accuracy points, positive = lost.",
        "",
        "| seed | k per layer | drop, seen half | drop, unseen half | drop, test |",
        "| ---: | --- | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(f"| {row['seed']} | {row['k']} | {row['seen']:+.2f} | {row['unseen']:+.2f} | {row['test']:+.2f} |")
    means = {name: statistics.mean(row[name] for row in rows) for name in ("seen", "unseen", "test")}
    lines += ["", f"Means: seen half {means['seen']:+.2f}, unseen half {means['unseen']:+.2f}, test "
              f"{means['test']:+.2f} points."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write_results:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "heldout-validation.md").write_text(text)
        print(f"wrote {RESULTS / 'heldout-validation.md'}")


if __name__ == "__main__":
    main()
