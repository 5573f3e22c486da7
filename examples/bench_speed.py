"""Speed and memory benchmarks, side by side in one run. Prints tables (and with --write-results writes
examples/results/bench_speed.md/json).

    python examples/bench_speed.py            # needs the dev extra (pykan, pyyaml) for the pykan rows
    python examples/bench_speed.py --quick    # fewer repetitions, no 1e6-edge scikit-learn run

1. Training step (forward + backward + AdamW) of the paper's fully-connected shape 784-32-10 at batch 128:
   kancompress (each basis, dense and meta) against a plain implementation of the efficient-kan formula and
   pykan's `KANLayer` (a real peer).
2. K-means of 1e4 / 1e5 / 1e6 nine-dimensional edge vectors at k = 16 and 256: scikit-learn vs the torch K-means.
3. Inference throughput, dense vs clustered (fully-connected MNIST shape and the 4-layer conv KAN).
4. Codebook-space forward of clustered fully-connected layers: decode vs gather vs one-hot per shape, k and |w|,
   and the method `--fc-forward auto` picks.
5. Peak memory (RSS) of training the 4-layer conv KAN at batch 128 on 32x32x3 inputs, in a fresh process.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import _stamp  # examples/_stamp.py (scripts run with examples/ on sys.path)

import torch
from torch.nn import functional as F

from kancompress.cluster import cluster_model, torch_kmeans
from kancompress.config import BasisConfig, MetaConfig, default_config, default_conv_config
from kancompress.models import build_model

RESULTS = Path(__file__).parent / "results"


def interleaved_medians(steps: dict, repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each step, timed in turn round by round so that machine drift hits them all alike."""
    for _ in range(warmup):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


class EfficientKANFormula(torch.nn.Module):
    """efficient-kan's KANLinear forward written plainly: base_weight·SiLU(x) + (spline_weight·scaler)·B(x)."""

    def __init__(self, widths: tuple[int, ...], grid_size: int = 5, order: int = 3):
        super().__init__()
        self.order = order
        h = 2 / grid_size
        self.grids = [torch.arange(-order, grid_size + order + 1) * h - 1 for _ in widths[:-1]]
        self.base = torch.nn.ParameterList([torch.nn.Parameter(torch.randn(o, i) * 0.1) for i, o in zip(widths, widths[1:])])
        self.spline = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.randn(o, i, grid_size + order) * 0.1) for i, o in zip(widths, widths[1:])])
        self.scaler = torch.nn.ParameterList([torch.nn.Parameter(torch.ones(o, i)) for i, o in zip(widths, widths[1:])])

    def bsplines(self, x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(-1)
        bases = ((x >= grid[:-1]) & (x < grid[1:])).to(x.dtype)
        for k in range(1, self.order + 1):
            bases = ((x - grid[: -(k + 1)]) / (grid[k:-1] - grid[: -(k + 1)]) * bases[..., :-1]
                     + (grid[k + 1:] - x) / (grid[k + 1:] - grid[1:(-k)]) * bases[..., 1:])
        return bases

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for grid, base, spline, scaler in zip(self.grids, self.base, self.spline, self.scaler):
            out = F.linear(F.silu(x), base)
            x = out + F.linear(self.bsplines(x, grid).flatten(1), (spline * scaler[..., None]).flatten(1))
        return x


class PykanStack(torch.nn.Module):
    def __init__(self, widths: tuple[int, ...]):
        super().__init__()
        from kan import KANLayer

        self.layers = torch.nn.ModuleList(
            [KANLayer(in_dim=i, out_dim=o, num=5, k=3) for i, o in zip(widths, widths[1:])])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)[0]
        return x


def bench_training(repeats: int) -> list[dict]:
    x, y = torch.rand(128, 784) * 2 - 1, torch.randint(0, 10, (128,))
    models: dict[str, torch.nn.Module] = {"efficient-kan formula (B-spline)": EfficientKANFormula((784, 32, 10))}
    try:
        models["pykan KANLayer (B-spline)"] = PykanStack((784, 32, 10))
    except ImportError:
        print("pykan not installed: skipping its row (pip install pykan pyyaml)", file=sys.stderr)
    for name in ("kan", "fastkan", "gramkan"):
        models[f"kancompress {name}"] = build_model(default_config(name, (784, 32, 10)))
        models[f"kancompress {name} --meta"] = build_model(default_config(name, (784, 32, 10), MetaConfig()), "meta")
    steps = {}
    for name, model in models.items():
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step(model: torch.nn.Module = model, optimizer: torch.optim.Optimizer = optimizer) -> None:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        steps[name] = step
    seconds = interleaved_medians(steps, repeats, warmup=3)
    rows = [{"model": name, "step_ms": 1000 * seconds[name]} for name in models]
    reference = rows[0]["step_ms"]
    for row in rows:
        row["vs_efficient_kan"] = row["step_ms"] / reference
    return rows


def manifold_vectors(n: int, d: int = 9, seed: int = 0) -> torch.Tensor:
    """Edge-like vectors: a noisy 1-D curve in R^d, as a meta-learner with d_emb = 1 produces."""
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(n, 1, generator=g) * 6
    return torch.cat([torch.sin(t * (i + 1) / 2) for i in range(d)], 1) + 0.05 * torch.randn(n, d, generator=g)


def bench_kmeans(quick: bool) -> list[dict]:
    rows = []
    for n in (10_000, 100_000, 1_000_000):
        points = manifold_vectors(n)
        for k in (16, 256):
            start = time.perf_counter()
            _, _, inertia = torch_kmeans(points, k, seed=0)
            torch_s = time.perf_counter() - start
            row = {"edges": n, "k": k, "torch_s": torch_s, "torch_inertia": inertia}
            if not (quick and n * k > 30_000_000):
                from sklearn.cluster import KMeans

                start = time.perf_counter()
                fitted = KMeans(n_clusters=k, n_init=1, random_state=0).fit(points.double().numpy())
                row.update(sklearn_s=time.perf_counter() - start, sklearn_inertia=float(fitted.inertia_))
                row["inertia_ratio"] = inertia / row["sklearn_inertia"]
            rows.append(row)
            print(row, file=sys.stderr)
    return rows


def bench_inference(repeats: int) -> list[dict]:
    rows = []
    cases = {
        "fc 784-32-10 (kan), batch 1024": (default_config("kan", (784, 32, 10)), torch.rand(1024, 784) * 2 - 1, 16),
        "conv 4-layer (kan), batch 128 of 3x32x32": (default_conv_config("kan", 3, 10), torch.rand(128, 3, 32, 32), 256),
    }
    for name, (config, x, k) in cases.items():
        dense = build_model(config).eval()
        clustered = cluster_model(dense, k, n_init=1).eval()
        with torch.no_grad():
            seconds = interleaved_medians({"dense": lambda: dense(x), "clustered": lambda: clustered(x)}, repeats, 2)
            dense_s, clustered_s = seconds["dense"], seconds["clustered"]
        rows.append({"case": name, "dense_per_s": x.shape[0] / dense_s, "clustered_per_s": x.shape[0] / clustered_s,
                     "clustered_vs_dense": dense_s / clustered_s})
    return rows


FC_FORWARD_CASES = [  # (in, out, B-spline grid size G (|w| = G + 4), k, batch)
    (784, 32, 5, 16, 1024),  # the paper's first layer
    (784, 256, 5, 16, 256),
    (1024, 1024, 5, 16, 256),
    (1024, 1024, 5, 4, 256),
    (1024, 1024, 20, 16, 256),
    (1024, 1024, 20, 8, 512),
    (2048, 2048, 20, 16, 256),
]


def bench_fc_forward(repeats: int) -> list[dict]:
    """One clustered layer (random codebook and indices: the timing does not depend on their values)."""
    rows = []
    for inp, out, grid, k, batch in FC_FORWARD_CASES:
        config = dataclasses.replace(default_config("kan", (inp, out)), basis=BasisConfig(grid_size=grid))
        models = {}
        for mode in ("decode", "gather", "onehot", "auto"):
            models[mode] = build_model(config, "clustered", [k]).eval()
            torch.manual_seed(0)
            models[mode].edges.layers[0].codebook.data.normal_(0, 0.3)
            models[mode].edges.layers[0].indices.random_(0, k)
            models[mode].set_fc_forward(mode)
        x = torch.rand(batch, inp) * 2 - 1
        with torch.no_grad():
            models["auto"](x)  # auto times its candidates on the first batch of a size
            seconds = interleaved_medians({mode: (lambda m=m: m(x)) for mode, m in models.items()}, repeats)
        width = config.edge_width
        rows.append({
            "layer": f"{inp}-{out}", "|w|": width, "k": k, "batch": batch,
            **{f"{mode}_ms": seconds[mode] * 1e3 for mode in models},
            "auto_picks": models["auto"].codebook_forward.chosen()[0][0],
            "auto_vs_decode": seconds["decode"] / seconds["auto"],
            "decoded_mib": out * inp * width * 4 / 2**20,  # the cached (out, in, |w|) float32 vectors
            "gather_table_mib": out * inp * 4 / 2**20,  # int32 (out, in)
        })
    return rows


PEAK_SCRIPT = """
import resource, torch
from torch.nn import functional as F
from kancompress.config import default_conv_config, MetaConfig
from kancompress.models import build_model
meta = {meta}
model = build_model(default_conv_config("{model}", 3, 10, meta=MetaConfig(d_emb=2) if meta else None), "meta" if meta else "dense")
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
for _ in range(2):
    loss = F.cross_entropy(model(torch.rand(128, 3, 32, 32)), torch.randint(0, 10, (128,)))
    opt.zero_grad(); loss.backward(); opt.step()
try:  # Linux: this process's own high-water mark (ru_maxrss would include the forking parent's RSS)
    print(next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")))
except OSError:
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def bench_peak_memory() -> list[dict]:
    rows = []
    for model in ("kan", "fastkan", "gramkan"):
        for meta in (False, True):
            done = subprocess.run([sys.executable, "-c", PEAK_SCRIPT.format(model=model, meta=meta)],
                                  capture_output=True, text=True, check=True)
            rows.append({"model": f"{'Meta' if meta else ''}{model} conv", "peak_rss_mib": int(done.stdout) / 1024})
    return rows


def table(rows: list[dict], title: str) -> str:
    if not rows:
        return ""
    keys = list(dict.fromkeys(key for row in rows for key in row))
    lines = [f"### {title}", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        cells = [f"{row[k]:,.3f}" if isinstance(row.get(k), float) else f"{row.get(k, '')}" for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--write-results", action="store_true", help="write examples/results/bench_speed.{md,json}")
    args = parser.parse_args()
    started = time.monotonic()
    repeats = 10 if args.quick else 30
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    results = {
        "machine": machine,
        "training": bench_training(repeats),
        "kmeans": bench_kmeans(args.quick),
        "inference": bench_inference(repeats),
        "fc_forward": bench_fc_forward(repeats),
        "peak_memory": bench_peak_memory(),
    }
    command = "python examples/bench_speed.py" + (" --quick" if args.quick else "") + " --write-results"
    stamp = (f"`{command}` at commit {_stamp.commit()}; machine: {machine}; medians of {repeats} repetitions; "
             f"{(time.monotonic() - started) / 60:.1f} min wall.")
    results["stamp"] = stamp
    text = ["# kancompress speed benchmark", "", stamp, "",
            table(results["training"], "Training step, 784-32-10, batch 128 (ms)"),
            table(results["kmeans"], "K-means of 9-dim edge vectors (seconds; scikit-learn n_init=1)"),
            table(results["inference"], "Inference throughput (samples/s)"),
            table(results["fc_forward"], "Clustered fully-connected layer: decode vs codebook space (ms per batch)"),
            table(results["peak_memory"], "Peak RSS training the 4-layer conv KAN, batch 128, 3x32x32 (MiB)")]
    print("\n".join(text))
    if args.write_results:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "bench_speed.json").write_text(json.dumps(results, indent=1) + "\n")
        (RESULTS / "bench_speed.md").write_text("\n".join(text))


if __name__ == "__main__":
    main()
