"""MetaKAN's layer grouping against one meta-learner per model and per layer (issue 17.3): accuracy, parameters
and how well each variant clusters, on a deeper fully-connected KAN and on the conv KAN (digits; --dataset to
change).

    python examples/meta_sharing.py [--write]        # about 6 minutes on 2 cores

Fully-connected 64-64-64-64-10 (B-spline, 30 epochs) and the 4-layer conv KAN (channels 8-16-32-64, 8 epochs);
sharing model (1 meta-learner), layer (one per layer) and groups:2 (MetaKAN: layers grouped by K-means on their
output widths); then k = 16 (FC) / 64 (conv) clustering without and with 3 fine-tuning epochs. Everything chosen
beforehand; test accuracy only reported.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import _stamp as stamp  # examples/_stamp.py (scripts run with examples/ on sys.path)

import torch

from kancompress import api
from kancompress.config import ConvConfig, MetaConfig, TrainConfig
from kancompress.data import load_dataset
from kancompress.train import evaluate

RESULTS = Path(__file__).resolve().parent / "results"


def run(data, conv: bool, sharing: str) -> dict:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    meta = MetaConfig(d_emb=2 if conv else 1, sharing=sharing)
    options = api.TrainOptions(model="kan", dataset=data.name, meta=meta, hidden=(64, 64, 64),
                               conv=ConvConfig(strides=(1, 2, 2, 1)) if conv else None, channels=(8, 16, 32, 64),
                               train=TrainConfig(epochs=8 if conv else 30, patience=0), device="cpu")
    trained = api.train(options, data)
    model = trained.model
    learners = sum(p.numel() for p in model.edges.learners.parameters())
    clustered, _ = api.cluster(model, api.ClusterConfig(k=64 if conv else 16, device="cpu"))
    before = evaluate(clustered, data.test_x, data.test_y).accuracy
    tuned = api.finetune(clustered, api.FinetuneOptions(lr=1e-3 if not conv else 1e-4,
                                                        train=TrainConfig(epochs=3, patience=0), device="cpu"), data)
    return {"arch": "conv 8-16-32-64" if conv else "FC 64-64-64-64-10", "sharing": sharing,
            "learners": len(model.edges.learners), "groups": model.edges.groups, "meta_params": learners,
            "accuracy": trained.test.accuracy, "cluster": before, "cluster_ft": tuned.test.accuracy,
            "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    data = load_dataset(args.dataset)
    rows = [run(data, conv, sharing) for conv in (False, True) for sharing in ("model", "layer", "groups:2")]
    commit = stamp.commit()
    lines = ["# Meta-learner sharing: one, one per layer, MetaKAN's groups", "",
             f"`python examples/meta_sharing.py --write` at commit {commit}, torch {torch.__version__}, Python "
             f"{platform.python_version()}, {os.cpu_count()} cores, dataset {args.dataset}; "
             f"{sum(r['seconds'] for r in rows):.0f} s in all.", "",
             "| model | sharing | meta-learners (layer -> learner) | meta-learner params | test acc | clustered | "
             "+ FT | s |", "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['arch']} | {r['sharing']} | {r['learners']} ({r['groups']}) | {r['meta_params']:,} | "
                     f"{100 * r['accuracy']:.2f} | {100 * r['cluster']:.2f} | {100 * r['cluster_ft']:.2f} | "
                     f"{r['seconds']} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        (RESULTS / "meta-sharing.md").write_text(text)


if __name__ == "__main__":
    main()
