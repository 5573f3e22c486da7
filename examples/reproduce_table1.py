"""Reproduce the paper's Table 1 layout (fully-connected KANs), or with --conv Table 2's (conv KANs), with the
kancompress CLI itself.

For each basis: dense, Meta, Cluster, Cluster + fine-tune, MetaCluster, MetaCluster + fine-tune, with the
storage of each checkpoint (tensor bytes from `inspect --json`, 1 KB = 1000 bytes) and its test accuracy.

    python examples/reproduce_table1.py --dataset fashion-mnist            # paper hyperparameters (50 epochs)
    python examples/reproduce_table1.py --dataset digits --epochs 30       # quick
    python examples/reproduce_table1.py --conv --dataset digits --epochs 15   # Table 2 layout, reduced budget

Writes table1-<dataset>.{md,csv,json} (table2-<dataset>-reduced.* with --conv) into --out (default
runs/reproduce), and into examples/results/ only with --write-results. Every file states the command, commit, torch
version, cores and wall time. Needs the dataset (fashion-mnist: `apt-get install dataset-fashion-mnist`).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _stamp as stamp  # examples/_stamp.py (scripts run with examples/ on sys.path)

RESULTS = Path(__file__).parent / "results"
NAMES = {"kan": "KAN", "fastkan": "FastKAN", "gramkan": "GramKAN", "chebykan": "ChebyKAN", "legendrekan": "LegendreKAN"}


def cli(*args: str) -> str:
    command = [sys.executable, "-m", "kancompress", *args]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    return done.stdout


def measure(path: Path, data_args: list[str]) -> tuple[float, float]:
    """(storage KB, test accuracy %) of a checkpoint."""
    report = json.loads(cli("inspect", str(path), "--json"))
    accuracy = json.loads(cli("eval", str(path), "--json", *data_args))["accuracy"]
    return report["total_bytes"] / 1000, 100 * accuracy


def run_basis(model: str, args: argparse.Namespace, work: Path) -> list[dict]:
    data_args = ["--dataset", args.dataset] + (["--data-dir", args.data_dir] if args.data_dir else [])
    common = [*data_args, "--seed", str(args.seed), *(["--conv"] if args.conv else [])]
    epochs = ["--epochs", str(args.epochs), "--patience", str(args.patience), "--batch-size", str(args.batch_size)]
    tune = ["--epochs", str(args.finetune_epochs), "--seed", str(args.seed), "--batch-size", str(args.batch_size),
            *data_args]
    files = {name: work / f"{model}-{name}.safetensors" for name in ("dense", "meta", "c", "cft", "mc", "mcft")}
    cli("train", "--model", model, *common, *epochs, "-o", str(files["dense"]))
    cli("train", "--model", model, "--meta", *common, *epochs, "-o", str(files["meta"]))
    cli("cluster", str(files["dense"]), "-k", str(args.k), "--seed", str(args.seed), "-o", str(files["c"]))
    cli("finetune", str(files["c"]), *tune, "-o", str(files["cft"]))
    cli("cluster", str(files["meta"]), "-k", str(args.k), "--seed", str(args.seed), "-o", str(files["mc"]))
    cli("finetune", str(files["mc"]), *tune, "-o", str(files["mcft"]))
    label = NAMES[model] + ("Conv" if args.conv else "")
    rows = [
        (label, "dense"), (f"Meta{label}", "meta"), (f"Cluster{label}", "c"), ("+ fine-tune", "cft"),
        (f"MetaCluster{label}", "mc"), ("+ fine-tune", "mcft"),
    ]
    result = []
    for name, key in rows:
        kb, acc = measure(files[key], data_args)
        result.append({"basis": model, "model": name, "memory_kb": round(kb, 2), "accuracy": round(acc, 2)})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--models", default="kan,fastkan,gramkan,chebykan,legendrekan")
    parser.add_argument("--out", type=Path, default=Path("runs/reproduce"), help="folder for the results")
    parser.add_argument("--write-results", action="store_true", help="also write them into examples/results/")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--finetune-epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("-k", type=int, default=None, help="codebook size [default: 16; 256 with --conv]")
    parser.add_argument("--conv", action="store_true", help="the 4-layer conv KAN (paper Table 2)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.k = args.k or (256 if args.conv else 16)
    if args.dataset == "fashion-mnist" and not args.data_dir and not Path("/usr/share/datasets/fashion-mnist").is_dir():
        raise SystemExit("Fashion-MNIST is not installed: apt-get install dataset-fashion-mnist (or pass --data-dir)")
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            rows += run_basis(model, args, Path(tmp))
            print(f"{model} done after {time.time() - start:.0f} s", file=sys.stderr)
    wall = time.time() - start
    name = f"table2-{args.dataset}-reduced" if args.conv else f"table1-{args.dataset}"
    folders = [args.out] + ([RESULTS] if args.write_results else [])
    for folder in folders:
        write(folder / name, rows, args, wall)
    print((args.out / f"{name}.md").read_text())


def write(stem: Path, rows: list[dict], args: argparse.Namespace, wall: float) -> None:
    import os
    import platform

    import torch

    commit = stamp.commit()
    with open(f"{stem}.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    command = "python examples/reproduce_table1.py " + " ".join(a for a in sys.argv[1:] if a != "--write-results")
    meta = {"command": command, "commit": commit, "torch": torch.__version__, "python": platform.python_version(),
            "cores": os.cpu_count(), "dataset": args.dataset, "seed": args.seed, "epochs": args.epochs,
            "patience": args.patience, "finetune_epochs": args.finetune_epochs, "k": args.k,
            "wall_time_s": round(wall, 1), "rows": rows}
    Path(f"{stem}.json").write_text(json.dumps(meta, indent=1) + "\n")
    title = f"Table 2 layout (conv KANs, reduced budget) on {args.dataset}" if args.conv else f"Table 1 layout on {args.dataset}"
    lines = [f"# {title}", "",
             f"`{command}` at commit {commit}, torch {torch.__version__}, {os.cpu_count()} cores — seed {args.seed}, "
             f"at most {args.epochs} epochs (patience {args.patience}), k = {args.k}, batch size {args.batch_size}, "
             f"{args.finetune_epochs} fine-tuning epochs; wall time {wall / 60:.1f} min. "
             "Memory: tensor bytes of each checkpoint, 1 KB = 1000 bytes.", "",
             "| model | memory (KB) | accuracy (%) |", "| --- | ---: | ---: |"]
    lines += [f"| {r['model']} | {r['memory_kb']:,.2f} | {r['accuracy']:.2f} |" for r in rows]
    Path(f"{stem}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
