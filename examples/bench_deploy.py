"""Deployment latency of the paper's 784-32-10 KAN: onnxruntime vs kancompress eager vs an efficient-kan eager
implementation vs a plain MLP, at batch 1 and 1024, dense and clustered (k = 16), side by side in one run.

    python examples/bench_deploy.py            # prints the table; --write also writes examples/results/bench_deploy.md

Needs the onnx extra. Timings are medians of interleaved rounds (every variant timed in turn, round by round), on
the threads torch and onnxruntime pick by default (2 cores here; onnxruntime's thread spinning off, see the code).
File sizes are the bytes on disk.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import _stamp as stamp  # examples/_stamp.py (scripts run with examples/ on sys.path)

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_speed import EfficientKANFormula, interleaved_medians  # noqa: E402  (efficient-kan's formula; timing)

from kancompress.config import default_config  # noqa: E402
from kancompress.format.checkpoint import checkpoint_bytes  # noqa: E402
from kancompress.models import build_model  # noqa: E402
from kancompress.onnx_export import export_onnx  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def runtime_operators(onnxruntime: Any, data: bytes) -> tuple[int, int]:
    """Operators in the .onnx file, and left after onnxruntime's load-time optimisation (constant folding, fusion),
    the ones each call runs."""
    import tempfile

    import onnx

    with tempfile.TemporaryDirectory() as folder:
        options = onnxruntime.SessionOptions()
        options.optimized_model_filepath = str(Path(folder) / "optimized.onnx")
        onnxruntime.InferenceSession(data, options)
        optimized = onnx.load(options.optimized_model_filepath)
    return len(onnx.load_from_string(data).graph.node), len(optimized.graph.node)


def main() -> None:
    import onnxruntime

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    started = time.monotonic()
    torch.manual_seed(0)
    rows = []
    mlp = torch.nn.Sequential(torch.nn.Linear(784, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)).eval()
    efficient = EfficientKANFormula((784, 32, 10)).eval()
    for name in ("kan", "fastkan", "gramkan"):
        config = default_config(name, (784, 32, 10))
        dense = build_model(config).eval()
        clustered = build_model(config, "clustered", [16, 16]).eval()
        for book in clustered.edges.books():
            book.codebook.data.normal_(0, 0.1)
            book.indices.random_(0, 16)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graphs = {kind: export_onnx(model) for kind, model in (("dense", dense), ("k=16", clustered))}
        options = onnxruntime.SessionOptions()
        # onnxruntime's threads spin after each call by default, which steals the cores from whatever is timed next
        # in an interleaved run; without spinning each variant gets the machine to itself.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sessions = {kind: onnxruntime.InferenceSession(data, options) for kind, data in graphs.items()}
        single = onnxruntime.SessionOptions()  # one thread: no hand-off between cores, what batch 1 wants
        single.intra_op_num_threads = 1
        sessions["k=16, 1 thread"] = onnxruntime.InferenceSession(graphs["k=16"], single)
        operators = {kind: runtime_operators(onnxruntime, data) for kind, data in graphs.items()}
        for batch in (1, 1024):
            x = torch.rand(batch, 784) * 2 - 1
            feed = {"input": x.numpy()}
            steps = {
                "onnxruntime dense": lambda: sessions["dense"].run(None, feed),
                "onnxruntime k=16": lambda: sessions["k=16"].run(None, feed),
                "onnxruntime k=16, 1 thread": lambda: sessions["k=16, 1 thread"].run(None, feed),
                "kancompress eager dense": lambda: dense(x),
                "kancompress eager k=16": lambda: clustered(x),
            }
            if name == "kan":
                steps["efficient-kan eager"] = lambda: efficient(x)
                steps["MLP 784-32-10 eager"] = lambda: mlp(x)
            with torch.no_grad():
                result = interleaved_medians(steps, args.rounds if batch == 1 else max(20, args.rounds // 10))
            for variant, seconds in result.items():
                rows.append({"basis": name, "batch": batch, "variant": variant, "ms": seconds * 1000})
        rows.append({"basis": name, "batch": "size", "variant": "bytes",
                     "ms": f"onnx dense {len(graphs['dense']):,} B, onnx k=16 {len(graphs['k=16']):,} B, "
                           f"safetensors k=16 {len(checkpoint_bytes(clustered, {})):,} B"})
        rows.append({"basis": name, "batch": "graph", "variant": "operators",
                     "ms": f"dense {operators['dense'][0]} in the file, {operators['dense'][1]} after loading; k=16 "
                           f"{operators['k=16'][0]} in the file, {operators['k=16'][1]} after loading"})
    commit = stamp.commit()
    lines = ["# Deployment latency, 784-32-10 (ms per call, median of interleaved rounds)", "",
             f"`python examples/bench_deploy.py --write` at commit {commit}, torch {torch.__version__}, onnxruntime "
             f"{onnxruntime.__version__}, Python {platform.python_version()}, {os.cpu_count()} cores, "
             f"{(time.monotonic() - started) / 60:.1f} min wall. Threads: each library's default (onnxruntime's "
             "spinning off), except the row that says 1 thread.", "",
             "| basis | batch | variant | ms |", "| --- | ---: | --- | ---: |"]
    for row in rows:
        value = f"{row['ms']:.3f}" if isinstance(row["ms"], float) else row["ms"]
        lines.append(f"| {row['basis']} | {row['batch']} | {row['variant']} | {value} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        (RESULTS / "bench_deploy.md").write_text(text)


if __name__ == "__main__":
    main()
