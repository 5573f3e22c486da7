"""How few bits per edge a Fashion-MNIST MetaKAN keeps within 0.5 validation points: K-means against entropy-
constrained, data-weighted clustering of its first layer (issue 16, goal 2: <= 1.5 bits per edge all-in).

    python examples/rate_probe.py                    # about 15 min on 2 cores, after examples/smallest_fashion_mnist.py
    python examples/rate_probe.py --write-results    # also writes examples/results/rate-probe-fashion-mnist.md

The first layer holds 25,088 of the 25,408 edges, so its index stream is the file. Its second layer stays at K-means
k = 32. Rows:
- K-means at k = 3, 4, 6, 8 (what `cluster` does);
- entropy-constrained vector quantisation (Chou, Lookabaugh & Gray 1989) at k = 8 and 16: each edge takes the
  centroid minimising  D(e, c) + λ·(-log2 p_c),  with D the squared error of the edge's function over the layer's
  training inputs, (v - c)ᵀ G_i (v - c), G_i = E[f(x_i) f(x_i)ᵀ] (f: the |w| basis values and the base branch; a
  1 % ridge), centroids the G-weighted means, p_c the usage, alternated 30 times. λ trades bits for distortion:
  edges whose pixel barely varies move to a frequent centroid for free.
Every row is fine-tuned 2 epochs at 10× lr_c (as `compress`'s trials) and stored with int8 codebooks and the
smallest index coding (packed, rANS or context-adaptive); the file size is the whole file with lean metadata.
The source is seed 0's MetaKAN of `smallest_fashion_mnist.py` (trained here if missing).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import _stamp as stamp  # examples/_stamp.py (scripts run with examples/ on sys.path)

import torch

from kancompress import api
from kancompress.cluster import sklearn_kmeans
from kancompress.config import TrainConfig
from kancompress.data import split_validation
from kancompress.edges import CodebookEdges
from kancompress.errors import KanCompressError
from kancompress.format.checkpoint import checkpoint_bytes, file_tensors, load_checkpoint
from kancompress.models import KANModel
from kancompress.train import evaluate

RESULTS = Path(__file__).resolve().parent / "results"
EDGES = 784 * 32 + 32 * 10
TARGET_BYTES = 4_765  # 1.5 bits per edge


@torch.no_grad()
def feature_grams(model: KANModel, x: torch.Tensor) -> torch.Tensor:
    """G_i = E_n[f(x_ni) f(x_ni)ᵀ] of the first layer's inputs, (in, |w|, |w|), with a 1 % ridge."""
    layer = model.fc_layers()[0]
    features = layer.edge_features(model.normalize.inputs(x) if model.normalize is not None else x).double()
    grams = torch.einsum("nia,nib->iab", features, features) / features.shape[0]
    ridge = 0.01 * grams.diagonal(dim1=1, dim2=2).mean()
    return grams + ridge * torch.eye(grams.shape[-1], dtype=grams.dtype)


def ecvq(vectors: torch.Tensor, grams: torch.Tensor, k: int, lam: float, iterations: int = 30
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Entropy-constrained, G-weighted K-means of (n, |w|) vectors (edge e uses grams[e % in]): codebook, indices."""
    codebook, indices = sklearn_kmeans(vectors.float(), k, 0, 4)
    codebook = codebook.double()
    points = vectors.double()
    weights = grams.repeat(points.shape[0] // grams.shape[0], 1, 1)  # (n, |w|, |w|): edge (o, i) -> G_i
    usage = torch.full((k,), 1.0 / k, dtype=torch.float64)
    for _ in range(iterations):
        difference = points[:, None, :] - codebook[None]  # (n, k, |w|)
        distortion = torch.einsum("nka,nab,nkb->nk", difference, weights, difference)
        indices = (distortion - lam * torch.log2(usage.clamp_min(1e-12))).argmin(dim=1)
        for c in range(k):
            members = indices == c
            if members.any():
                codebook[c] = torch.linalg.solve(weights[members].sum(0),
                                                 torch.einsum("nab,nb->a", weights[members], points[members]))
        usage = torch.bincount(indices, minlength=k).double() / points.shape[0]
    return codebook.float(), indices


def probe_row(source: api.Checkpoint, data: api.Dataset, split: api.Split, k: int, lam: float | None,
              grams: torch.Tensor) -> dict[str, float | int | str]:
    options = api.ClusterConfig(layer_ks=((0, k), (1, 32)), codebook_dtype="int8", index_coding="context")
    clustered, _ = api.cluster(source, options)
    edges = clustered.edges
    assert isinstance(edges, CodebookEdges)
    if lam is not None:
        codebook, indices = ecvq(source.model.edge_vectors()[0], grams, k, lam)
        first = edges.books()[0]
        first.codebook.data.copy_(codebook)
        first.indices.copy_(indices)
        edges.round_to_storage()
    tune = api.FinetuneOptions(lr=10 * api.default_finetune_lr(clustered), train=TrainConfig(epochs=2, patience=3))
    tuned = api.finetune(clustered, tune, data).model
    raw = checkpoint_bytes(tuned, {"stage": "probe"})
    entry = file_tensors(tuned)[1][0]  # layer 0's index table entry, as the file holds it
    return {"method": "K-means" if lam is None else f"ECVQ λ={lam:g}", "k": k,
            "layer0_bytes": entry.bytes, "layer0_bits": 8 * entry.bytes / 25_088, "coding": entry.coding,
            "file_bytes": len(raw), "bits_per_edge": 8 * len(raw) / EDGES,
            "val": 100 * evaluate(tuned, split.val_x, split.val_y).headline,
            "test": 100 * evaluate(tuned, data.test_x, data.test_y).headline}


def markdown(rows: list[dict[str, float | int | str]], base_val: float, base_test: float, command: str,
             wall: float) -> str:
    lines = [
        "# Bits per edge against accuracy: Fashion-MNIST MetaKAN 784-32-10, first layer",
        "",
        f"`{command}` at commit {stamp.commit()}, torch {torch.__version__}, Python {platform.python_version()}, "
        f"{torch.get_num_threads()} threads; {wall / 60:.0f} min wall. Source: seed 0's MetaKAN of "
        f"`smallest_fashion_mnist.py`, validation {base_val:.2f} %, test {base_test:.2f} %. Every row fine-tuned 2 "
        "epochs at 10× lr_c; second layer K-means k = 32; int8 codebooks, the smallest index coding; whole file "
        f"with lean metadata. Goal 2 of issue 16: ≤ {TARGET_BYTES:,} B (1.5 bits per edge) within 0.5 validation "
        "points, i.e. validation ≥ "
        f"{base_val - 0.5:.2f} %.",
        "",
        "| method | k (layer 0) | layer-0 index bytes | bits/edge (layer 0) | coding | file (B) | bits/edge (file) | "
        "val (%) | val drop | test (%) |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(f"| {r['method']} | {r['k']} | {r['layer0_bytes']:,} | {r['layer0_bits']:.2f} | {r['coding']} | "
                     f"{r['file_bytes']:,} | {r['bits_per_edge']:.2f} | {r['val']:.2f} | "
                     f"{base_val - float(r['val']):+.2f} | {r['test']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("runs/smallest-fmnist"))
    parser.add_argument("--rows", default="3:-,4:-,6:-,8:-,8:1e-3,8:2e-3,16:1e-3,16:2e-3",
                        help="k:λ per row, λ '-' for plain K-means")
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    try:
        data = api.load_data("fashion-mnist")
    except KanCompressError as error:
        sys.exit(f"{error} (apt-get install dataset-fashion-mnist)")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from smallest_fashion_mnist import metakan

    args.workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    source = load_checkpoint(metakan(args.workdir, 0))
    split = split_validation(data, seed=0)
    base_val = 100 * evaluate(source.model, split.val_x, split.val_y).headline
    base_test = 100 * evaluate(source.model, data.test_x, data.test_y).headline
    grams = feature_grams(source.model, split.train_x.flatten(1)[:20_000])
    plan = [(int(k), None if lam == "-" else float(lam)) for k, lam in (item.split(":") for item in args.rows.split(","))]
    rows = []
    for k, lam in plan:
        rows.append(probe_row(source, data, split, k, lam, grams))
        print(rows[-1], flush=True)
    command = "python examples/rate_probe.py" + (f" --rows {args.rows}" if args.rows != parser.get_default("rows") else "")
    text = markdown(rows, base_val, base_test, command, time.monotonic() - started)
    (args.workdir / "rate-probe-fashion-mnist.md").write_text(text)
    print(text)
    if args.write_results:
        (RESULTS / "rate-probe-fashion-mnist.md").write_text(text)


if __name__ == "__main__":
    main()
