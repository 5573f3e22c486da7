"""Round trips through the user's data, as a user would run them (the CLI), with the numbers side by side.

    python examples/round_trips.py [--workdir runs/round-trips] [--write]   # about 10 minutes on 2 cores

1. Tabular classification: scikit-learn's bundled wine data (178 rows, 13 features, 3 classes) written as a CSV,
   then `train --meta --data wine.csv --target label` -> `cluster -k 8` -> `finetune` -> `eval`.
2. Image arrays: Fashion-MNIST (needs `apt-get install dataset-fashion-mnist`) exported as raw 0..255 uint8 arrays
   to an .npz, trained through `--data` and through the built-in `--dataset fashion-mnist`, same options; and the
   built-in checkpoint evaluated on an .npz holding exactly the arrays the built-in loader gives (must equal).
3. pykan: a `KAN([2, 6, 1])` trained with pykan 0.2.8 (needs `pip install pykan==0.2.8`) on Feynman I.12.5, saved
   with pykan's dataset dict, imported as a regression model, clustered, fine-tuned with `--data`, evaluated.
Results go to the work folder; `--write` also writes examples/results/round-trips.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import _stamp as stamp  # examples/_stamp.py (scripts run with examples/ on sys.path)

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"
KANCOMPRESS = [sys.executable, "-m", "kancompress"]


def run(*args: str | Path) -> str:
    result = subprocess.run([*KANCOMPRESS, *map(str, args)], capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": "120"})
    if result.returncode != 0:
        raise SystemExit(f"kancompress {' '.join(map(str, args))} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def evaluate(path: Path, *extra: str | Path) -> dict:
    return json.loads(run("eval", path, "--json", *extra))


def pipeline(folder: Path, name: str, train_args: list[str | Path], k: int, ft_args: list[str | Path]) -> dict:
    """train -> cluster -k k -> finetune -> eval; the metrics of each stage and the files' sizes."""
    paths = {stage: folder / f"{name}-{stage}.safetensors" for stage in ("train", "cluster", "ft")}
    start = time.perf_counter()
    run("train", *train_args, "-o", paths["train"], "--force")
    run("cluster", paths["train"], "-k", k, "-o", paths["cluster"], "--force")
    run("finetune", paths["cluster"], *ft_args, "-o", paths["ft"], "--force")
    stages = {stage: evaluate(path) for stage, path in paths.items()}
    sizes = {stage: path.stat().st_size for stage, path in paths.items()}
    return {"metrics": stages, "bytes": sizes, "seconds": round(time.perf_counter() - start, 1)}


def wine(folder: Path) -> dict:
    from sklearn.datasets import load_wine

    bundle = load_wine()
    header = ",".join([*(name.replace(",", " ") for name in bundle.feature_names), "label"])
    rows = [",".join(map(str, [*row, label])) for row, label in zip(bundle.data.tolist(), bundle.target.tolist())]
    csv = folder / "wine.csv"
    csv.write_text(header + "\n" + "\n".join(rows) + "\n")
    return pipeline(folder, "wine", ["--meta", "--data", csv, "--target", "label", "--hidden", "16", "--epochs", "200",
                                     "--lr", "1e-2", "--lr-meta", "1e-2", "--lr-embed", "1e-2"], 8,
                    ["--epochs", "20", "--lr", "1e-3"])


def fashion(folder: Path) -> dict:
    from kancompress.data import _find_idx_folder, _idx_path, read_idx, load_dataset

    source = _find_idx_folder("fashion-mnist", None, False)
    raw = {key: read_idx(_idx_path(source, stem)) for key, stem in (  # type: ignore[arg-type]
        ("train_x", "train-images-idx3-ubyte"), ("train_y", "train-labels-idx1-ubyte"),
        ("test_x", "t10k-images-idx3-ubyte"), ("test_y", "t10k-labels-idx1-ubyte"))}
    npz = folder / "fashion-raw.npz"
    np.savez(npz, **raw)  # uint8 images (N, 28, 28), uint8 labels
    builtin = load_dataset("fashion-mnist")
    scaled = folder / "fashion-scaled.npz"
    np.savez(scaled, train_x=builtin.train_x.numpy(), train_y=builtin.train_y.numpy(), test_x=builtin.test_x.numpy(),
             test_y=builtin.test_y.numpy())
    common: list[str | Path] = ["--meta", "--epochs", "5", "--patience", "0"]
    through_data = pipeline(folder, "fashion-data", [*common, "--data", npz], 16, ["--epochs", "3", "--lr", "1e-3"])
    built_in = pipeline(folder, "fashion-builtin", [*common, "--dataset", "fashion-mnist"], 16,
                        ["--epochs", "3", "--lr", "1e-3"])
    same = {stage: evaluate(folder / f"fashion-builtin-{stage}.safetensors", "--data", scaled)
            for stage in ("train", "cluster", "ft")}
    return {"data": through_data, "builtin": built_in, "builtin_on_npz": same}


def pykan(folder: Path) -> dict:
    import kan

    from kancompress.feynman import feynman_dataset

    train_x, train_y, test_x, test_y = (torch.from_numpy(a) for a in feynman_dataset("I.12.5", 1000, 1000))
    data = folder / "feynman-I.12.5.pt"
    torch.save({"train_input": train_x, "train_label": train_y, "test_input": test_x, "test_label": test_y}, data)
    torch.manual_seed(0)
    model = kan.KAN(width=[2, 6, 1], grid=5, k=3, seed=0, auto_save=False, symbolic_enabled=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    start = time.perf_counter()
    for _ in range(500):
        loss = torch.nn.functional.mse_loss(model(train_x), train_y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        pykan_mse = float(torch.nn.functional.mse_loss(model(test_x), test_y))
    torch.save(model.state_dict(), folder / "pykan_state")
    paths = {stage: folder / f"pykan-{stage}.safetensors" for stage in ("import", "cluster", "ft")}
    run("import", folder / "pykan_state", "--data", data, "-o", paths["import"], "--force")
    run("cluster", paths["import"], "-k", "4", "-o", paths["cluster"], "--force")
    run("finetune", paths["cluster"], "--data", data, "--epochs", "50", "--lr", "1e-3", "-o", paths["ft"], "--force")
    return {"pykan_mse": pykan_mse, "metrics": {stage: evaluate(path) for stage, path in paths.items()},
            "bytes": {stage: path.stat().st_size for stage, path in paths.items()},
            "seconds": round(time.perf_counter() - start, 1)}


def _acc(stage: dict) -> str:
    return f"{100 * stage['accuracy']:.2f} %"


def report(results: dict, commit: str) -> str:
    lines = ["# Round trips through the user's data", "",
             f"`python examples/round_trips.py --write` at commit {commit}, torch {torch.__version__}, Python "
             f"{platform.python_version()}, {os.cpu_count()} cores. Every number comes from `kancompress eval --json`; "
             "sizes are whole files on disk.", ""]
    w = results["wine"]
    lines += ["## Tabular classification: wine.csv (`--data wine.csv --target label`, MetaKAN 13-16-3, k = 8)", "",
              "| stage | test accuracy | bytes |", "| --- | ---: | ---: |"]
    lines += [f"| {stage} | {_acc(w['metrics'][stage])} | {w['bytes'][stage]:,} |" for stage in ("train", "cluster", "ft")]
    lines += ["", f"{w['seconds']} s in all.", ""]
    if "fashion" in results:
        f = results["fashion"]
        lines += ["## Image arrays: Fashion-MNIST as raw uint8 .npz vs the built-in loader (MetaKAN 784-32-10, 5 "
                  "epochs, k = 16, 3 fine-tuning epochs)", "",
                  "| stage | `--data fashion-raw.npz` | `--dataset fashion-mnist` | built-in checkpoint on "
                  "`--data fashion-scaled.npz` |", "| --- | ---: | ---: | ---: |"]
        for stage in ("train", "cluster", "ft"):
            lines.append(f"| {stage} | {_acc(f['data']['metrics'][stage])} | {_acc(f['builtin']['metrics'][stage])} | "
                         f"{_acc(f['builtin_on_npz'][stage])} |")
        lines += ["", f"Through `--data` the model learns the transform 0..255 -> [-1, 1] per channel (stored in the "
                  f"file: {f['data']['bytes']['ft']:,} B vs {f['builtin']['bytes']['ft']:,} B built-in); the built-in "
                  "loader scales the same way, so both runs differ only by float rounding of the inputs. The last "
                  f"column must equal the middle one exactly. {f['data']['seconds']} + {f['builtin']['seconds']} s.", ""]
    if "pykan" in results:
        p = results["pykan"]
        lines += ["## pykan: KAN([2, 6, 1]) on Feynman I.12.5, imported, clustered (k = 4), fine-tuned with --data", "",
                  "| stage | test MSE | bytes |", "| --- | ---: | ---: |",
                  f"| pykan (its own forward) | {p['pykan_mse']:.3e} | |"]
        lines += [f"| {stage} | {p['metrics'][stage]['mse']:.3e} | {p['bytes'][stage]:,} |"
                  for stage in ("import", "cluster", "ft")]
        lines += ["", "The imported model reproduces pykan's MSE; with 18 edges the codebook (4 × 9 floats) saves little "
                  f"(a tiny model: most of the file is header). {p['seconds']} s.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("runs/round-trips"))
    parser.add_argument("--write", action="store_true", help="write examples/results/round-trips.md")
    args = parser.parse_args()
    missing = [name for name in ("kan", "yaml") if __import__("importlib").util.find_spec(name) is None]
    if missing:
        raise SystemExit("the pykan round trip needs pykan: pip install -e '.[dev]' (or pip install pykan==0.2.8)")
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = {"wine": wine(args.workdir)}
    if Path("/usr/share/datasets/fashion-mnist").is_dir():
        results["fashion"] = fashion(args.workdir)
    else:
        print("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist): image round trip skipped")
    results["pykan"] = pykan(args.workdir)
    commit = stamp.commit()
    text = report(results, commit)
    print(text)
    (args.workdir / "round-trips.json").write_text(json.dumps(results, indent=1))
    if args.write:
        (RESULTS / "round-trips.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
