"""The compression frontier on Fashion-MNIST 784-32-10: bytes on disk against test accuracy, per basis and method.

    python examples/compress_frontier.py                      # kan, fastkan, gramkan; about 21 min on 2 cores
    python examples/compress_frontier.py --models kan --write-results
    python examples/compress_frontier.py --models kan --sources adapted --write-results   # one source

Per basis, a plain KAN and a MetaKAN (seed 0, at most --epochs epochs, early stopping on validation), and for
the B-spline basis also an efficient-kan KAN whose grids `update_grid` adapted (efficient-kan's README recipe,
saved in its layout and imported; `_adapted.py`), then:
- the paper's recipe: `cluster -k 16` + `finetune` (5 epochs at lr_c), packed indices, float32 codebooks;
- `compress --max-drop 0.5` (`--search`, default fast; the older committed files named after their sources are
  from the thorough search, `--search thorough`): per-layer k on the validation split, int8 codebooks, the
  smallest index coding (packed, rANS or context), lean metadata, every default method (cluster, distil a dense
  source into a MetaKAN first, soft); the adapted-grid source with its grids shared (the default, `--grids
  share`) and once more with every input's grid kept (`--grids keep`).
Every choice is made on the validation split; test accuracy is only reported. Writes frontier-fashion-mnist.{md,
csv,png} into --out (and examples/results/ with --write-results); a run of some models or sources only names its
files after them (frontier-fashion-mnist-kan-adapted.md). Needs Fashion-MNIST (apt-get install
dataset-fashion-mnist); the plot needs matplotlib.
"""

from __future__ import annotations

import argparse
import csv
import io
import platform
import sys
import time
from pathlib import Path
from typing import Any

import _stamp as stamp  # examples/_stamp.py (scripts run with examples/ on sys.path)

import torch

from kancompress import api
from kancompress.config import TrainConfig
from kancompress.errors import KanCompressError
from kancompress.format.checkpoint import load_checkpoint, save_checkpoint
from kancompress.report import storage_report

RESULTS = Path(__file__).resolve().parent / "results"
EDGES = 784 * 32 + 32 * 10


def trained(out: Path, model: str, meta: bool, epochs: int, patience: int) -> Path:
    path = out / f"{model}{'-meta' if meta else ''}.safetensors"
    options = api.TrainOptions.build(model=model, meta=meta, dataset="fashion-mnist", hidden=(32,),
                                     train=TrainConfig(epochs=epochs, patience=patience))
    result = api.train(options)
    return save_checkpoint(result.model, path, result.provenance, force=True)


def row(model: str, source: str, method: str, path: Path, val: float | None, test: float, base_test: float,
        seconds: float) -> dict[str, Any]:
    size = path.stat().st_size
    dense = storage_report(load_checkpoint(path).header).dense_bytes
    return {"basis": model, "source": source, "method": method, "bytes": size, "bits_per_edge": 8 * size / EDGES,
            "vs_dense": dense / size, "val": val, "test": test, "test_drop": base_test - test, "seconds": seconds}


def adapted(out: Path, epochs: int) -> Path:
    """An efficient-kan KAN whose grids `update_grid` adapted (`_adapted.py`), saved in efficient-kan's own layout
    and brought in with `kancompress import`, as a user of that library would."""
    from _adapted import train_adapted

    from kancompress.format.checkpoint import save_state_dict
    from kancompress.interop import export_state_dict

    model = train_adapted(api.load_data("fashion-mnist"), epochs=epochs)
    upstream = save_state_dict(export_state_dict(model, "efficient-kan"), out / "effkan-adapted.pt", force=True)
    imported = api.import_checkpoint(upstream, library="efficient-kan", dataset="fashion-mnist")
    return save_checkpoint(imported.model, out / "kan-effkan.safetensors", imported.provenance, force=True)


def compressed(out: Path, model: str, name: str, label: str, source: Any, base_test: float,
               options: api.CompressOptions) -> dict[str, Any] | None:
    tag = name.replace(" ", "-")  # in file names
    started = time.monotonic()
    try:
        small, provenance, _ = api.compress(source, options, on_trial=lambda trial: print(
            f"    {trial.method} k={list(trial.ks)} lr={trial.lr:g}: {trial.bytes:,} B, {trial.val.describe()}",
            flush=True))
    except KanCompressError as error:
        print(f"{model} {name}: compress{label} found nothing within budget ({error})", flush=True)
        return None
    compact = save_checkpoint(small, out / f"{model}-{tag}-compressed{label.replace(' ', '')}.safetensors",
                              api.lean_provenance(provenance), force=True)
    shared = [trial["k"] for trial in provenance["trials"] if trial["method"] == "grids"]  # shared grids per layer
    grids = f", grids={shared[0]}" if shared and provenance["method"].startswith("grids+") else ""
    result = row(model, name, f"compress{label} ({provenance['method']}, k={provenance['k']}{grids})", compact,
                 100 * provenance["val"]["accuracy"], 100 * provenance["test"]["accuracy"], base_test,
                 time.monotonic() - started)
    print(f"  {result}", flush=True)
    return result


SOURCES = {"plain": "plain", "meta": "meta", "adapted": "efficient-kan adapted"}  # --sources: row names


def model_sources(model: str, chosen: list[str]) -> list[str]:
    """The row names of the chosen sources that apply to `model` (adapted grids: B-splines only)."""
    return [SOURCES[key] for key in chosen if key != "adapted" or model == "kan"]


def frontier(out: Path, model: str, epochs: int, patience: int, max_drop: float, chosen: list[str],
             search: str = "fast") -> list[dict[str, Any]]:
    rows = []
    for name in model_sources(model, chosen):
        started = time.monotonic()
        path = adapted(out, epochs) if name == "efficient-kan adapted" else trained(out, model, name == "meta",
                                                                                     epochs, patience)
        source = load_checkpoint(path)
        if name == "efficient-kan adapted":  # an import records no accuracy: measured here
            base_test = 100 * api.evaluate_model(source)[1].headline
        else:
            base_test = 100 * source.header.provenance["test"]["accuracy"]
        rows.append(row(model, name, "uncompressed", path, None, base_test, base_test, time.monotonic() - started))
        print(f"{model} {name}: {base_test:.2f} %", flush=True)
        started = time.monotonic()  # the paper's recipe
        tag = name.replace(" ", "-")
        clustered, provenance = api.cluster(source, api.ClusterConfig(k=16))
        k16 = save_checkpoint(clustered, out / f"{model}-{tag}-k16.safetensors", provenance, force=True)
        tuned = api.finetune(load_checkpoint(k16))
        k16_ft = save_checkpoint(tuned.model, out / f"{model}-{tag}-k16-ft.safetensors", tuned.provenance,
                                 force=True)
        rows.append(row(model, name, "paper k=16 + FT", k16_ft, None, 100 * tuned.test.headline, base_test,
                        time.monotonic() - started))
        variants = [("", api.CompressOptions(max_drop=max_drop, search=search))]
        if name == "efficient-kan adapted":  # every input's grid stored, as before shared grids existed
            variants.append((" --grids keep", api.CompressOptions(max_drop=max_drop, grids="keep", search=search)))
        for label, options in variants:
            result = compressed(out, model, name, label, source, base_test, options)
            if result is not None:
                rows.append(result)
    return rows


def as_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def as_markdown(rows: list[dict[str, Any]], command: str, wall: float, max_drop: float) -> str:
    lines = [
        "# Compression frontier, Fashion-MNIST 784-32-10 (bytes on disk vs test accuracy)",
        "",
        f"`{command}` at commit {stamp.commit()}, torch {torch.__version__}, Python {platform.python_version()}, "
        f"{torch.get_num_threads()} threads; {wall / 60:.0f} min wall. Seed 0. `compress --max-drop {max_drop:g}` "
        "chooses on the validation split; test accuracy is only reported. Sizes are whole files on disk; "
        "vs dense = the dense float32 edge storage over the file.",
        "",
        "| basis | source | method | bytes | bits/edge | vs dense | val (%) | test (%) | test drop | time (s) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        val = f"{r['val']:.2f}" if r["val"] is not None else "-"
        lines.append(f"| {r['basis']} | {r['source']} | {r['method']} | {r['bytes']:,} | {r['bits_per_edge']:.2f} | "
                     f"{r['vs_dense']:.1f}× | {val} | {r['test']:.2f} | {r['test_drop']:+.2f} | {r['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7.5, 4.5))
    for (basis, source), marker in zip(sorted({(r["basis"], r["source"]) for r in rows}), "osD^v<>p"):
        points = [r for r in rows if (r["basis"], r["source"]) == (basis, source)]
        axes.plot([r["bytes"] / 1000 for r in points], [r["test"] for r in points], marker=marker, linestyle=":",
                  label=f"{basis} {source}")
        for r in points:
            axes.annotate(r["method"].split(" (")[0], (r["bytes"] / 1000, r["test"]), fontsize=6)
    axes.set_xscale("log")
    axes.set_xlabel("file size (KB, log scale)")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title("Fashion-MNIST 784-32-10: size vs accuracy")
    axes.legend(fontsize=7)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight", metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="kan,fastkan,gramkan")
    parser.add_argument("--sources", default="plain,meta,adapted", help="plain, meta, adapted (B-spline only)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--max-drop", type=float, default=0.5)
    parser.add_argument("--search", default="fast", choices=("fast", "thorough"),
                        help="compress's search (the committed rows were run with the thorough one, then the only)")
    parser.add_argument("--out", type=Path, default=Path("runs/frontier"))
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    chosen = args.sources.split(",")
    if not chosen or any(key not in SOURCES for key in chosen):
        sys.exit(f"--sources takes a comma-separated subset of {', '.join(SOURCES)}")
    try:
        api.load_data("fashion-mnist")
    except KanCompressError as error:
        sys.exit(f"{error} (apt-get install dataset-fashion-mnist)")
    try:
        import matplotlib  # noqa: F401

        drawing = True
    except ImportError:
        drawing = False
        print("matplotlib is missing (pip install -e '.[plot]'): no PNG")
    models = args.models.split(",")
    sources = sum(len(model_sources(model, chosen)) for model in models)
    adapted_rows = "kan" in models and "adapted" in chosen  # its two compress runs, the longest
    per_source, per_adapted = (2, 8) if args.search == "fast" else (10, 50)  # minutes on 2 cores, measured
    print(f"about {per_source * sources + per_adapted * adapted_rows} min on 2 cores", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    rows = [r for model in models for r in frontier(args.out, model, args.epochs, args.patience, args.max_drop,
                                                    chosen, args.search)]
    command, stem = "python examples/compress_frontier.py", "frontier-fashion-mnist"
    if args.models != parser.get_default("models"):
        command, stem = command + f" --models {args.models}", stem + "-" + "-".join(models)
    if args.sources != parser.get_default("sources"):
        command, stem = command + f" --sources {args.sources}", stem + "-" + "-".join(chosen)
    if args.search != parser.get_default("search"):
        command, stem = command + f" --search {args.search}", stem + "-" + args.search
    files = {f"{stem}.md": as_markdown(rows, command, time.monotonic() - started, args.max_drop).encode(),
             f"{stem}.csv": as_csv(rows).encode()}
    if drawing:
        files[f"{stem}.png"] = plot(rows)
    for name, data in files.items():
        (args.out / name).write_bytes(data)
        if args.write_results:
            (RESULTS / name).write_bytes(data)
    print(files[f"{stem}.md"].decode())


if __name__ == "__main__":
    main()
