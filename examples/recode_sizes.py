"""Lossless re-encoding of clustered checkpoints with today's index coding: the same models, smaller files.

    python examples/recode_sizes.py runs/smallest-fmnist/smallest-s*.safetensors
    python examples/recode_sizes.py --write-results runs/smallest-fmnist/smallest-s*.safetensors

Each file is loaded, its indices re-coded with `--index-coding context` (per layer the smallest of packed, rANS
and context coding) and its bytes counted; every index and codebook entry is checked to come back unchanged.
Nothing is written next to the inputs. With --write-results the table goes to examples/results/recode-sizes.md.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import _stamp as stamp  # examples/_stamp.py (scripts run with examples/ on sys.path)

import torch

from kancompress.format.checkpoint import checkpoint_bytes, load_checkpoint

RESULTS = Path(__file__).resolve().parent / "results"


def recode(path: Path) -> dict[str, object]:
    source = load_checkpoint(path)
    model = source.model
    model.edges.index_coding = "context"  # type: ignore[union-attr]
    data = checkpoint_bytes(model, source.header.provenance)
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder) / path.name
        scratch.write_bytes(data)
        back = load_checkpoint(scratch)
    for a, b in zip(back.model.edges.books(), load_checkpoint(path).model.edges.books()):  # type: ignore[union-attr]
        assert torch.equal(a.indices, b.indices) and torch.equal(a.codebook, b.codebook)
    edges = sum(model.config.num_edges)
    codings = [entry.coding for entry in back.header.indices]
    before = path.stat().st_size
    return {"file": path.name, "k": [e.k for e in source.header.indices], "before": before, "after": len(data),
            "codings": codings, "bits_before": 8 * before / edges, "bits_after": 8 * len(data) / edges}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", type=Path, nargs="+")
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    rows = [recode(path) for path in args.files]
    lines = [
        "# The same clustered files, re-coded with context-adaptive indices",
        "",
        f"`python examples/recode_sizes.py {' '.join(str(p) for p in args.files)}` at commit {stamp.commit()}, "
        f"torch {torch.__version__}, Python {platform.python_version()}. Lossless: every index and codebook entry "
        "reads back unchanged, so accuracy is the file's own.",
        "",
        "| file | k per layer | before (B) | bits/edge | after (B) | bits/edge | codings after |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        lines.append(f"| {r['file']} | {r['k']} | {r['before']:,} | {r['bits_before']:.2f} | {r['after']:,} | "
                     f"{r['bits_after']:.2f} | {', '.join(r['codings'])} |")  # type: ignore[arg-type]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write_results:
        (RESULTS / "recode-sizes.md").write_text(text)


if __name__ == "__main__":
    main()
