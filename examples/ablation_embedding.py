"""The paper's Table 9: meta-learner embedding dimension d_emb in 1..4 for the fully-connected MetaFastKAN —
accuracy before clustering, after clustering at k = 16 and after fine-tuning, with memory before and after.

    python examples/ablation_embedding.py --dataset digits

Writes examples/results/ablation-embedding-<dataset>.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import _stamp as stamp  # examples/_stamp.py (scripts run with examples/ on sys.path)

RESULTS = Path(__file__).parent / "results"


def cli(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "kancompress", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"kancompress {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def measure(path: Path) -> tuple[float, float]:
    kb = json.loads(cli("inspect", str(path), "--json"))["total_bytes"] / 1000
    return kb, 100 * json.loads(cli("eval", str(path), "--json"))["accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--model", default="fastkan")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("-k", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"), help="folder for the results")
    parser.add_argument("--write-results", action="store_true", help="also write them into examples/results/")
    args = parser.parse_args()
    start = time.time()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for d_emb in (1, 2, 3, 4):
            meta, clustered, tuned = (Path(tmp) / f"{name}{d_emb}.safetensors" for name in ("m", "c", "f"))
            cli("train", "--model", args.model, "--meta", "--d-emb", str(d_emb), "--dataset", args.dataset,
                "--epochs", str(args.epochs), "--seed", str(args.seed), "-o", str(meta))
            cli("cluster", str(meta), "-k", str(args.k), "--seed", str(args.seed), "-o", str(clustered))
            cli("finetune", str(clustered), "--seed", str(args.seed), "-o", str(tuned))
            (kb_meta, acc_meta), (kb_c, acc_c), (_, acc_f) = measure(meta), measure(clustered), measure(tuned)
            rows.append((d_emb, acc_meta, acc_c, acc_f, kb_meta, kb_c))
    wall = time.time() - start
    command = "python examples/ablation_embedding.py " + " ".join(a for a in sys.argv[1:] if a != "--write-results")
    lines = [f"# Embedding-dimension ablation (paper Table 9 layout), Meta{args.model} on {args.dataset}", "",
             f"`{command}` — seed {args.seed}, at most {args.epochs} epochs, k = {args.k}; wall time "
             f"{wall / 60:.1f} min on 2 CPU cores; commit {stamp.commit()}, torch {version('torch')}. Memory: tensor bytes, "
             "1 KB = 1000 bytes.", "",
             "| d_emb | model acc (%) | clustered acc (%) | fine-tuned acc (%) | KB before | KB after |",
             "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {d} | {a:.2f} | {c:.2f} | {f:.2f} | {kb:.2f} | {kc:.2f} |" for d, a, c, f, kb, kc in rows]
    for folder in [args.out] + ([RESULTS] if args.write_results else []):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"ablation-embedding-{args.dataset}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
