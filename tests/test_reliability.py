"""Reliability: fuzzed checkpoints, resumable training, interrupted runs that leave nothing behind."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from conftest import tiny_model
from kancompress import api
from kancompress.format import checkpoint as checkpoint_format
from kancompress.format import files
from kancompress.cli import app
from kancompress.format.checkpoint import load_checkpoint, save_checkpoint
from kancompress.format.state import load_train_state, state_path_for
from kancompress.data import load_dataset, split_validation
from kancompress.errors import KanCompressError
from kancompress.train import TrainConfig, fit


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One seeded mutation: truncation, byte flips (header or body), or a rewritten header value."""
    header_len = int.from_bytes(data[:8], "little")
    choice = rng.randrange(5)
    if choice == 0:
        return data[: rng.randrange(len(data))]
    if choice in (1, 2):  # flip bytes in the header (1) or anywhere (2)
        out = bytearray(data)
        limit = 8 + header_len if choice == 1 else len(data)
        for _ in range(rng.randint(1, 4)):
            out[rng.randrange(limit)] = rng.randrange(256)
        return bytes(out)
    header = json.loads(data[8 : 8 + header_len])
    if choice == 3:  # change a metadata value (nested JSON included)
        key = rng.choice(sorted(header["__metadata__"]))
        value = header["__metadata__"][key]
        replacements = ['"x"', "1e999", "[]", "{}", "null", "-1", "99999999", '{"model": "kan"}', value[: len(value) // 2]]
        try:
            inner = json.loads(value)
        except json.JSONDecodeError:
            inner = None
        if isinstance(inner, dict) and inner:
            field = rng.choice(sorted(inner))
            inner[field] = json.loads(rng.choice(replacements[1:8]))
            header["__metadata__"][key] = json.dumps(inner)
        elif isinstance(inner, list) and inner and isinstance(inner[0], dict):
            inner[0][rng.choice(sorted(inner[0]))] = json.loads(rng.choice(replacements[1:8]))
            header["__metadata__"][key] = json.dumps(inner)
        else:
            header["__metadata__"][key] = rng.choice([*replacements, 5])  # also a non-string value
    else:  # change a tensor entry's shape, dtype or offsets
        name = rng.choice(sorted(k for k in header if k != "__metadata__"))
        field = rng.choice(["shape", "dtype", "data_offsets"])
        header[name][field] = rng.choice([[1], [0], [2, 2], "F16", "I64", "U8", [0, 1 << 40], "??", None])
    encoded = json.dumps(header).encode()
    return len(encoded).to_bytes(8, "little") + encoded + data[8 + header_len :]


def fuzz(tmp_path: Path, kind: str, cases: int) -> dict[str, int]:
    model = tiny_model(["kan", "fastkan", "gramkan"][cases % 3], kind)
    original = checkpoint_format.checkpoint_bytes(model, {"dataset": "digits"})
    rng = random.Random(f"{kind}-{cases}")
    outcome = {"loaded": 0, "refused": 0}
    path = tmp_path / "fuzz.safetensors"
    for _ in range(cases):
        path.write_bytes(mutate(original, rng))
        try:
            loaded = load_checkpoint(path)
            loaded.model(torch.zeros(2, 6))  # a checkpoint that loads must also run
            outcome["loaded"] += 1
        except KanCompressError as exc:
            assert "\n" not in str(exc)
            outcome["refused"] += 1
    return outcome


@pytest.mark.parametrize("kind", ["dense", "meta", "clustered"])
def test_fuzzed_checkpoints_short(tmp_path: Path, kind: str) -> None:
    outcome = fuzz(tmp_path, kind, 150)
    assert outcome["refused"] > 50


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["dense", "meta", "clustered"])
def test_fuzzed_checkpoints_long(tmp_path: Path, kind: str) -> None:
    outcome = fuzz(tmp_path, kind, 1500)
    assert outcome["refused"] > 500


def test_resume_reaches_the_same_weights_as_an_uninterrupted_run() -> None:
    data = split_validation(load_dataset("digits"))
    config = TrainConfig(epochs=4, batch_size=64, patience=0, seed=1)

    def fresh() -> torch.nn.Module:
        torch.manual_seed(1)
        return tiny_model("kan", "meta", (64, 8, 10))

    full_model = fresh()
    full = fit(full_model, data, api.parameter_groups(full_model, 1e-3, 1e-3, 1e-2), config)
    states: list[dict] = []
    first = fresh()
    fit(first, data, api.parameter_groups(first, 1e-3, 1e-3, 1e-2), TrainConfig(**{**config.__dict__, "epochs": 2}),
        on_state=states.append)
    resumed_model = fresh()  # a new process would rebuild the model from scratch, then load the state
    resumed = fit(resumed_model, data, api.parameter_groups(resumed_model, 1e-3, 1e-3, 1e-2), config,
                  resume=states[-1])
    for name, tensor in full_model.state_dict().items():
        assert torch.equal(tensor, resumed_model.state_dict()[name]), name  # bit-identical on CPU
    assert [r.val.accuracy for r in resumed.epochs] == [r.val.accuracy for r in full.epochs]


def _cli(*args: str | Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "kancompress", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_mid_epoch_then_resume(tmp_path: Path) -> None:
    out = tmp_path / "m.safetensors"
    args = ("train", "--meta", "--epochs", "6", "--batch-size", "4", "--patience", "0", "--hidden", "8", "-o", out)
    process = _cli(*args)
    state = state_path_for(out)
    deadline = time.time() + 120
    while not state.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # into the next epoch
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert state.exists() and not out.exists()
    saved, job = load_train_state(state)  # the last completed epoch's state is intact
    assert 1 <= saved["epoch"] < 6 and job["command"] == "train"
    done = subprocess.run([sys.executable, "-m", "kancompress", "train", "--resume", "-o", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert out.exists() and not state.exists()
    reference = tmp_path / "ref.safetensors"
    again = subprocess.run([sys.executable, "-m", "kancompress", *map(str, args[:-1]), str(reference)],
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    resumed, uninterrupted = load_checkpoint(out).model.state_dict(), load_checkpoint(reference).model.state_dict()
    assert all(torch.equal(resumed[name], uninterrupted[name]) for name in resumed)


def test_existing_state_needs_resume_or_force(tmp_path: Path) -> None:
    out = tmp_path / "m.safetensors"
    state_path_for(out).write_bytes(b"state")
    result = CliRunner().invoke(app, ["train", "--epochs", "1", "-o", str(out)])
    assert result.exit_code == 1 and "--resume" in result.output
    result = CliRunner().invoke(app, ["train", "--resume", "-o", str(out)])
    assert result.exit_code == 1 and "not a readable kancompress training state" in result.output


def test_interrupted_cluster_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = save_checkpoint(tiny_model("kan", "dense"), tmp_path / "d.safetensors")

    def interrupted(_fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "fsync", interrupted)  # Ctrl-C while the output is being written
    result = CliRunner().invoke(app, ["cluster", str(source), "-k", "4", "-o", str(tmp_path / "c.safetensors")])
    assert result.exit_code == 130 and "no output was written" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.safetensors"]


@pytest.mark.parametrize("reassign", [False, True])
def test_resumed_finetune_is_bit_identical_with_and_without_reassign(tmp_path: Path, reassign: bool) -> None:
    """The state is taken after the epoch's re-assignment, so a resumed `finetune --reassign` continues exactly."""
    import copy

    from kancompress.format.checkpoint import load_checkpoint

    torch.manual_seed(3)
    source = tiny_model("kan", "meta", (64, 8, 10))
    clustered, _ = api.cluster(source, api.ClusterConfig(k=4))
    path = save_checkpoint(clustered, tmp_path / "c.safetensors", {"dataset": "digits"})
    config = TrainConfig(epochs=4, batch_size=64, patience=0, seed=2)
    reference = source if reassign else None

    def run(epochs: int, resume: dict | None = None, states: list | None = None) -> api.TrainResult:
        options = api.FinetuneOptions("digits", lr=1e-2, train=TrainConfig(**{**config.__dict__, "epochs": epochs}),
                                      device="cpu")
        return api.finetune(load_checkpoint(path), options, reassign_from=reference, resume=resume,
                            on_state=(lambda state: states.append(copy.deepcopy(state))) if states is not None else None)

    full = run(4)
    states: list[dict] = []
    run(2, states=states)
    resumed = run(4, resume=states[-1])
    for name, tensor in full.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    if reassign:
        assert full.provenance["reassigned_per_epoch"][2:] == resumed.provenance["reassigned_per_epoch"]


@pytest.mark.parametrize("kind,coding,dtype", [
    ("clustered", "rans", "int8"), ("clustered", "packed", "float32"), ("clustered", "packed", "float16"),
    ("clustered", "packed", "bfloat16"), ("dense", "", ""), ("meta", "", ""),
])
def test_every_flipped_byte_and_bit_is_refused(tmp_path: Path, kind: str, coding: str, dtype: str) -> None:
    """Checksums over the metadata and every tensor: a flipped byte or bit anywhere in a file of any storage form is
    refused with one error, never loaded as a silently different model."""
    from kancompress.errors import FormatError

    model = tiny_model("gramkan", kind, (6, 5, 3))  # gram: extras (norms, β) in the file too
    if kind == "clustered":
        model.edges.codebook_dtype, model.edges.index_coding = dtype, coding
    data = checkpoint_format.checkpoint_bytes(model, {"dataset": "digits"})
    path = tmp_path / "flip.safetensors"
    rng = random.Random(0)
    loaded_silently = []
    for position in range(len(data)):
        for mask in (0xFF, 1 << rng.randrange(8)):  # the whole byte, and one bit of it
            flipped = bytearray(data)
            flipped[position] ^= mask
            path.write_bytes(bytes(flipped))
            try:
                load_checkpoint(path)
            except FormatError:
                continue
            loaded_silently.append((position, mask))
    assert loaded_silently == [], f"{len(loaded_silently)} of {2 * len(data)} flips loaded: {loaded_silently[:5]}"


def test_files_others_can_use(tmp_path: Path) -> None:
    """Outputs follow the umask, `.pt` exports load with torch.load, import -> export -> import keeps the dataset."""
    import os
    import stat

    from kancompress.format.header import read_header

    runner = CliRunner()
    dense, exported, again = tmp_path / "d.safetensors", tmp_path / "e.safetensors", tmp_path / "i.safetensors"
    old = os.umask(0o022)
    try:
        assert runner.invoke(app, ["train", "--epochs", "1", "--hidden", "4", "-o", str(dense)]).exit_code == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(dense.stat().st_mode) == 0o644
    assert runner.invoke(app, ["export", str(dense), "--to", "efficient-kan", "-o", str(exported)]).exit_code == 0
    assert runner.invoke(app, ["import", str(exported), "-o", str(again)]).exit_code == 0
    assert read_header(again).provenance["dataset"] == "digits"
    assert runner.invoke(app, ["eval", str(again)]).exit_code == 0
    pt = tmp_path / "e.pt"
    assert runner.invoke(app, ["export", str(dense), "--to", "efficient-kan", "-o", str(pt)]).exit_code == 0
    state = torch.load(pt, weights_only=True)
    assert set(state) == set(load_file(str(exported)))
    result = runner.invoke(app, ["export", str(dense), "--to", "efficient-kan", "-o", str(tmp_path / "e.bin")])
    assert result.exit_code == 1 and "extension" in result.output


def test_decoded_size_cap_refuses_before_allocating(tmp_path: Path) -> None:
    """A small file declaring a huge model is refused from its header, before anything is allocated."""
    from kancompress.config import default_config
    from kancompress.errors import FormatError
    from kancompress.format.checkpoint import load_checkpoint as load

    path = tmp_path / "big.safetensors"
    save_checkpoint(tiny_model("kan", "dense", (64, 8, 10)), path)
    with pytest.raises(FormatError, match="above the limit"):
        load(path, max_decoded_bytes=100)
    assert default_config("kan", (4, 3)).num_edges == [12]
    result = CliRunner().invoke(app, ["--max-decoded-bytes", "100", "eval", str(path), "--dataset", "digits"])
    assert result.exit_code == 1 and "--max-decoded-bytes" in result.output


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("kind", ["dense", "clustered"])
def test_models_trace_with_torch_jit(kind: str) -> None:
    """A loaded model traces (the codebook-space forward used `int.bit_length` on sizes, which are tensors while
    tracing). check_trace is off: torch's re-trace check compares mangled module type names, not the graph."""
    model = tiny_model("kan", kind, (6, 5, 3)).eval()
    x = torch.rand(4, 6)
    with torch.no_grad():
        traced = torch.jit.trace(model, x, check_trace=False)
        assert torch.allclose(traced(x), model(x))
        assert torch.allclose(traced(x + 0.5), model(x + 0.5))


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("delay", [0.2, 0.8])
def test_ctrl_c_at_any_moment_is_one_line(tmp_path: Path, delay: float) -> None:
    """SIGINT while the command is still importing torch or building the model: one line, exit 130, no file."""
    out = tmp_path / "m.safetensors"
    process = subprocess.Popen([sys.executable, "-m", "kancompress", "train", "--epochs", "50", "-o", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=_sigint_default)  # a shell's background job inherits SIGINT ignored
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    assert not out.exists()
