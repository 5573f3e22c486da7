"""Start-up time of the CLI's light commands, side by side with importing torch (what they used to pay).

    python examples/bench_cli.py            # prints a table; --write also updates examples/results/bench_cli.md

Each command runs in a fresh process, round by round (interleaved), 7 rounds; the table shows medians.
`--help`, `--version` and `inspect` read no tensors and must not import torch (issue 13: <= 0.5 s each).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import _stamp as stamp  # examples/_stamp.py (scripts run with examples/ on sys.path)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "examples" / "results"
GOLDEN = ROOT / "tests" / "golden" / "v2-fc-kan-rans-int8.safetensors"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--write", action="store_true", help="write examples/results/bench_cli.md")
    args = parser.parse_args()
    cli = [sys.executable, "-m", "kancompress"]
    commands = {
        "kancompress --help": [*cli, "--help"],
        "kancompress --version": [*cli, "--version"],
        "kancompress inspect FILE": [*cli, "inspect", str(GOLDEN)],
        "kancompress inspect FILE --json": [*cli, "inspect", str(GOLDEN), "--json"],
        "python -c 'import torch' (reference)": [sys.executable, "-c", "import torch"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    env = {**os.environ, "COLUMNS": "100"}
    for _ in range(args.rounds):
        for name, argv in commands.items():
            start = time.perf_counter()
            subprocess.run(argv, capture_output=True, check=True, env=env)
            times[name].append(time.perf_counter() - start)
    import torch

    commit = stamp.commit()
    lines = [
        "# CLI start-up time",
        "",
        f"`python examples/bench_cli.py --write` at commit {commit}, torch {torch.__version__}, Python "
        f"{platform.python_version()}, {os.cpu_count()} cores; median of {args.rounds} fresh processes per row, "
        "timed round by round.",
        "",
        "| command | median s | min s |",
        "| --- | ---: | ---: |",
    ]
    for name, values in times.items():
        lines.append(f"| `{name}` | {statistics.median(values):.3f} | {min(values):.3f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        (RESULTS / "bench_cli.md").write_text(text)


if __name__ == "__main__":
    main()
