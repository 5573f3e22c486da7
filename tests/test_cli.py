"""The CLI end to end through Typer's runner, and its one-line errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import save_file
import torch
from typer.testing import CliRunner

from kancompress.config import CONV_MODEL_NAMES, MODEL_NAMES
from kancompress.cli import app
from kancompress.format.header import read_header

runner = CliRunner()


def run(*args: str | Path) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def assert_one_line_error(code: int, output: str, *fragments: str) -> None:
    assert code == 1, output
    lines = [line for line in output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), output
    assert "Traceback" not in output
    for fragment in fragments:
        assert fragment in lines[0], output


def test_help_lists_commands() -> None:
    """Every registered command is listed in --help's command panel (a line starting with its name), and the
    set of commands is the documented one."""
    code, output = run("--help")
    assert code == 0
    names = {command.name or (command.callback.__name__ if command.callback else "") for command in app.registered_commands}
    assert names == {"train", "cluster", "finetune", "compress", "sweep", "eval", "inspect", "import", "export", "predict"}
    panel = output[output.index("Commands"):]
    listed = {line.strip("│ ").split()[0] for line in panel.splitlines()[1:] if line.strip("│ ╰─")}
    assert names <= listed, (names - listed, output)


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_pipeline_train_cluster_finetune_eval_inspect(tmp_path: Path, model: str) -> None:
    meta, clustered, tuned = tmp_path / "m.safetensors", tmp_path / "c.safetensors", tmp_path / "f.safetensors"
    code, output = run("train", "--meta", "--model", model, "--epochs", "2", "--hidden", "8", "-o", meta)
    assert code == 0, output
    assert "test accuracy" in output and meta.exists()
    code, output = run("eval", meta, "--json")
    assert code == 0, output
    result = json.loads(output)
    assert result["kind"] == "meta" and result["dataset"] == "digits" and result["n"] == 450
    code, output = run("cluster", meta, "-k", "8", "--layer-k", "1=4", "-o", clustered)
    assert code == 0, output
    code, output = run("finetune", clustered, "--epochs", "1", "-o", tuned)
    assert code == 0, output
    code, output = run("eval", tuned, "--json")
    assert code == 0 and json.loads(output)["kind"] == "clustered"
    decoded = json.loads(output)
    code, output = run("eval", tuned, "--json", "--fc-forward", "gather")
    assert code == 0, output
    gathered = json.loads(output)
    assert gathered["fc_forward"] == {"0": ["gather"], "1": ["gather"]}
    assert gathered["accuracy"] == decoded["accuracy"] and abs(gathered["loss"] - decoded["loss"]) < 1e-5
    assert_one_line_error(*run("eval", meta, "--fc-forward", "onehot"), "needs a clustered fully-connected")
    code, output = run("inspect", tuned, "--json")
    assert code == 0, output
    report = json.loads(output)
    assert [row["k"] for row in report["layers"]] == [8, 4]
    assert [row["bits"] for row in report["layers"]] == [3, 2]
    assert report["file_bytes"] == tuned.stat().st_size and report["projected"] is False
    code, output = run("inspect", meta)
    assert code == 0 and "projected at k=16" in output


def test_train_existing_output_needs_force(tmp_path: Path) -> None:
    target = tmp_path / "m.safetensors"
    target.write_bytes(b"precious")
    assert_one_line_error(*run("train", "--epochs", "1", "-o", target), "already exists", "--force")
    assert target.read_bytes() == b"precious"


@pytest.mark.parametrize(
    "args,fragments",
    [
        (("train", "--dataset", "imagenet"), ("unknown dataset 'imagenet'", "digits")),
        (("train", "--model", "mlp"), ("unknown model 'mlp'", "kan")),
        (("train", "--meta", "--meta-sharing", "none"), ("--meta-sharing",)),
        (("eval", "nowhere.safetensors"), ("no such file",)),
        (("inspect", "nowhere.safetensors"), ("no such file",)),
        (("cluster", "nowhere.safetensors"), ("no such file",)),
    ],
)
def test_bad_names_and_missing_files(tmp_path: Path, args: tuple[str, ...], fragments: tuple[str, ...]) -> None:
    assert_one_line_error(*run(*args, *(("-o", tmp_path / "x.safetensors") if args[0] == "train" else ())), *fragments)
    assert not (tmp_path / "x.safetensors").exists()


def test_data_folder_without_idx_files(tmp_path: Path) -> None:
    out = tmp_path / "x.safetensors"
    assert_one_line_error(*run("train", "--dataset", "mnist", "--data-dir", tmp_path, "-o", out), "IDX files not found")
    assert not out.exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "dense.safetensors"
    code, output = run("train", "--epochs", "1", "--hidden", "8", "-o", path)
    assert code == 0, output
    return path


def test_cluster_bad_k_and_kinds(tmp_path: Path, trained: Path) -> None:
    out = tmp_path / "c.safetensors"
    assert_one_line_error(*run("cluster", trained, "-k", "1", "-o", out), "k >= 2")
    assert_one_line_error(*run("cluster", trained, "--layer-k", "1=100", "-o", out), "layer 1 (k=100, 80 edges)")
    capped = tmp_path / "capped.safetensors"
    code, output = run("cluster", trained, "-k", "100", "-o", capped)  # -k above a layer's edges: capped, said
    assert code == 0 and "note: layer 1 has 80 edges: its k is capped at 80" in output
    assert [entry.k for entry in read_header(capped).indices] == [100, 80]
    assert_one_line_error(*run("cluster", trained, "--layer-k", "x", "-o", out), "LAYER=K")
    assert not out.exists()
    assert_one_line_error(*run("finetune", trained, "-o", out), "needs a clustered checkpoint")
    assert run("cluster", trained, "-k", "4", "-o", out)[0] == 0
    assert_one_line_error(*run("cluster", out, "-k", "4", "-o", tmp_path / "cc.safetensors"), "already clustered")
    assert_one_line_error(*run("cluster", trained, "-k", "4", "-o", trained, "--force"), "output is the input")


def test_foreign_and_corrupted_checkpoints(tmp_path: Path, trained: Path) -> None:
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(3)}, str(foreign))
    assert_one_line_error(*run("eval", foreign), "not a kancompress checkpoint")
    truncated = tmp_path / "t.safetensors"
    truncated.write_bytes(trained.read_bytes()[:-10])
    assert_one_line_error(*run("eval", truncated))
    assert_one_line_error(*run("inspect", truncated))


def test_import_fixture_then_cluster(tmp_path: Path) -> None:
    fixtures = Path(__file__).parent / "fixtures"
    out = tmp_path / "e.safetensors"
    code, output = run("import", fixtures / "effkan-digits.safetensors", "-o", out, "--dataset", "digits")
    assert code == 0, output
    code, output = run("eval", out, "--json")
    expected = json.loads((fixtures / "effkan-digits.json").read_text())
    result = json.loads(output)
    assert code == 0 and result["n"] == expected["n_test"]
    assert result["accuracy"] == pytest.approx(expected["test_accuracy"], abs=0.5 / expected["n_test"])
    assert run("cluster", out, "-k", "16", "-o", tmp_path / "c.safetensors")[0] == 0
    assert_one_line_error(*run("import", fixtures / "effkan-digits.json", "-o", tmp_path / "j.safetensors"),
                          "weights_only")


@pytest.mark.parametrize("model", CONV_MODEL_NAMES)
def test_conv_pipeline_on_tiny_channels(tmp_path: Path, model: str) -> None:
    paths = {name: tmp_path / f"{name}.safetensors" for name in ("meta", "c", "f")}
    channels = [arg for c in (4, 8, 8, 8) for arg in ("--channels", str(c))]
    code, output = run("train", "--conv", "--meta", "--model", model, *channels, "--epochs", "1", "-o", paths["meta"])
    assert code == 0, output
    code, output = run("cluster", paths["meta"], "-k", "8", "-o", paths["c"])
    assert code == 0, output
    code, output = run("finetune", paths["c"], "--epochs", "1", "-o", paths["f"])
    assert code == 0, output
    report = json.loads(run("inspect", paths["f"], "--json")[1])
    assert [row["n"] for row in report["layers"]] == [1 * 4 * 9, 4 * 8 * 9, 8 * 8 * 9, 8 * 8 * 9]
    assert report["extras_bytes"] > 0 and "head.linear.weight" in report["extra_tensors"]
    assert json.loads(run("eval", paths["f"], "--json")[1])["kind"] == "clustered"


def test_help_version_and_inspect_do_not_import_torch() -> None:
    """`--help`, `--version` and `inspect` read no tensors, so they must not pay for importing torch."""
    import subprocess
    import sys

    golden = Path(__file__).parent / "golden" / "v2-fc-kan-rans-int8.safetensors"
    for argv in (["--help"], ["--version"], ["inspect", str(golden)], ["inspect", str(golden), "--json"]):
        probe = ("import sys\nfrom kancompress.cli import app\n"
                 f"sys.argv = ['kancompress', *{argv!r}]\n"
                 "try:\n    app()\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
                 "sys.stderr.write('TORCH=%s' % ('torch' in sys.modules))\n")
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert "TORCH=False" in result.stderr, argv


@pytest.mark.parametrize("name", ["v2-fc-kan-rans-int8", "v2-conv-gramkan-packed", "v1-fc-fastkan-meta"])
def test_inspect_shows_every_number_whole_in_80_columns(name: str) -> None:
    """Piped or in an 80-column terminal, no cell is cut to '…' (the table turns vertical instead)."""
    golden = Path(__file__).parent / "golden" / f"{name}.safetensors"
    code, output = run("inspect", golden)
    assert code == 0, output
    assert "…" not in output and max(len(line) for line in output.splitlines()) <= 80
    assert "r Eq.10" in output and "vs fp32" in output


@pytest.mark.parametrize("command", ["train", "cluster", "finetune", "sweep", "eval", "inspect", "import", "export", "predict"])
def test_help_shows_defaults_and_no_value_placeholder_for_flags(command: str) -> None:
    """Every option with a value shows its default (or is required); flags show no `<bool>`."""
    import os

    result = CliRunner(env={**os.environ, "COLUMNS": "200"}).invoke(app, [command, "--help"])
    assert result.exit_code == 0
    options: list[str] = []  # one text per option, its wrapped continuation lines joined
    for line in result.output.splitlines():
        if line.startswith(("│ -", "│ *")):
            options.append(line)
        elif options and line.startswith("│ "):
            options[-1] += " " + line.strip("│ ")
    assert options
    for line in options:
        if "--help" in line:
            continue
        assert "<bool>" not in line, line
        if "<" in line and "[required]" not in line:
            assert "[default:" in line or "default" in line, line


def test_json_output_of_train_and_finetune(tmp_path: Path) -> None:
    def last_json(output: str) -> dict:  # progress lines go to stderr, which the test runner mixes in first
        return json.loads(output[output.index("\n{") + 1 :] if not output.startswith("{") else output)

    trained, clustered, tuned = (tmp_path / f"{n}.safetensors" for n in ("t", "c", "f"))
    code, output = run("train", "--epochs", "1", "--hidden", "4", "-o", trained, "--json")
    assert code == 0 and last_json(output)["test"]["task"] == "classification"
    code, output = run("cluster", trained, "-k", "4", "-o", clustered, "--json")
    assert code == 0 and last_json(output)["k"] == [4, 4]
    code, output = run("finetune", clustered, "--epochs", "1", "-o", tuned, "--json")
    assert code == 0 and last_json(output)["kind"] == "clustered"


def test_small_clustered_outputs_keep_lean_provenance_unless_asked(tmp_path: Path) -> None:
    """A 6-4-... digits model's clustered file has ~100 B of tensors: the full history would outweigh them, so
    cluster and finetune keep the dataset only and say so; --full-metadata keeps it all; both flags contradict."""
    trained = tmp_path / "t.safetensors"
    assert run("train", "--epochs", "1", "--hidden", "4", "-o", trained)[0] == 0
    for flags, full in (((), False), (("--full-metadata",), True), (("--lean-metadata",), False)):
        clustered, tuned = tmp_path / f"c{len(flags)}{full}.safetensors", tmp_path / f"f{len(flags)}{full}.safetensors"
        code, output = run("cluster", trained, "-k", "4", "-o", clustered, *flags)
        assert code == 0 and ("note: provenance cut to the dataset" in output) == (not flags), output
        code, output = run("finetune", clustered, "--epochs", "1", "-o", tuned, *flags)
        assert code == 0 and ("--full-metadata keeps it" in output) == (not flags), output
        for path, stage in ((clustered, "cluster"), (tuned, "finetune")):
            provenance = read_header(path).provenance
            assert provenance["dataset"] == "digits"
            assert (provenance.get("stage") == stage) == full, provenance
    code, output = run("cluster", trained, "-k", "4", "-o", tmp_path / "x.safetensors", "--lean-metadata",
                       "--full-metadata")
    assert_one_line_error(code, output, "contradict")
    assert not (tmp_path / "x.safetensors").exists()


def test_usage_errors_are_one_line_with_exit_2() -> None:
    """The installed command (not CliRunner): an unknown option or a missing argument is one `error:` line."""
    import subprocess
    import sys

    for args, expected in ((["train", "--bogus"], "No such option: --bogus"),
                           (["cluster"], "Missing argument 'checkpoint'"),
                           (["cluster", "x.safetensors", "-k", "abc"], "'-k' / '--clusters'")):
        result = subprocess.run([sys.executable, "-m", "kancompress", *args], capture_output=True, text=True)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert lines[0].startswith("error: ") and expected in lines[0] and "--help" in lines[0]


@pytest.mark.parametrize("command", ["train", "cluster", "finetune", "compress", "eval", "inspect", "sweep",
                                     "import", "export", "predict"])
def test_every_help_is_whole_at_80_columns(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 0
    assert "…" not in result.output, [line for line in result.output.splitlines() if "…" in line]
    assert max(len(line) for line in result.output.splitlines()) <= 80
