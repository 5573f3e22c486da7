"""`export --to c` against the other runtimes, batch 1, one thread each: the generated C (in-process through ctypes),
onnxruntime (1 intra-op thread), kancompress eager and the efficient-kan formula eager (torch, 1 thread), on the
paper's 784-32-10 KAN, dense and clustered (k = 16, int8 codebooks), side by side in one interleaved run. Also the
flash size of the C object (`size`: text + data, constant data included) at -O2 and -Os against the checkpoint's
tensor bytes, for a Cortex-M4 where Debian's gcc-arm-none-eabi is installed, and the static RAM.

    python examples/bench_c.py            # prints the table; --write also writes examples/results/bench_c.md

Needs a C compiler (gcc or cc) and the onnx extra. Timings are medians of interleaved rounds (every variant timed in
turn, round by round).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import _stamp as stamp  # examples/_stamp.py (scripts run with examples/ on sys.path)

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_speed import EfficientKANFormula, interleaved_medians  # noqa: E402  (efficient-kan's formula; timing)

from kancompress.config import default_config  # noqa: E402
from kancompress.format.checkpoint import payload_bytes  # noqa: E402
from kancompress.interop.arrays import model_arrays  # noqa: E402
from kancompress.interop.c_export import render_c  # noqa: E402
from kancompress.models import KANModel, build_model  # noqa: E402
from kancompress.onnx_export import export_onnx  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
FLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror"]


def compiled(model: KANModel, folder: Path, compiler: str) -> tuple[Any, dict[str, int], int]:
    """(the C predict function through ctypes, flash bytes at -O2 and -Os, static RAM bytes)."""
    export = render_c(model_arrays(model), "kan")
    for file, text in export.files.items():
        (folder / file).write_text(text)
    library = folder / "libkan.so"
    subprocess.run([compiler, "-O2", *FLAGS, "-shared", "-fPIC", str(folder / "kan.c"), "-lm", "-o", str(library)],
                   check=True)
    flash = {}
    for level in ("-O2", "-Os"):
        obj = folder / f"kan{level}.o"
        subprocess.run([compiler, level, *FLAGS, "-c", str(folder / "kan.c"), "-o", str(obj)], check=True)
        text, data = subprocess.run(["size", str(obj)], capture_output=True, text=True,
                                    check=True).stdout.splitlines()[1].split()[:2]
        flash[level] = int(text) + int(data)
    arm = shutil.which("arm-none-eabi-gcc")
    if arm is not None:  # a microcontroller: Cortex-M4 with its single-precision FPU
        obj = folder / "kan-m4.o"
        subprocess.run([arm, "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-Os", *FLAGS,
                        "-c", str(folder / "kan.c"), "-o", str(obj)], check=True)
        text, data = subprocess.run(["arm-none-eabi-size", str(obj)], capture_output=True, text=True,
                                    check=True).stdout.splitlines()[1].split()[:2]
        flash["cortex-m4 -Os"] = int(text) + int(data)
    predict = ctypes.CDLL(str(library)).kan_predict
    predict.argtypes = [ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_float)]
    predict.restype = ctypes.c_int
    return predict, flash, export.ram_bytes


def main() -> None:
    import onnxruntime

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None or shutil.which("size") is None:
        raise SystemExit("bench_c.py needs a C compiler (gcc or cc) and binutils' size")
    started = time.monotonic()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    efficient = EfficientKANFormula((784, 32, 10)).eval()
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in ("kan", "fastkan", "gramkan"):
            config = default_config(name, (784, 32, 10))
            dense = build_model(config).eval()
            clustered = build_model(config, "clustered", [16, 16]).eval()
            clustered.edges.codebook_dtype = "int8"
            for book in clustered.edges.books():
                book.codebook.data.normal_(0, 0.1)
                book.indices.random_(0, 16)
            clustered.edges.round_to_storage()
            x = torch.rand(1, 784) * 2 - 1
            x_c = x.numpy().astype(np.float32).reshape(-1)
            y_c = np.zeros(10, dtype=np.float32)
            pointer = ctypes.POINTER(ctypes.c_float)
            c_in, c_out = x_c.ctypes.data_as(pointer), y_c.ctypes.data_as(pointer)
            functions, sizes = {}, {}
            for kind, model in (("dense", dense), ("k=16", clustered)):
                folder = Path(scratch) / f"{name}-{kind}"
                folder.mkdir()
                functions[kind], flash, ram = compiled(model, folder, compiler)
                sizes[kind] = (flash, ram, payload_bytes(model))
                functions[kind](c_in, c_out)
                with torch.no_grad():
                    reference = model(x).numpy().reshape(-1)
                assert np.abs(y_c - reference).max() <= 1e-4 * max(1.0, np.abs(reference).max()), (name, kind)
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = 1
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                session = onnxruntime.InferenceSession(export_onnx(clustered), options)
            feed = {"input": x.numpy()}
            steps = {
                "C dense": lambda: functions["dense"](c_in, c_out),
                "C k=16": lambda: functions["k=16"](c_in, c_out),
                "onnxruntime k=16": lambda: session.run(None, feed),
                "kancompress eager k=16": lambda: clustered(x),
            }
            if name == "kan":
                steps["efficient-kan eager"] = lambda: efficient(x)
            with torch.no_grad():
                result = interleaved_medians(steps, args.rounds, warmup=5)
            for variant, seconds in result.items():
                rows.append((name, "batch 1", variant, f"{seconds * 1000:.4f}"))
            c16 = result["C k=16"]
            ratios = f"onnxruntime / C k=16 {result['onnxruntime k=16'] / c16:.1f}x"
            if "efficient-kan eager" in result:
                ratios = f"efficient-kan eager / C k=16 {result['efficient-kan eager'] / c16:.1f}x; " + ratios
            rows.append((name, "ratio", "batch 1", ratios))
            for kind, (flash, ram, tensors) in sizes.items():
                m4 = (f"; Cortex-M4 (-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -Os) {flash['cortex-m4 -Os']:,} B"
                      if "cortex-m4 -Os" in flash else "; Cortex-M4: arm-none-eabi-gcc not installed")
                rows.append((name, "size", f"C {kind}", f"flash (text + data) {flash['-O2']:,} B at -O2, "
                             f"{flash['-Os']:,} B at -Os ({flash['-Os'] / tensors:.2f}x the checkpoint's {tensors:,} "
                             f"tensor bytes){m4}; static RAM {ram:,} B"))
    lines = ["# C export against the other runtimes, 784-32-10, batch 1, one thread (ms per call, medians)", "",
             f"`python examples/bench_c.py --write` at commit {stamp.commit()}, torch {torch.__version__}, onnxruntime "
             f"{onnxruntime.__version__}, {Path(compiler).name} "
             f"{subprocess.run([compiler, '-dumpversion'], capture_output=True, text=True).stdout.strip()}, Python "
             f"{platform.python_version()}, {platform.machine()}, {os.cpu_count()} cores, "
             f"{(time.monotonic() - started) / 60:.1f} min wall. C through ctypes (about 1 µs of call overhead "
             "included); k=16 layers store int8 codebooks and 4-bit packed indices.", "",
             "| basis | what | variant | value |", "| --- | --- | --- | --- |"]
    lines += [f"| {basis} | {what} | {variant} | {value} |" for basis, what, variant, value in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        (RESULTS / "bench_c.md").write_text(text)


if __name__ == "__main__":
    main()
