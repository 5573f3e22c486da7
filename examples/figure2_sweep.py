"""The paper's Figure 2: accuracy against the number of clusters, with and without the meta-learner, before and
after fine-tuning, using the CLI (`train`, then `sweep --finetune-epochs`).

    python examples/figure2_sweep.py --dataset fashion-mnist --model fastkan --epochs 15

Writes examples/results/figure2-<dataset>-<model>.{csv,png,md}.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import _stamp as stamp  # examples/_stamp.py (scripts run with examples/ on sys.path)

RESULTS = Path(__file__).parent / "results"


def cli(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "kancompress", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"kancompress {' '.join(args)} failed:\n{done.stderr}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--model", default="fastkan")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--finetune-epochs", type=int, default=5)
    parser.add_argument("--ks", default="2,4,8,16,32,64")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/figure2"), help="folder for the results")
    parser.add_argument("--write-results", action="store_true", help="also write them into examples/results/")
    args = parser.parse_args()
    try:
        import matplotlib  # noqa: F401  (checked before the work, not after it)
    except ImportError:
        raise SystemExit("the figure needs matplotlib: pip install -e '.[plot]'") from None
    if args.dataset == "fashion-mnist" and not Path("/usr/share/datasets/fashion-mnist").is_dir():
        raise SystemExit("Fashion-MNIST is not installed: apt-get install dataset-fashion-mnist")
    start = time.time()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for meta in (False, True):
            ckpt, table = Path(tmp) / f"m{meta}.safetensors", Path(tmp) / f"s{meta}.csv"
            cli("train", "--model", args.model, *(["--meta"] if meta else []), "--dataset", args.dataset,
                "--epochs", str(args.epochs), "--patience", str(args.patience), "--seed", str(args.seed), "-o", str(ckpt))
            cli("sweep", str(ckpt), "--ks", args.ks, "--finetune-epochs", str(args.finetune_epochs),
                "--seed", str(args.seed), "-o", str(table))
            for row in csv.DictReader(table.open()):
                rows.append({"meta": meta, **row})
    wall = time.time() - start
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"figure2-{args.dataset}-{args.model}"
    with open(f"{stem}.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for meta, colour in ((True, "tab:blue"), (False, "tab:red")):
        part = [r for r in rows if r["meta"] == meta]
        ks = [int(r["k"]) for r in part]
        name = ("Meta" if meta else "") + "Cluster" + {"kan": "KAN", "fastkan": "FastKAN", "gramkan": "GramKAN"}[args.model]
        axes.plot(ks, [100 * float(r["test_accuracy"]) for r in part], "o-", color=colour, label=name)
        axes.plot(ks, [100 * float(r["finetuned_test_accuracy"]) for r in part], "s--", color=colour,
                  label=f"{name} + fine-tune")
    axes.set_xscale("log", base=2)
    axes.set_xlabel("clusters per layer (k)")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title(f"{args.dataset}, {args.model}: accuracy vs number of clusters")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(f"{stem}.png", dpi=120)
    command = "python examples/figure2_sweep.py " + " ".join(a for a in sys.argv[1:] if a != "--write-results")
    lines = [f"# Figure 2 layout on {args.dataset} ({args.model})", "",
             f"`{command}` — seed {args.seed}, at most {args.epochs} training epochs (patience {args.patience}), "
             f"{args.finetune_epochs} fine-tuning epochs per point; wall time {wall / 60:.1f} min on 2 CPU cores; commit "
             f"{stamp.commit()}, torch {version('torch')}.", "",
             "| meta | k | KB | test acc (%) | + fine-tune (%) |", "| --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['meta']} | {r['k']} | {int(r['bytes']) / 1000:.2f} | {100 * float(r['test_accuracy']):.2f} | "
              f"{100 * float(r['finetuned_test_accuracy']):.2f} |" for r in rows]
    Path(f"{stem}.md").write_text("\n".join(lines) + "\n")
    if args.write_results:
        for suffix in (".csv", ".png", ".md"):
            (RESULTS / f"{stem.name}{suffix}").write_bytes(Path(f"{stem}{suffix}").read_bytes())
    print("\n".join(lines))


if __name__ == "__main__":
    main()
