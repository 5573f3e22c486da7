"""The paper's Table 2 layout (its 4-layer conv KAN) on Fashion-MNIST 28×28, at k = 256 and smaller k, so the
contrast between plain clustering and MetaCluster has room to show (issue 17).

    python examples/table2_fashion_mnist.py --device cuda                       # all 60,000 images, one GPU
    python examples/table2_fashion_mnist.py --models kan --ks 256,16 --train-subset 6000 --epochs 3   # 43 min, 2 cores

Per basis (KANConv, FastKANConv, GramKANConv; channels 32-64-128-256, strides 1-2-2-1, the paper's Tables 6-7
rates): a plain and a Meta model trained for at most --epochs epochs (early stopping on the validation split), then
for every k of --ks: Cluster and MetaCluster (K-means per layer, float32 codebooks, packed indices), each
fine-tuned --finetune-epochs epochs at the paper's lr_c. Memory is the checkpoint's tensor bytes (`inspect`'s
total, 1 KB = 1000 bytes); accuracies are on the 10,000 test images, with the validation accuracy beside them.
Results are written after every row (a cut-off run keeps what it finished) into --out as
table2-fashion-mnist.{md,csv,json} (table2-fashion-mnist-subsetN.* with --train-subset), and into examples/results/
with --write-results. Needs Fashion-MNIST (apt-get install dataset-fashion-mnist, or --data-dir with the four IDX
files).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import _stamp as stamp  # examples/_stamp.py (scripts run with examples/ on sys.path)

import torch

from kancompress import api
from kancompress.config import TrainConfig
from kancompress.data import Dataset, split_validation
from kancompress.format.checkpoint import payload_bytes
from kancompress.models import KANModel
from kancompress.options import ClusterConfig, FinetuneOptions
from kancompress.train import evaluate

RESULTS = Path(__file__).resolve().parent / "results"
NAMES = {"kan": "KANConv", "fastkan": "FastKANConv", "gramkan": "GramKANConv"}
STEM = "table2-fashion-mnist"


def accuracy(model: KANModel, x: torch.Tensor, y: torch.Tensor, device: str) -> float:
    """Accuracy in % of `model` (moved to `device`, in eval mode) on (x, y)."""
    model = model.to(api.resolve_device(device)).eval()
    with torch.no_grad():
        return 100 * float(evaluate(model, x, y).accuracy or 0)


def run_basis(model: str, data: Dataset, args: argparse.Namespace, emit: Any) -> None:
    train = TrainConfig(epochs=args.epochs, patience=args.patience, batch_size=args.batch_size, seed=args.seed)
    tune = FinetuneOptions(train=TrainConfig(epochs=args.finetune_epochs, patience=0, batch_size=args.batch_size,
                                             seed=args.seed), device=args.device)
    label = NAMES[model]
    for meta in (False, True):
        started = time.monotonic()
        options = api.TrainOptions.build(model=model, meta=meta, conv=True, dataset="fashion-mnist",
                                         train=train, device=args.device)
        source = api.train(options, data).model
        name = f"Meta{label}" if meta else label
        emit(model, name, None, "trained", source, time.monotonic() - started)
        for k in args.ks:
            started = time.monotonic()
            clustered, _ = api.cluster(source, ClusterConfig(k=k, seed=args.seed, device=args.device))
            name = f"MetaCluster{label}" if meta else f"Cluster{label}"
            emit(model, name, k, "clustered", clustered, time.monotonic() - started)
            started = time.monotonic()
            tuned = api.finetune(clustered, tune, data).model
            emit(model, f"{name} + fine-tune", k, "fine-tuned", tuned, time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="kan,fastkan,gramkan")
    parser.add_argument("--ks", default="256,64,16", help="codebook sizes, comma-separated")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--train-subset", type=int, default=0, help="train on the first N training images (0: all)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/table2"), help="folder for the results")
    parser.add_argument("--write-results", action="store_true", help="also write them into examples/results/")
    args = parser.parse_args()
    args.ks = [int(k) for k in args.ks.split(",")]
    data = api.load_data("fashion-mnist", data_dir=args.data_dir)
    if args.train_subset:
        data = dataclasses.replace(data, train_x=data.train_x[: args.train_subset],
                                   train_y=data.train_y[: args.train_subset])
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python examples/table2_fashion_mnist.py " + " ".join(
        a for a in sys.argv[1:] if a != "--write-results")
    stem = STEM + (f"-subset{args.train_subset}" if args.train_subset else "")  # a subset run keeps its own file
    split = split_validation(data, seed=args.seed)  # the validation part training held out
    rows: list[dict[str, Any]] = []
    start = time.monotonic()

    def emit(basis: str, name: str, k: int | None, stage: str, model: KANModel, seconds: float) -> None:
        val = accuracy(model, split.val_x, split.val_y, args.device)
        test = accuracy(model, data.test_x, data.test_y, args.device)
        rows.append({"basis": basis, "model": name, "k": k, "stage": stage,
                     "memory_kb": round(payload_bytes(model) / 1000, 2), "val": round(val, 2),
                     "test": round(test, 2), "seconds": round(seconds, 1)})
        print(f"{name:32} k={k or '-':>4}  {rows[-1]['memory_kb']:>10,.2f} KB  val {val:6.2f}  test {test:6.2f}"
              f"  {seconds:6.1f} s", flush=True)
        for folder in [args.out] + ([RESULTS] if args.write_results else []):
            write(folder / stem, rows, args, command, time.monotonic() - start, len(data.train_x))

    for model in args.models.split(","):
        run_basis(model, data, args, emit)


def write(stem: Path, rows: list[dict[str, Any]], args: argparse.Namespace, command: str, wall: float,
          train_images: int) -> None:
    commit = stamp.commit()
    device = str(api.resolve_device(args.device))
    if device.startswith("cuda"):
        device = torch.cuda.get_device_name()
    with open(f"{stem}.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    meta = {"command": command, "commit": commit, "torch": torch.__version__, "python": platform.python_version(),
            "cores": os.cpu_count(), "device": device, "train_images": train_images, "seed": args.seed,
            "epochs": args.epochs, "patience": args.patience, "finetune_epochs": args.finetune_epochs,
            "batch_size": args.batch_size, "ks": args.ks, "wall_time_s": round(wall, 1), "rows": rows}
    Path(f"{stem}.json").write_text(json.dumps(meta, indent=1) + "\n")
    lines = ["# Table 2 layout (4-layer conv KANs) on Fashion-MNIST 28×28", "",
             f"`{command}` at commit {commit}, torch {torch.__version__}, on {device} ({os.cpu_count()} CPU cores) "
             f"— seed {args.seed}, {train_images:,} training images (a tenth held out for validation), at most "
             f"{args.epochs} epochs (patience {args.patience}), batch size {args.batch_size}, "
             f"{args.finetune_epochs} fine-tuning epoch(s) at the paper's lr_c; wall time {wall / 60:.1f} min. "
             "Memory: the checkpoint's tensor bytes (float32 codebooks, packed indices), 1 KB = 1000 bytes. "
             "Accuracy on the 10,000 test images; validation accuracy beside it.", "",
             "| model | k | memory (KB) | val (%) | test (%) | time (s) |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['model']} | {r['k'] or '—'} | {r['memory_kb']:,.2f} | {r['val']:.2f} | {r['test']:.2f} | "
              f"{r['seconds']:.0f} |" for r in rows]
    Path(f"{stem}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
