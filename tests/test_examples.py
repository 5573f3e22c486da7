"""The example scripts behind published results still run against the current API (tiny data made here)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from test_data import make_mnist_folder  # tests/ is on sys.path under pytest

ROOT = Path(__file__).resolve().parent.parent


def test_conv_table2_script_runs_every_row(tmp_path: Path) -> None:
    """examples/table2_fashion_mnist.py on 20 Fashion-MNIST-shaped images: every row of the Table 2 layout is
    written (dense, Cluster, + FT, Meta, MetaCluster, + FT), clustered files are smaller than dense ones, and the
    results state their command."""
    (tmp_path / "data").mkdir()
    make_mnist_folder(tmp_path / "data", compress=True)
    out = tmp_path / "out"
    command = [sys.executable, str(ROOT / "examples" / "table2_fashion_mnist.py"), "--data-dir", str(tmp_path / "data"),
               "--models", "gramkan", "--ks", "2", "--epochs", "1", "--finetune-epochs", "1", "--device", "cpu",
               "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = list(csv.DictReader((out / "table2-fashion-mnist.csv").open()))
    assert [(r["model"], r["k"]) for r in rows] == [
        ("GramKANConv", ""), ("ClusterGramKANConv", "2"), ("ClusterGramKANConv + fine-tune", "2"),
        ("MetaGramKANConv", ""), ("MetaClusterGramKANConv", "2"), ("MetaClusterGramKANConv + fine-tune", "2"),
    ]
    dense, clustered = float(rows[0]["memory_kb"]), float(rows[1]["memory_kb"])
    assert clustered < dense and rows[1]["memory_kb"] == rows[4]["memory_kb"]
    assert all(0 <= float(r["test"]) <= 100 for r in rows)
    assert "--models gramkan --ks 2" in (out / "table2-fashion-mnist.md").read_text()


def test_entropy_constrained_clustering_of_the_rate_probe() -> None:
    """examples/rate_probe.py's ECVQ: with λ = 0 it is a weighted K-means no worse than its K-means start; a large
    λ puts every edge on one centroid (zero rate); λ in between uses the frequent centroids more."""
    import torch

    sys.path.insert(0, str(ROOT / "examples"))
    from rate_probe import ecvq

    generator = torch.Generator().manual_seed(0)
    vectors = torch.randn(600, 4, generator=generator)  # 600 edges of a layer with 6 inputs
    grams = torch.eye(4, dtype=torch.float64).repeat(6, 1, 1) * torch.rand(6, 1, 1, generator=generator).double()

    def distortion(codebook: torch.Tensor, indices: torch.Tensor) -> float:
        difference = (vectors - codebook[indices]).double()
        weights = grams.repeat(100, 1, 1)
        return float(torch.einsum("na,nab,nb->", difference, weights, difference))

    from kancompress.cluster import sklearn_kmeans

    start = distortion(*sklearn_kmeans(vectors, 8, 0, 4))
    plain = ecvq(vectors, grams, 8, 0.0)
    assert distortion(*plain) <= start + 1e-6
    assert len(torch.unique(ecvq(vectors, grams, 8, 1e6)[1])) == 1

    def entropy(indices: torch.Tensor) -> float:
        p = torch.bincount(indices).double() / len(indices)
        p = p[p > 0]
        return float(-(p * p.log2()).sum())

    assert entropy(ecvq(vectors, grams, 8, 0.3)[1]) < entropy(plain[1])


def test_bench_compress_reports_drops_and_failed_rows() -> None:
    """examples/bench_compress.py's arithmetic: accuracy points lost, a relative MSE increase, and a row for a
    source where nothing fits the budget."""
    sys.path.insert(0, str(ROOT / "examples"))
    from bench_compress import as_markdown, drop

    accuracy = {"task": "classification", "loss": 0.3, "n": 100}
    assert abs(drop("classification", {**accuracy, "accuracy": 0.9}, {**accuracy, "accuracy": 0.885}) - 1.5) < 1e-9
    mse = {"task": "regression", "loss": 0.1, "n": 100, "r2": 0.9}
    assert abs(drop("regression", {**mse, "mse": 2.0}, {**mse, "mse": 3.0}) - 0.5) < 1e-12
    rows = [{"source": "a", "train_s": 10.0, "search": "fast", "source_bytes": 1000, "source_test": "90.00 %",
             "compress_s": 5.0, "ratio": 0.5, "bytes": 100, "method": "cluster", "k": [2, 4],
             "codebook_dtype": "int8", "trials": 3, "task": "classification", "val_drop": 0.25, "test_drop": 0.5},
            {"source": "b", "train_s": 10.0, "search": "thorough", "source_bytes": 1000, "source_test": "MSE 0.1",
             "compress_s": 30.0, "bytes": None}]
    text = as_markdown(rows, {"source": 100.0, "kept": 50.0, "reestimated": 97.0}, "cmd", 60.0)
    assert "| a | 90.00 % | 1,000 | 10 | fast | 5 | 0.50 | 100 | cluster, [2, 4], int8 | 3 | +0.25 | +0.5 |" in text
    assert "| b | MSE 0.1 | 1,000 | 10 | thorough | 30 | 3.00 | - | nothing within budget |" in text
    assert "re-estimated on the training split 97.00 %" in text
