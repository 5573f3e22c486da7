"""Devices and torchrun data parallelism on the CPU (gloo)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from typer.testing import CliRunner

from kancompress.cli import app
from kancompress.distributed import check_same
from kancompress.errors import ConfigError
from kancompress.format.checkpoint import load_checkpoint
from kancompress.config import default_config
from kancompress.data import Split
from kancompress.models import KANModel, build_model
from kancompress.train import evaluate, validate

runner = CliRunner()


def test_device_errors(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--device", "tpu", "-o", str(tmp_path / "m.safetensors")])
    assert result.exit_code == 1 and "unknown device 'tpu'" in result.output
    if not torch.cuda.is_available():
        result = runner.invoke(app, ["train", "--device", "cuda", "-o", str(tmp_path / "m.safetensors")])
        assert result.exit_code == 1 and "no CUDA device" in result.output
    assert not (tmp_path / "m.safetensors").exists()


def _torchrun() -> list[str]:
    found = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    return [found] if found else [sys.executable, "-m", "torch.distributed.run"]


def _two_processes(args: list[str], port: int) -> str:
    """`kancompress ARGS` run by torchrun in 2 CPU processes of one thread each; its stdout (rc 0 asserted)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*_torchrun(), "--nproc-per-node", "2", "--master-port", str(port), "-m", "kancompress",
                           *args], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_torchrun_two_processes_matches_single_process(tmp_path: Path) -> None:
    args = ["train", "--meta", "--epochs", "8", "--patience", "0", "--device", "cpu"]
    multi, single = tmp_path / "ddp.safetensors", tmp_path / "one.safetensors"
    assert _two_processes([*args, "-o", str(multi)], 29517).count("test accuracy") == 1  # rank 0 alone reports
    assert runner.invoke(app, [*args, "-o", str(single)]).exit_code == 0
    accuracy = {}
    for name, path in (("multi", multi), ("single", single)):
        result = runner.invoke(app, ["eval", str(path), "--json"])
        accuracy[name] = json.loads(result.output)["accuracy"]
    assert load_checkpoint(multi).header.provenance["processes"] == 2
    assert abs(accuracy["multi"] - accuracy["single"]) <= 0.02, accuracy



def _model_and_split() -> tuple[KANModel, Split]:
    torch.manual_seed(0)  # the same model and data in every process
    model = build_model(default_config("kan", (6, 5, 3)))
    split = Split(torch.rand(4, 6), torch.zeros(4, dtype=torch.int64), torch.rand(7, 6), torch.randint(0, 3, (7,)))
    return model, split


def _validate_on_rank(rank: int, store: str, results: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2")
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        metrics = validate(*_model_and_split())
        Path(results, f"{rank}.json").write_text(json.dumps([metrics.accuracy, metrics.loss, metrics.n]))
    finally:
        torch.distributed.destroy_process_group()


def test_validation_metrics_are_reduced_across_ranks(tmp_path: Path) -> None:
    torch.multiprocessing.spawn(_validate_on_rank, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    ranks = [json.loads((tmp_path / f"{r}.json").read_text()) for r in range(2)]
    assert ranks[0] == ranks[1]  # the same numbers on every rank, so early stopping agrees
    model, split = _model_and_split()
    whole = evaluate(model, split.val_x, split.val_y)  # one process, the whole validation set
    assert ranks[0][0] == whole.accuracy and ranks[0][2] == whole.n == 7
    assert abs(ranks[0][1] - whole.loss) < 1e-6


def test_torchrun_compress_runs_the_search_in_lockstep(tmp_path: Path) -> None:
    source = tmp_path / "dense.safetensors"
    assert runner.invoke(app, ["train", "--epochs", "3", "--patience", "0", "--device", "cpu", "-o",
                               str(source)]).exit_code == 0
    args = ["compress", str(source), "--max-drop", "2", "--ks", "2,4,16", "--search-steps", "50", "--epochs", "1",
            "--distill-epochs", "1", "--soft-epochs", "1", "--device", "cpu", "--full-metadata"]
    multi, single = tmp_path / "ddp.safetensors", tmp_path / "one.safetensors"
    assert _two_processes([*args, "-o", str(multi)], 29518).count("compressed dense") == 1  # rank 0 alone writes
    assert runner.invoke(app, [*args, "-o", str(single)]).exit_code == 0
    chosen = {name: load_checkpoint(path).header.provenance for name, path in (("multi", multi), ("single", single))}
    assert chosen["multi"]["processes"] == 2 and chosen["single"]["processes"] == 1
    # every decision rests on all-reduced validation sums: the ranks agreed on one search, within the budget
    assert {trial["method"].split()[0] for trial in chosen["multi"]["trials"]} >= {"cluster", "distill"}
    base, val = chosen["multi"]["source_val"]["accuracy"], chosen["multi"]["val"]["accuracy"]
    assert 100 * (base - val) <= 2
    assert abs(base - chosen["single"]["source_val"]["accuracy"]) < 1e-9  # the whole validation split on both


def _check_on_rank(rank: int, store: str, results: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2")
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        outcome = []
        for values in ((1.5, 1.5), (1.5, 2.5)):
            try:
                check_same(values[rank], "K-means of layer 0", torch.device("cpu"))
                outcome.append("same")
            except ConfigError as error:
                outcome.append(str(error))
        Path(results, f"{rank}.json").write_text(json.dumps(outcome))
    finally:
        torch.distributed.destroy_process_group()


def test_ranks_that_computed_different_things_stop_with_one_line(tmp_path: Path) -> None:
    torch.multiprocessing.spawn(_check_on_rank, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    ranks = [json.loads((tmp_path / f"{rank}.json").read_text()) for rank in range(2)]
    assert ranks[0] == ranks[1]  # both ranks stop alike, neither waits on the other
    assert ranks[0][0] == "same"
    assert "the ranks computed different K-means of layer 0 (1.5 against 2.5)" in ranks[0][1]
