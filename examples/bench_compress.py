"""compress at post-training cost: each source's training time beside the time `compress --max-drop 0.5` takes with
the fast search (and the thorough one where asked), the bytes on disk and the validation and test drop, in one run.
With `--uncached`, those sources are also compressed with the fast search without the first layer's feature cache
(`kancompress.compress.cache`), to show what the cache saves.

    python examples/bench_compress.py                                   # every source below, fast search
    python examples/bench_compress.py --thorough kan-meta,gramkan-meta --write-results
    python examples/bench_compress.py --sources feynman-I.8.4 --out runs/bench

Sources (each trained here, timed, seed 0):
- Fashion-MNIST 784-32-10, 15 epochs (patience 5), the compression frontier's sources: kan, kan-meta, fastkan,
  fastkan-meta, gramkan, gramkan-meta, and effkan-adapted (efficient-kan's README model with `update_grid`, saved in
  its layout and imported: `_adapted.py`; its training time is efficient-kan's loop);
- conv-digits: the paper's convolutional FastKAN (channels 32, 64, 128, 256; BatchNorms) on the bundled digits,
  15 epochs; also what re-estimating BatchNorm statistics after clustering changes (k = 16 everywhere, no
  fine-tuning: validation accuracy with the source's statistics and with re-estimated ones);
- conv-fashion: the paper's convolutional KAN (B-spline KANConv, channels 32, 64, 128, 256; 13.9 MB) on the first
  6,000 Fashion-MNIST training images (`--conv-subset`; a tenth held out for validation), 3 epochs; compressed with
  the same subset. The process's peak resident memory is stated after training and after compressing;
- feynman-I.8.4, feynman-I.13.4 (4 inputs each): pykan 0.2.8 `KAN(width=[4, 16, 16, 1], grid=5, k=3)` fitted by
  pykan's own `fit` (Adam, lr 1e-2, 2,000 steps, its grid updates on) on 1,000 samples of the equation, saved
  with `saveckpt`, imported with `kancompress import --data` (regression: the budget is a relative MSE increase
  of 0.5).
The budget is judged on the validation split each source was trained with; test numbers are only reported.
Writes bench_compress.md and .csv (`--stem` names them) into --out (and examples/results/ with --write-results).
Needs Fashion-MNIST (apt-get install dataset-fashion-mnist) for its rows and pykan (the dev extra) for the Feynman
rows.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import io
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import _stamp as stamp  # examples/_stamp.py (scripts run with examples/ on sys.path)

import torch

from kancompress import api
from kancompress.compress import cache
from kancompress.config import TrainConfig
from kancompress.data import Dataset
from kancompress.errors import KanCompressError
from kancompress.format.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from kancompress.options import COMPRESS_METHODS
from kancompress.tasks import Metrics

RESULTS = Path(__file__).resolve().parent / "results"
FASHION = ("kan", "kan-meta", "fastkan", "fastkan-meta", "gramkan", "gramkan-meta", "effkan-adapted")
FEYNMAN = ("feynman-I.8.4", "feynman-I.13.4")
SOURCES = (*FASHION, "conv-digits", "conv-fashion", *FEYNMAN)
CONV_EPOCHS = 3  # table2_fashion_mnist.py's CPU-sized run


def train_fashion(out: Path, name: str) -> Path:
    model, _, meta = name.partition("-")
    options = api.TrainOptions.build(model=model, meta=bool(meta), dataset="fashion-mnist", hidden=(32,),
                                     train=TrainConfig(epochs=15, patience=5))
    result = api.train(options)
    return save_checkpoint(result.model, out / f"{name}.safetensors", result.provenance, force=True)


def train_adapted(out: Path) -> Path:
    from _adapted import train_adapted as adapted_model

    from kancompress.format.checkpoint import save_state_dict
    from kancompress.interop import export_state_dict

    model = adapted_model(api.load_data("fashion-mnist"), epochs=15)
    upstream = save_state_dict(export_state_dict(model, "efficient-kan"), out / "effkan-adapted.pt", force=True)
    imported = api.import_checkpoint(upstream, library="efficient-kan", dataset="fashion-mnist")
    return save_checkpoint(imported.model, out / "effkan-adapted.safetensors", imported.provenance, force=True)


def train_conv(out: Path) -> Path:
    options = api.TrainOptions.build(model="fastkan", conv=True, dataset="digits",
                                     train=TrainConfig(epochs=15, patience=5))
    result = api.train(options)
    return save_checkpoint(result.model, out / "conv-digits.safetensors", result.provenance, force=True)


def fashion_subset(images: int) -> Dataset:
    data = api.load_data("fashion-mnist")
    return dataclasses.replace(data, train_x=data.train_x[:images], train_y=data.train_y[:images])


def train_conv_fashion(out: Path, data: Dataset) -> Path:
    options = api.TrainOptions.build(model="kan", conv=True, dataset="fashion-mnist",
                                     train=TrainConfig(epochs=CONV_EPOCHS, patience=CONV_EPOCHS))
    result = api.train(options, data)
    return save_checkpoint(result.model, out / "conv-fashion.safetensors", result.provenance, force=True)


def peak_memory_mb() -> float:
    """The process's peak resident set so far (Linux reports KiB), in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def train_pykan(out: Path, equation: str) -> Path:
    """pykan's own model and loop; the state and config it saves, imported with its data (what a pykan user has)."""
    import kan

    from kancompress.feynman import feynman_dataset

    train_x, train_y, test_x, test_y = (torch.from_numpy(a).float() for a in feynman_dataset(equation, 1000, 1000))
    data = {"train_input": train_x, "train_label": train_y, "test_input": test_x, "test_label": test_y}
    data_file = out / f"feynman-{equation}.pt"
    torch.save(data, data_file)
    torch.manual_seed(0)
    model = kan.KAN(width=[train_x.shape[1], 16, 16, 1], grid=5, k=3, seed=0, auto_save=False, symbolic_enabled=False,
                    ckpt_path=str(out / "pykan-ckpt"))
    with contextlib.redirect_stderr(io.StringIO()):  # pykan's progress bar
        model.fit(data, opt="Adam", lr=1e-2, steps=2000, log=10**9)
    stem = out / f"pykan-{equation}"
    model.saveckpt(str(stem))
    imported = api.import_checkpoint(Path(f"{stem}_state"), library="pykan", data_file=data_file)
    return save_checkpoint(imported.model, out / f"feynman-{equation}.safetensors", imported.provenance, force=True)


def trained(out: Path, name: str, data: Dataset | None) -> tuple[Path, float]:
    started = time.monotonic()
    if name == "conv-fashion":
        assert data is not None
        path = train_conv_fashion(out, data)
    elif name == "effkan-adapted":
        path = train_adapted(out)
    elif name == "conv-digits":
        path = train_conv(out)
    elif name.startswith("feynman-"):
        path = train_pykan(out, name.removeprefix("feynman-"))
    else:
        path = train_fashion(out, name)
    return path, time.monotonic() - started


def drop(task: str, source: dict[str, Any], result: dict[str, Any]) -> float:
    """Accuracy points lost (classification) or the relative MSE increase (regression)."""
    before, after = Metrics.from_json(source), Metrics.from_json(result)
    if task == "classification":
        assert before.accuracy is not None and after.accuracy is not None
        return 100 * (before.accuracy - after.accuracy)
    assert before.mse is not None and after.mse is not None
    return after.mse / before.mse - 1


def compressed(out: Path, name: str, source: Checkpoint, search: str, train_s: float, max_drop: float,
               data: Dataset | None, verbose: bool = False, cached: bool = True,
               methods: tuple[str, ...] = COMPRESS_METHODS) -> dict[str, Any]:
    source_test = api.evaluate_model(source, data)[1].to_json()  # before the clock starts
    row: dict[str, Any] = {"source": name, "train_s": round(train_s, 1),
                           "search": search if cached else f"{search}, no feature cache",
                           "source_bytes": Path(source.header.path).stat().st_size,
                           "source_test": _headline(source_test)}
    limit, cache.CACHE_BYTES = cache.CACHE_BYTES, cache.CACHE_BYTES if cached else 0
    started = time.monotonic()
    try:
        small, provenance, trials = api.compress(
            source, api.CompressOptions(max_drop=max_drop, search=search, methods=methods), data,
            on_trial=(lambda trial: print(f"    trial {trial.to_json()}", flush=True)) if verbose else None,
            on_progress=(lambda progress: print(f"    {progress.describe()}", flush=True)) if verbose else None)
    except KanCompressError as error:
        print(f"{name} {search}: {error}", flush=True)
        return {**row, "compress_s": round(time.monotonic() - started, 1), "bytes": None,
                "peak_mb": round(peak_memory_mb())}
    finally:
        cache.CACHE_BYTES = limit
    seconds = time.monotonic() - started
    path = save_checkpoint(small, out / f"{name}-{search}.safetensors", api.lean_provenance(provenance), force=True)
    task = provenance["test"]["task"]
    return {**row, "compress_s": round(seconds, 1), "ratio": round(seconds / train_s, 2), "bytes": path.stat().st_size,
            "method": provenance["method"], "k": provenance["k"], "codebook_dtype": provenance["codebook_dtype"],
            "trials": len(trials), "task": task, "val_drop": drop(task, provenance["source_val"], provenance["val"]),
            "test_drop": drop(task, source_test, provenance["test"]), "peak_mb": round(peak_memory_mb())}


def _headline(metrics: dict[str, Any]) -> str:
    return f"{100 * metrics['accuracy']:.2f} %" if metrics["task"] == "classification" else f"MSE {metrics['mse']:.3g}"


def batchnorm_effect(source: Checkpoint) -> dict[str, float]:
    """Validation accuracy of the source clustered at k = 16 (no fine-tuning), with the source's BatchNorm
    statistics and with statistics re-estimated on the training split (`compress.policy.reestimate_batchnorm`)."""
    from kancompress.compress.policy import reestimate_batchnorm
    from kancompress.data import split_validation
    from kancompress.train import evaluate

    data = api.load_data("digits")
    split = split_validation(data, 0.1, seed=0)
    clustered, _ = api.cluster(source.model, api.ClusterConfig(k=16))
    kept = evaluate(clustered, split.val_x, split.val_y).accuracy
    reestimate_batchnorm(clustered, split.train_x)
    fresh = evaluate(clustered, split.val_x, split.val_y).accuracy
    base = evaluate(source.model, split.val_x, split.val_y).accuracy
    assert kept is not None and fresh is not None and base is not None
    return {"source": 100 * base, "kept": 100 * kept, "reestimated": 100 * fresh}


def as_markdown(rows: list[dict[str, Any]], bn: dict[str, float] | None, command: str, wall: float) -> str:
    lines = [
        "# compress at post-training cost: training time vs compress time, bytes and drop",
        "",
        f"`{command}` at commit {stamp.commit()}, torch {torch.__version__}, Python {platform.python_version()}, "
        f"{torch.get_num_threads()} threads; {wall / 60:.0f} min wall. Seed 0. `compress --max-drop 0.5`: accuracy "
        "points for classification, a relative MSE increase for regression, judged on each source's validation "
        "split; test drop only reported. Bytes: files on disk (the source as trained or imported; the compressed file "
        "with lean metadata). × train: compress time over the source's own training time, both measured in this "
        "run on this machine. Peak MB: the process's peak resident memory when that row finished (a high-water mark over "
        "the whole run, so only a row that raises it measures itself; run a source alone to measure it).",
        "",
        "| source | test | bytes | train (s) | search | compress (s) | × train | bytes | method, k, codebooks "
        "| trials | val drop | test drop | peak MB |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        head = f"| {r['source']} | {r.get('source_test', '')} | {r.get('source_bytes', 0):,} | {r['train_s']:.0f} |"
        if r["bytes"] is None:
            lines.append(f"{head} {r['search']} | {r['compress_s']:.0f} | {r['compress_s'] / r['train_s']:.2f} | - | "
                         f"nothing within budget | | | | {r.get('peak_mb', '')} |")
            continue
        unit = "" if r["task"] == "classification" else " (rel. MSE)"
        lines.append(f"{head} {r['search']} | {r['compress_s']:.0f} | {r['ratio']:.2f} | {r['bytes']:,} | "
                     f"{r['method']}, {r['k']}, {r['codebook_dtype']} | {r['trials']} | {r['val_drop']:+.3g}{unit} | "
                     f"{r['test_drop']:+.3g}{unit} | {r.get('peak_mb', '')} |")
    if bn is not None:
        lines += ["", "BatchNorm statistics after clustering (conv-digits, k = 16 in every layer, no fine-tuning; "
                  "validation accuracy):", "",
                  f"source {bn['source']:.2f} %; clustered with the source's statistics {bn['kept']:.2f} %; "
                  f"with statistics re-estimated on the training split {bn['reestimated']:.2f} %."]
    return "\n".join(lines) + "\n"


def as_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    fields = sorted({key for row in rows for key in row})
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", default=",".join(SOURCES), help=f"comma-separated, of: {', '.join(SOURCES)}")
    parser.add_argument("--thorough", default="", help="sources also compressed with --search thorough")
    parser.add_argument("--uncached", default="", help="sources also compressed without the first layer's feature cache")
    parser.add_argument("--max-drop", type=float, default=0.5)
    parser.add_argument("--methods", default=",".join(COMPRESS_METHODS), help="compress --methods for every source")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-compress"))
    parser.add_argument("--conv-subset", type=int, default=6000, help="conv-fashion: first N training images")
    parser.add_argument("--stem", default="bench_compress", help="result file names (a partial run keeps its own)")
    parser.add_argument("--write-results", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="print compress's progress and every trial")
    args = parser.parse_args()
    chosen = [name for name in args.sources.split(",") if name]
    thorough = {name for name in args.thorough.split(",") if name}
    uncached = {name for name in args.uncached.split(",") if name}
    unknown = [name for name in [*chosen, *thorough, *uncached] if name not in SOURCES]
    if unknown:
        raise SystemExit(f"unknown source {unknown[0]!r}; choose from: {', '.join(SOURCES)}")
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    bn = None
    for name in chosen:
        data = fashion_subset(args.conv_subset) if name == "conv-fashion" else None
        path, train_s = trained(args.out, name, data)
        source = load_checkpoint(path)
        print(f"{name}: trained in {train_s:.0f} s; peak memory so far {peak_memory_mb():,.0f} MB", flush=True)
        if name == "conv-digits":
            bn = batchnorm_effect(source)
        runs = [("fast", True), *([("thorough", True)] if name in thorough else []),
                *([("fast", False)] if name in uncached else [])]
        for search, cached in runs:
            rows.append(compressed(args.out, name, source, search, train_s, args.max_drop, data, args.verbose,
                                   cached, tuple(args.methods.split(","))))
            print(f"  {rows[-1]}", flush=True)
    command = "python examples/bench_compress.py " + " ".join(sys.argv[1:])
    text = as_markdown(rows, bn, command.strip(), time.monotonic() - started)
    print(text)
    targets = [args.out] + ([RESULTS] if args.write_results else [])
    for folder in targets:
        (folder / f"{args.stem}.md").write_text(text)
        (folder / f"{args.stem}.csv").write_text(as_csv(rows))


if __name__ == "__main__":
    main()
