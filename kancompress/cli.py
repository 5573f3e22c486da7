"""The `kancompress` command line: flags -> one library call -> Rich rendering. No tensor math here."""

from __future__ import annotations

import dataclasses
import json
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any, Optional, TypedDict

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.status import Status
from rich.table import Table

from kancompress import __version__
from kancompress.bases import describe
from kancompress.config import ConvConfig, MetaConfig, TrainConfig
from kancompress.errors import BudgetError, ConfigError, KanCompressError
from kancompress.format.files import check_output, write_atomic
from kancompress.format.header import read_header
from kancompress.gates import GATE_EXIT, Check, accuracy_limit, gate_json, metric_checks, size_checks
from kancompress.report import extras_label, inspect_json, storage_report

if TYPE_CHECKING:  # the commands import torch-backed modules when they run, so --help and inspect stay fast
    from kancompress import api
    from kancompress.data import Dataset
    from kancompress.models import KANModel
    from kancompress.search import SweepPoint
    from kancompress.train import EpochReport

app = typer.Typer(
    name="kancompress",
    help="Make trained Kolmogorov-Arnold Networks small: train with a meta-learner, cluster, fine-tune, inspect.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
out = Console()
err = Console(stderr=True)

def flag(*names: str, **options: Any) -> Any:
    """An on/off option; its help shows no `<bool>` placeholder (a flag takes no value)."""
    return typer.Option(*names, metavar=" ", **options)


Output = Annotated[Optional[Path], typer.Option("-o", "--output", help="Output file (.safetensors).",
                                                  show_default="beside the input, named after the command")]
Force = Annotated[bool, flag("--force", help="Overwrite the output if it exists.")]
DatasetOpt = Annotated[Optional[str], typer.Option(
    "--dataset", help="digits | mnist | fashion-mnist | cifar10 | cifar100 | diabetes | feynman:NAME (e.g. feynman:I.6.20a).", show_default="the checkpoint's")]
DataFile = Annotated[Optional[Path], typer.Option(
    "--data", help="Your data instead: .npz / .safetensors / .pt (train_x, train_y, test_x, test_y; or x, y; or "
    "pykan's train_input, ...) or .csv with --target.", show_default="the checkpoint's")]
Target = Annotated[Optional[str], typer.Option("--target", help="CSV target column(s), comma-separated.",
                                               show_default="none")]
TaskOpt = Annotated[Optional[str], typer.Option(
    "--task", help="classification | regression.", show_default="inferred: integer targets are class labels")]
DataDir = Annotated[Optional[Path], typer.Option("--data-dir", help="Folder holding the dataset files.",
                                                 show_default="the dataset's usual place")]
Download = Annotated[bool, flag("--download", help="Fetch the dataset with torchvision if missing.")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed (initialisation, split, shuffling, K-means).")]
JsonOut = Annotated[bool, flag("--json", help="Print machine-readable JSON instead of a table.")]
ResultJson = Annotated[bool, flag("--json", help="Print the result as JSON (for scripts and CI).")]
Device = Annotated[str, typer.Option("--device", help="auto (CUDA when available) | cpu | cuda.")]
Resume = Annotated[bool, flag("--resume", help="Continue the interrupted run writing --output.")]
Epochs = Annotated[int, typer.Option("--epochs", min=1, metavar="N", help="Most epochs to run (early stopping may end sooner).")]
Patience = Annotated[int, typer.Option("--patience", min=0, metavar="N",
                                       help="Stop after this many epochs without a better validation accuracy (0: never).")]
BatchSize = Annotated[int, typer.Option("--batch-size", min=1, metavar="N", help="Training batch size.")]
Lean = Annotated[bool, flag("--lean-metadata",
                                    help="Keep only the dataset in the provenance (smallest file).")]
FullMeta = Annotated[bool, flag("--full-metadata", help="Keep the whole provenance (the options, the parent's history) even where it is over 10 % of a small file's tensors.")]
Clusters = Annotated[Optional[int], typer.Option("-k", "--clusters", help="Codebook size per layer.",
                                                 show_default="16; conv 256")]
CodebookDtype = Annotated[str, typer.Option("--codebook-dtype",
                                            help="float32 | float16 | bfloat16 | int8 (one scale per layer).")]
IndexCoding = Annotated[str, typer.Option("--index-coding",
                                          help="packed: fixed bits per index | rans: rANS-coded where smaller | "
                                               "context: per layer the smallest of those and context-adaptive "
                                               "coding (format v4).")]
NInit = Annotated[int, typer.Option("--n-init", min=1, metavar="N", help="K-means restarts (best inertia kept).")]
KMeans = Annotated[str, typer.Option("--kmeans", help="auto (torch above 4M n·k) | sklearn | torch.")]


@contextmanager
def _errors() -> Iterator[None]:
    """Turn the library's errors into one red line and exit 1; Ctrl-C exits 130 with nothing written."""
    try:
        yield
    except KanCompressError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print("[red]interrupted[/red]: no output was written", highlight=False)
        raise typer.Exit(130) from None
    except MemoryError:
        err.print("[red]error:[/red] out of memory; use a smaller batch or model, or a machine with more memory",
                  highlight=False)
        raise typer.Exit(1) from None
    except RuntimeError as exc:
        if "alloc" not in str(exc).lower():
            raise
        err.print(f"[red]error:[/red] out of memory ({escape(str(exc).splitlines()[0])}); use a smaller batch or "
                  "model, or a machine with more memory", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


@contextmanager
def _progress(label: str) -> Iterator[tuple[Any, Any]]:
    """A Rich progress bar over each epoch's batches, and one log line per epoch (rank 0 only under torchrun)."""
    from kancompress import distributed

    if not distributed.is_main():
        yield None, None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    progress = Progress(*columns, console=err, transient=True)
    task = progress.add_task(f"{label} epoch 1", total=None)
    epoch_box = [1]
    started = [False]  # the bar starts with the first batch: an error while loading data leaves no blank line

    def on_batch(done: int, total: int) -> None:
        if not started[0]:
            progress.start()
            started[0] = True
        progress.update(task, completed=done, total=total, description=f"{label} epoch {epoch_box[0]}")

    def on_epoch(report: EpochReport) -> None:
        mark = " [green]*[/green]" if report.improved else ""
        progress.console.print(
            f"epoch {report.epoch:>3}/{report.epochs}  loss {report.train_loss:.4f}  "
            f"val {report.val.describe()}{mark}",
            highlight=False,
        )
        epoch_box[0] = report.epoch + 1

    try:
        yield on_batch, on_epoch
    finally:
        if started[0]:
            progress.stop()


def _parse_layer_ks(values: list[str]) -> dict[int, int]:
    result = {}
    for value in values:
        layer, sep, k = value.partition("=")
        if not sep or not layer.strip().isdigit() or not k.strip().lstrip("-").isdigit():
            raise ConfigError(f"--layer-k {value!r} must look like LAYER=K, e.g. --layer-k 1=8")
        result[int(layer)] = int(k)
    return result


def _given_data(dataset: str | None, data_file: Path | None, target: str | None, task: str | None,
                data_dir: Path | None, download: bool) -> Dataset | None:
    """The data named by --dataset or --data, or None: the command then uses the checkpoint's recorded data."""
    from kancompress import api

    if dataset is None and data_file is None:
        return None
    return api.load_data(dataset, data_file, target, task, data_dir, download)


def _default_output(source: Path, suffix: str) -> Path:
    return source.with_name(f"{source.stem}-{suffix}.safetensors")


def _given(ctx: typer.Context, names: tuple[str, ...]) -> set[str]:
    """The options the user typed (not left at their defaults)."""
    sources = {name: ctx.get_parameter_source(name) for name in names}
    return {name for name, source in sources.items() if source is not None and source.name == "COMMANDLINE"}


def _resumed(ctx: typer.Context, path: Path, command: str, force: bool, fresh: Callable[[], Any],
             compare: dict[str, Callable[[Any], Any]]) -> tuple[dict[str, Any] | None, Any]:
    """(state, job) for --resume: the interrupted run's, with the options typed again applied where safe (more
    epochs, another device) and refused where they conflict; a fresh run when none has a state yet."""
    from kancompress import runs

    found = runs.resume(path, command, force)
    if found is None:
        err.print(f"no saved state for {path} yet (interrupted before its first epoch ended): starting afresh",
                  highlight=False, markup=False)
        runs.start(path, force)
        return None, fresh()
    state, job = found
    given_now = fresh()
    given = {name: (read(given_now), read(job)) for name, read in compare.items() if name in _given(ctx, (name,))}
    job, applied = runs.with_changes(job, given)
    if applied:
        err.print(f"resuming with the new {', '.join('--' + n.replace('_', '-') for n in applied)}",
                  highlight=False, markup=False)
    return state, job


@app.command()
def train(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", help=describe())] = "kan",
    meta: Annotated[bool, flag("--meta", help="Generate edge vectors with a meta-learner (MetaKAN).")] = False,
    dataset: Annotated[str, typer.Option("--dataset", help="digits | mnist | fashion-mnist | cifar10 | cifar100 | diabetes | feynman:NAME (e.g. feynman:I.6.20a).")] = "digits",
    data_dir: DataDir = None,
    data_file: Annotated[Optional[Path], typer.Option("--data", help="Your data instead of --dataset: .npz / .safetensors / .pt (train_x, train_y, test_x, test_y; or x, y; or pykan's dataset dict) or .csv with --target.", show_default="none: --dataset")] = None,
    target: Target = None,
    task: TaskOpt = None,
    download: Download = False,
    hidden: Annotated[list[int], typer.Option("--hidden", help="Hidden width; repeat for more layers.")] = [32],  # noqa: B006
    mult_nodes: Annotated[Optional[list[int]], typer.Option("--mult-nodes", help="Multiplication nodes (pykan KAN 2.0, arity 2) among a hidden layer's nodes; one per --hidden.", show_default="none")] = None,
    conv: Annotated[bool, flag("--conv", help="The paper's 4-layer convolutional KAN instead.")] = False,
    channels: Annotated[list[int], typer.Option("--channels", help="Conv channels; repeat per layer (strides 1, 2, 2, 1, then 1).")] = [32, 64, 128, 256],  # noqa: B006
    groups: Annotated[int, typer.Option("--groups", min=1, metavar="N", help="Conv groups of layers 2+.")] = ConvConfig.groups,
    epochs: Epochs = TrainConfig.epochs,
    batch_size: BatchSize = TrainConfig.batch_size,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Learning rate of the edges (meta: of norms and biases).", show_default="the basis's, paper Tables 4-7; kan/fastkan regression 10×")] = None,
    lr_meta: Annotated[Optional[float], typer.Option("--lr-meta", help="Meta-learner learning rate (paper lr_h).", show_default="the basis's: paper Table 5 (FC gramkan 10×); kan/fastkan regression 10×")] = None,
    lr_embed: Annotated[Optional[float], typer.Option("--lr-embed", help="Embedding learning rate (paper lr_e).", show_default="the basis's: paper Table 5 (FC gramkan 10×); kan/fastkan regression 10×")] = None,
    d_emb: Annotated[Optional[int], typer.Option("--d-emb", min=1, metavar="N", help="Embedding dimension per edge.", show_default="1; conv kan/fastkan 2")] = None,
    meta_hidden: Annotated[int, typer.Option("--meta-hidden", min=1, metavar="N", help="Hidden width of the meta-learner.")] = MetaConfig.hidden,
    meta_sharing: Annotated[str, typer.Option("--meta-sharing", help="model: one meta-learner | layer: one per layer | groups:C: C meta-learners, layers grouped by K-means on their output widths (MetaKAN).")] = MetaConfig.sharing,
    patience: Patience = TrainConfig.patience,
    seed: Seed = TrainConfig.seed,
    val_fraction: Annotated[float, typer.Option("--val-fraction", help="Share of the training data held out for validation (early stopping; compress's budget later), drawn with --seed and recorded.")] = TrainConfig.val_fraction,
    min_steps: Annotated[Optional[int], typer.Option("--min-steps", min=0, metavar="N", help="Small data: train at least N optimizer steps, with patience of at least N/7 steps (epochs are raised to reach them; 0: epochs alone).", show_default="2000, regression 10000; 0 with --epochs")] = None,
    output: Output = None,
    as_json: ResultJson = False,
    force: Force = False,
    resume: Resume = False,
    device: Device = "auto",
) -> None:
    """Train a KAN (or a MetaKAN with --meta) and save a dense or meta checkpoint.

    On small data the default length is counted in optimizer steps too (--min-steps): a table of 150 rows makes one
    step an epoch, so 50 epochs would be 50 steps. An explicit --epochs is taken as it is.

    After every epoch a resumable state is written beside the output (OUTPUT.state); `--resume -o OUTPUT`
    continues an interrupted run with the options it was started with. Several processes:
    `torchrun --nproc-per-node N -m kancompress train ...`.
    """
    with _errors():
        from kancompress import api, runs

        source_name = data_file.stem if data_file else dataset.replace(":", "-")
        path = output or Path(f"{'meta' if meta else ''}{model}-{source_name}.safetensors")

        def fresh() -> Any:
            meta_config = (MetaConfig(d_emb or api.default_meta(model, conv).d_emb, meta_hidden, meta_sharing)
                           if meta else False)
            conv_config = ConvConfig(strides=api.conv_strides(len(channels)), groups=groups) if conv else False
            options = api.TrainOptions.build(
                model=model, dataset=dataset, data_dir=str(data_dir) if data_dir else None,
                data_file=str(data_file) if data_file else None, target=target, task=task, meta=meta_config,
                hidden=tuple(hidden), mult_nodes=tuple(mult_nodes or ()), conv=conv_config, channels=tuple(channels), lr=lr, lr_meta=lr_meta,
                lr_embed=lr_embed, device=device,
                train=TrainConfig(epochs=epochs, batch_size=batch_size, patience=patience, seed=seed,
                                  val_fraction=val_fraction,
                                  **step_floors(min_steps, "epochs" in _given(ctx, ("epochs",)))))
            return runs.Job("train", options)

        if resume:
            def option(name: str) -> Callable[[Any], Any]:
                return lambda job: getattr(job.options, name)

            def trained(name: str) -> Callable[[Any], Any]:
                return lambda job: getattr(job.options.train, name)

            compare = {"model": option("model"), "dataset": option("dataset"), "hidden": option("hidden"),
                       "data_file": option("data_file"), "target": option("target"), "task": option("task"),
                       "channels": option("channels"), "lr": option("lr"), "lr_meta": option("lr_meta"),
                       "lr_embed": option("lr_embed"), "device": option("device"),
                       "meta": lambda job: job.options.meta is not None, "conv": lambda job: job.options.conv is not None,
                       "epochs": trained("epochs"), "batch_size": trained("batch_size"),
                       "patience": trained("patience"), "seed": trained("seed")}
            state, job = _resumed(ctx, path, "train", force, fresh, compare)
        else:
            job = fresh()
            state = None
            runs.start(path, force)
        with _progress("train") as (on_batch, on_epoch):
            result = api.train(job.options, download=download, on_batch=on_batch, on_epoch=on_epoch,
                               on_state=_state_writer(path, job), resume=state)
        _finish(result, path, force, as_json=as_json)


class StepFloors(TypedDict):
    min_steps: int | None
    min_patience_steps: int


def step_floors(min_steps: int | None, epochs_given: bool) -> StepFloors:
    """TrainConfig's step floors from --min-steps: its value; else none when --epochs was typed, else the task's
    default (None: `TrainConfig.for_task` resolves it once the data says the task)."""
    steps = min_steps if min_steps is not None else (0 if epochs_given else None)
    return {"min_steps": steps, "min_patience_steps": (steps or 0) // 7}


def _state_writer(path: Path, job: Any) -> Any:
    from kancompress import distributed, runs

    return runs.state_writer(path, job) if distributed.is_main() else None


def _metadata_choice(lean: bool, full: bool) -> None:
    if lean and full:
        raise ConfigError("--lean-metadata and --full-metadata contradict each other; give one of them")


def _kept_provenance(model: KANModel, provenance: dict[str, Any], lean: bool, full: bool) -> dict[str, Any]:
    """The provenance a clustered output keeps: lean when asked, or when the full one costs more than a share of
    a small file's tensors (`api.heavy_provenance`, said in one line on stderr); full when asked."""
    from kancompress import api

    if full:
        return provenance
    if not lean:
        heavy, history, tensors = api.heavy_provenance(model, provenance)
        if not heavy:
            return provenance
        err.print(f"note: provenance cut to the dataset (the full one, {history:,} B, is over "
                  f"{api.PROVENANCE_SHARE:.0%} of the {tensors:,} B of tensors); --full-metadata keeps it",
                  highlight=False, markup=False, soft_wrap=True)
    return api.lean_provenance(provenance)


def _finish(result: api.TrainResult, path: Path, force: bool, inputs: tuple[Path, ...] = (), as_json: bool = False
            ) -> None:
    """Rank 0 writes the checkpoint and removes the resumable state; the others only leave the process group."""
    from kancompress import distributed, runs
    from kancompress.format.checkpoint import save_checkpoint

    distributed.teardown()
    if not distributed.is_main():
        return
    save_checkpoint(result.model, path, result.provenance, force=force, inputs=inputs)
    runs.finish(path)
    if as_json:
        out.print_json(json.dumps({"output": str(path), "kind": result.model.kind, "epochs": len(result.history.epochs),
                                   "best_epoch": result.history.best_epoch, "test": result.test.to_json()}))
        return
    out.print(f"test {result.test.describe()}  ({len(result.history.epochs)} epochs) -> {path} "
              f"({result.model.kind})", highlight=False, markup=False)


@app.command()
def cluster(
    checkpoint: Annotated[Path, typer.Argument(help="Dense or meta checkpoint.")],
    k: Clusters = None,
    layer_k: Annotated[list[str], typer.Option("--layer-k", help="Per-layer override LAYER=K, repeatable.", show_default="none")] = [],  # noqa: B006
    seed: Seed = 0,
    n_init: NInit = 4,
    codebook_dtype: CodebookDtype = "float32",
    index_coding: IndexCoding = "packed",
    kmeans: KMeans = "auto",
    device: Device = "auto",
    lean: Lean = False,
    full_metadata: FullMeta = False,
    max_drop: Annotated[Optional[float], typer.Option("--max-drop", help="Choose k per layer instead: the smallest file whose validation metric stays within this budget of the source: accuracy points (classification), or a relative MSE increase, e.g. 0.05 (regression).", show_default="off")] = None,
    data_aware: Annotated[bool, flag("--data-aware", help="Weigh each edge's error by its effect on the layer's output over the training inputs (needs the data; fully-connected layers).")] = False,
    dataset: DatasetOpt = None,
    data_dir: DataDir = None,
    data_file: DataFile = None,
    target: Target = None,
    task: TaskOpt = None,
    download: Download = False,
    output: Output = None,
    as_json: ResultJson = False,
    force: Force = False,
) -> None:
    """K-means each layer's edge vectors into a codebook and bit-packed (or rANS-coded) indices."""
    with _errors():
        from kancompress import api
        from kancompress.format.checkpoint import load_checkpoint, save_checkpoint

        _metadata_choice(lean, full_metadata)
        options = api.ClusterConfig(k, tuple(sorted(_parse_layer_ks(layer_k).items())), seed, n_init, codebook_dtype,
                                    index_coding, kmeans, device, max_drop, data_aware)
        source = load_checkpoint(checkpoint)
        suffix = f"k{k if k is not None else api.default_k(source.model)}" if max_drop is None else f"drop{max_drop:g}"
        path = check_output(output or _default_output(checkpoint, suffix), force, (checkpoint,))
        data = (_given_data(dataset, data_file, target, task, data_dir, download)
                if max_drop is not None or data_aware else None)
        if max_drop is None:
            model, provenance = api.cluster(source, options, data, download=download)
            for layer, edges in provenance.get("k_capped", {}).items():
                err.print(f"note: layer {layer} has {edges} edges: its k is capped at {edges}", highlight=False,
                          markup=False)
        else:
            with err.status("choosing k per layer on the validation split"):
                model, provenance = api.cluster(source, options, data, download=download)
            metric = "accuracy" if provenance["val"]["task"] == "classification" else "mse"
            scale, unit = (100, " %") if metric == "accuracy" else (1, "")
            if not as_json:
                out.print(f"per-layer k {provenance['k']}: validation {metric} "
                          f"{scale * provenance['val'][metric]:.4g}{unit} (source "
                          f"{scale * provenance['source_val'][metric]:.4g}{unit})", highlight=False, markup=False)
        save_checkpoint(model, path, _kept_provenance(model, provenance, lean, full_metadata), force=force,
                        inputs=(checkpoint,))
        if as_json:
            out.print_json(json.dumps({"output": str(path), "k": provenance["k"], "report": inspect_json(read_header(path))}))
            return
        out.print(f"clustered {source.kind} -> {path}", highlight=False, markup=False)
        _render_report(path, 16)


@app.command()
def compress(
    checkpoint: Annotated[Path, typer.Argument(help="Dense or meta checkpoint (yours, or imported).")],
    max_drop: Annotated[float, typer.Option("--max-drop", help="Largest allowed loss on the validation split: accuracy points (classification), or a relative MSE increase, e.g. 0.05 (regression).")],
    ks: Annotated[str, typer.Option("--ks", help="Comma-separated codebook sizes tried per layer.")] = "2,4,8,16,32,64,128,256",
    methods: Annotated[str, typer.Option("--methods", help="cluster: the source's own vectors; distill: first distil a dense source into a MetaKAN, whose vectors cluster better; soft: retrain the source with its edges softly assigned to trained codebooks (at most --soft-epochs per candidate; searches only below the others' results). The smallest result within budget wins.")] = "cluster,distill,soft",
    distill_epochs: Annotated[Optional[int], typer.Option("--distill-epochs", min=1, metavar="N", help="Task epochs of the distilled MetaKAN (early stopping).", show_default="10 fast, 20 thorough")] = None,
    soft_epochs: Annotated[int, typer.Option("--soft-epochs", min=1, metavar="N", help="soft: most epochs of each candidate's soft retrain (stops once within budget).")] = 3,
    search: Annotated[str, typer.Option("--search", help="fast: per-layer k from losses measured without training, short trials along the size-loss frontier | thorough: greedy, every trial fine-tuned --search-epochs.")] = "fast",
    search_steps: Annotated[int, typer.Option("--search-steps", min=1, metavar="N", help="fast: most optimizer steps per trial (stops once within budget).")] = 400,
    search_epochs: Annotated[int, typer.Option("--search-epochs", min=1, metavar="N", help="thorough: fine-tuning epochs behind each trial's validation metric.")] = 2,
    epochs: Annotated[int, typer.Option("--epochs", min=1, metavar="N", help="Most epochs of a final fine-tuning (fast: of the smaller candidates that missed the budget by the least).")] = 10,
    patience: Annotated[int, typer.Option("--patience", min=0, metavar="N", help="thorough: final fine-tuning stops after this many epochs without a better validation metric.")] = 3,
    lr: Annotated[list[float], typer.Option("--lr", help="Final fine-tuning rate, repeatable; the best on the validation split is kept (the search uses the first).", show_default="10x and 1x the paper's lr_c")] = [],  # noqa: B006
    batch_size: BatchSize = TrainConfig.batch_size,
    codebook_dtype: Annotated[str, typer.Option("--codebook-dtype", help="auto: int8, then float16, float32 only if nothing fits | float32 | float16 | bfloat16 | int8.")] = "auto",
    index_coding: IndexCoding = "context",
    seed: Seed = 0,
    n_init: NInit = 4,
    kmeans: KMeans = "auto",
    device: Device = "auto",
    plain_only: Annotated[bool, flag("--plain-only", help="Search with plain K-means only (by default also with K-means in the metric of each layer's output error on the training inputs).")] = False,
    grids: Annotated[str, typer.Option("--grids", help="Adapted per-input B-spline grids (from update_grid): share (each layer's fewest shared grids of --grid-counts within a fifth of the budget) | keep (store every input's grid) | regrid (one uniform grid per layer; experimental).")] = "share",
    grid_counts: Annotated[str, typer.Option("--grid-counts", help="Comma-separated shared-grid counts tried per layer with --grids share.")] = "1,4,16,64",
    full_metadata: Annotated[bool, flag("--full-metadata", help="Keep the whole provenance (every trial, the parent's history) instead of only the dataset.")] = False,
    dataset: DatasetOpt = None,
    data_dir: DataDir = None,
    data_file: DataFile = None,
    target: Target = None,
    task: TaskOpt = None,
    download: Download = False,
    output: Output = None,
    as_json: ResultJson = False,
    force: Force = False,
) -> None:
    """The smallest clustered file within a validation budget: finds per-layer k, fine-tunes the candidates, keeps
    the smallest that stays within --max-drop of the source, fine-tunes it, writes it."""
    with _errors():
        from kancompress import api, distributed
        from kancompress.format.checkpoint import load_checkpoint, save_checkpoint

        options = api.CompressOptions(
            max_drop=max_drop, ks=tuple(_parse_ks(ks)), search=search, search_steps=search_steps,
            search_epochs=search_epochs, epochs=epochs,
            patience=patience, lrs=tuple(lr) or None, methods=tuple(m.strip() for m in methods.split(",")),
            distill_epochs=distill_epochs, soft_epochs=soft_epochs, batch_size=batch_size, codebook_dtype=codebook_dtype,
            index_coding=index_coding, seed=seed, n_init=n_init, kmeans=kmeans, device=device, grids=grids,
            grid_counts=tuple(_parse_ks(grid_counts, "--grid-counts")), data_aware=not plain_only)
        path = check_output(output or _default_output(checkpoint, f"drop{max_drop:g}"), force, (checkpoint,))
        source = load_checkpoint(checkpoint)
        data = _given_data(dataset, data_file, target, task, data_dir, download)
        classification = source.header.config.task == "classification"

        def shown(metrics: dict[str, Any]) -> str:
            return f"{100 * metrics['accuracy']:.2f} %" if classification else f"MSE {metrics['mse']:.4g}"

        table = Table(title=escape(f"{checkpoint}: what compress tried"), title_justify="left")
        for column in ("method", "k per layer", "lr", "length", "KB", "validation", "within"):
            table.add_column(column, justify="right", overflow="fold")

        latest: list[Any] = []  # the last progress report (compress.trials.Progress)
        talk = not as_json and distributed.is_main()  # under torchrun rank 0 alone reports and writes
        status = err.status("compress: starting") if err.is_terminal and talk else nullcontext()

        def on_progress(progress: Any) -> None:
            latest[:] = [progress]
            if isinstance(status, Status):
                status.update(escape(f"compress: {progress.describe()}"))

        def on_trial(trial: api.CompressTrial) -> None:
            row = trial.to_json()
            ks_text = ",".join(map(str, trial.ks)) or ("(meta)" if trial.method.endswith("distill") else "(dense)")
            table.add_row(trial.method, ks_text, f"{trial.lr:g}", trial.length, _kb(trial.bytes),
                          shown(row["val"]), "yes" if trial.within else "no")
            if talk:
                where = f" [{latest[0].done + 1} of ~{latest[0].total}, {latest[0].left_text()}]" if latest else ""
                err.print(f"{trial.method} k={ks_text} lr={trial.lr:g} {trial.length}: {_kb(trial.bytes)} "
                          f"KB, validation {shown(row['val'])}{where}", highlight=False, markup=False, soft_wrap=True)

        try:
            with status:
                model, provenance, _ = api.compress(
                    source, options, data, download=download, on_trial=on_trial, on_progress=on_progress,
                    on_warning=lambda text: err.print(f"warning: {text}", highlight=False, markup=False,
                                                      soft_wrap=True) if talk else None)
        except BudgetError as exc:  # a budget not met is a failed gate: exit 3, and --json says why
            distributed.teardown()
            if as_json and distributed.is_main():
                out.print_json(json.dumps({"passed": False, "reason": str(exc), "trials": exc.trials}))
            elif talk:
                err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(GATE_EXIT) from None
        distributed.teardown()
        if not distributed.is_main():
            return
        save_checkpoint(model, path, provenance if full_metadata else api.lean_provenance(provenance), force=force,
                        inputs=(checkpoint,))
        if as_json:
            out.print_json(json.dumps({"passed": True, "output": str(path), "bytes": path.stat().st_size,
                                       "k": provenance["k"],
                                       "lr": provenance["lr"], "source_val": provenance["source_val"],
                                       "val": provenance["val"], "test": provenance["test"],
                                       "trials": provenance["trials"], "warnings": provenance.get("warnings", [])}))
            return
        out.print(table)
        out.print(f"compressed {source.kind} ({provenance['method']}) -> {path}: {path.stat().st_size:,} bytes, "
                  f"k {provenance['k']}, "
                  f"lr {provenance['lr']:g}; validation {shown(provenance['val'])} (source "
                  f"{shown(provenance['source_val'])}); test {shown(provenance['test'])}", highlight=False,
                  markup=False)
        _render_report(path, 16)


@app.command()
def finetune(
    ctx: typer.Context,
    checkpoint: Annotated[Optional[Path], typer.Argument(help="Clustered checkpoint (not needed with --resume).", show_default=False)] = None,
    epochs: Epochs = 5,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Codebook learning rate (paper lr_c).", show_default="1e-4; conv 1e-5")] = None,
    patience: Patience = 3,
    batch_size: BatchSize = TrainConfig.batch_size,
    dataset: DatasetOpt = None,
    data_dir: DataDir = None,
    data_file: DataFile = None,
    target: Target = None,
    task: TaskOpt = None,
    download: Download = False,
    seed: Seed = 0,
    output: Output = None,
    as_json: ResultJson = False,
    force: Force = False,
    resume: Resume = False,
    device: Device = "auto",
    lean: Lean = False,
    full_metadata: FullMeta = False,
    reassign: Annotated[Optional[Path], typer.Option("--reassign", help="Dense/meta checkpoint that was clustered: let indices move to the centroid nearest each edge's original vector after every epoch.", show_default="off")] = None,
) -> None:
    """Train only the codebooks (indices frozen) of a clustered checkpoint; resumable like `train`."""
    with _errors():
        from kancompress import api, runs
        from kancompress.format.checkpoint import load_checkpoint

        _metadata_choice(lean, full_metadata)
        if checkpoint is None and not (resume and output is not None):
            raise ConfigError("give the clustered checkpoint to fine-tune (or --resume -o OUTPUT)")
        path = output or _default_output(checkpoint, "ft")  # type: ignore[arg-type]

        def fresh() -> Any:
            if checkpoint is None:
                raise ConfigError(f"no saved state for {path}; give the clustered checkpoint to start afresh")
            options = api.FinetuneOptions(dataset, str(data_dir) if data_dir else None, lr, TrainConfig(
                epochs=epochs, batch_size=batch_size, patience=patience, seed=seed), device,
                str(data_file) if data_file else None, target, task)
            return runs.Job("finetune", options, str(checkpoint), str(reassign) if reassign else None)

        if resume:
            compare: dict[str, Callable[[Any], Any]] = {
                "checkpoint": lambda job: job.checkpoint, "reassign": lambda job: job.reassign,
                "dataset": lambda job: job.options.dataset, "lr": lambda job: job.options.lr,
                "device": lambda job: job.options.device, "epochs": lambda job: job.options.train.epochs,
                "batch_size": lambda job: job.options.train.batch_size,
                "patience": lambda job: job.options.train.patience, "seed": lambda job: job.options.train.seed}
            state, job = _resumed(ctx, path, "finetune", force, fresh, compare)
        else:
            job, state = fresh(), None
            runs.start(path, force, (checkpoint,))  # type: ignore[arg-type]
        source = Path(job.checkpoint)
        reference = load_checkpoint(job.reassign).model if job.reassign else None
        with _progress("finetune") as (on_batch, on_epoch):
            result = api.finetune(load_checkpoint(source), job.options, download=download, on_batch=on_batch,
                                  on_epoch=on_epoch, on_state=_state_writer(path, job), resume=state,
                                  reassign_from=reference)
        result.provenance = _kept_provenance(result.model, result.provenance, lean, full_metadata)
        _finish(result, path, force, (source,), as_json)


@app.command()
def sweep(
    checkpoint: Annotated[Path, typer.Argument(help="Dense or meta checkpoint.")],
    ks: Annotated[str, typer.Option("--ks", help="Comma-separated codebook sizes.")] = "2,4,8,16,32,64",
    finetune_epochs: Annotated[int, typer.Option("--finetune-epochs", min=0, metavar="N", help="Fine-tune each point for this many epochs (0: off).")] = 0,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Fine-tuning learning rate (paper lr_c).", show_default="1e-4; conv 1e-5")] = None,
    codebook_dtype: CodebookDtype = "float32",
    index_coding: IndexCoding = "packed",
    n_init: NInit = 4,
    kmeans: KMeans = "auto",
    dataset: DatasetOpt = None,
    data_dir: DataDir = None,
    data_file: DataFile = None,
    target: Target = None,
    task: TaskOpt = None,
    download: Download = False,
    seed: Seed = 0,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="CSV file.", show_default="CKPT-sweep.csv")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Also write a PNG plot of size vs accuracy (needs matplotlib).", show_default="off")] = None,
    device: Device = "auto",
    as_json: ResultJson = False,
    resume: Annotated[bool, flag("--resume", help="Keep the points an interrupted sweep finished (OUTPUT.partial) and run the rest.")] = False,
    force: Force = False,
) -> None:
    """Cluster at each k and report size against accuracy (CSV, optional PNG plot).

    Each finished point is kept in OUTPUT.partial at once, so an interrupted sweep loses nothing: `--resume` with
    the same options runs only the remaining k."""
    with _errors():
        from kancompress import api
        from kancompress.format.checkpoint import load_checkpoint
        from kancompress.search import read_sweep_csv, sweep_csv

        sizes = _parse_ks(ks)
        csv_path = check_output(output or checkpoint.with_name(f"{checkpoint.stem}-sweep.csv"), force, (checkpoint,))
        partial = csv_path.with_name(csv_path.name + ".partial")
        done: list[SweepPoint] = []
        if resume and partial.exists():
            done = [point for point in read_sweep_csv(partial.read_text()) if point.k in sizes]
            err.print(f"resuming: {len(done)} of {len(sizes)} points kept from {partial}", highlight=False,
                      markup=False)
        elif partial.exists() and not force:
            raise ConfigError(f"{partial}: an interrupted sweep kept its finished points; pass --resume to continue "
                              "it or --force to start over")
        if plot is not None:
            check_output(plot, force, (checkpoint,))
            from kancompress.plot import require_matplotlib

            require_matplotlib()  # before the work, not after it
        options = api.ClusterConfig(seed=seed, n_init=n_init, codebook_dtype=codebook_dtype,
                                    index_coding=index_coding, kmeans=kmeans, device=device)
        tune = (api.FinetuneOptions(lr=lr, train=TrainConfig(epochs=finetune_epochs, patience=3, seed=seed),
                                    device=device) if finetune_epochs > 0 else None)
        source = load_checkpoint(checkpoint)
        classification = source.header.config.task == "classification"
        metric = "accuracy %" if classification else "MSE"

        def shown(value: float) -> str:  # accuracy in percent as everywhere in the CLI; the CSV keeps fractions
            return f"{100 * value:.2f}" if classification else f"{value:.4g}"
        table = Table(title=escape(f"{checkpoint} sweep"), title_justify="left")
        for column in ("k", "KB", f"val {metric}", f"test {metric}", f"fine-tuned test {metric}"):
            table.add_column(column, justify="right", overflow="fold")

        finished = list(done)
        started = time.monotonic()

        def add_row(point: SweepPoint) -> None:
            tuned = shown(point.finetuned_test) if point.finetuned_test is not None else "-"
            table.add_row(str(point.k), _kb(point.bytes), shown(point.val), shown(point.test), tuned)

        def on_point(point: SweepPoint) -> None:
            finished.append(point)
            write_atomic(partial, sweep_csv(finished).encode())  # kept at once: an interruption loses nothing
            add_row(point)
            left = len(sizes) - len(finished)
            eta = (time.monotonic() - started) / (len(finished) - len(done)) * left
            err.print(f"k={point.k}: {_kb(point.bytes)} KB, test {metric} {shown(point.test)} "
                      f"({len(finished)} of {len(sizes)}; about {eta:.0f} s left)", highlight=False, markup=False)

        for point in done:
            add_row(point)
        data = _given_data(dataset, data_file, target, task, data_dir, download)
        remaining = [k for k in sizes if k not in {point.k for point in done}]
        try:
            if remaining:
                api.sweep(source, remaining, options, data, finetune=tune, download=download, on_point=on_point)
        except KeyboardInterrupt:
            if finished:
                err.print(f"interrupted: {len(finished)} finished points kept in {partial}; continue with --resume",
                          highlight=False, markup=False)
                raise typer.Exit(130) from None
            raise
        points = sorted(finished, key=lambda point: sizes.index(point.k))
        write_atomic(csv_path, sweep_csv(points).encode())
        partial.unlink(missing_ok=True)
        if as_json:
            out.print_json(json.dumps({"output": str(csv_path), "points": [dataclasses.asdict(p) for p in points]}))
        else:
            out.print(table)
            out.print(f"wrote {csv_path}", highlight=False, markup=False)
        if plot is not None:
            from kancompress.plot import sweep_png

            dense = storage_report(source.header).dense_bytes
            write_atomic(plot, sweep_png({source.kind: points}, f"{checkpoint.name}: size vs accuracy", dense))
            if not as_json:
                out.print(f"wrote {plot}", highlight=False, markup=False)


def _parse_ks(text: str, option: str = "--ks") -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"{option} {text!r} must be comma-separated integers, e.g. 2,4,8,16") from None


@app.command("eval")
def eval_(
    checkpoint: Annotated[Path, typer.Argument(help="Any kancompress checkpoint.")],
    dataset: DatasetOpt = None,
    data_dir: DataDir = None,
    data_file: DataFile = None,
    target: Target = None,
    task: TaskOpt = None,
    download: Download = False,
    as_json: JsonOut = False,
    device: Device = "auto",
    fc_forward: Annotated[str, typer.Option(
        "--fc-forward", help="Clustered fully-connected layers: decode (same numbers every run) | auto (fastest, "
        "measured on this machine) | gather | onehot.",
    )] = "decode",
    min_accuracy: Annotated[Optional[str], typer.Option("--min-accuracy", help="Gate: fail (exit 3) below this test accuracy: 0.93, 93 or 93% (a number up to 1 is a fraction).", show_default="none")] = None,
    max_mse: Annotated[Optional[float], typer.Option("--max-mse", help="Gate (regression): fail above this test MSE.", show_default="none")] = None,
    min_r2: Annotated[Optional[float], typer.Option("--min-r2", help="Gate (regression): fail below this test R².", show_default="none")] = None,
) -> None:
    """Test accuracy and loss of a checkpoint (dataset defaults to the one it was trained on). With a gate
    (--min-accuracy, --max-mse, --min-r2) a miss exits with status 3 and one line naming the value and the limit."""
    with _errors():
        from kancompress import api
        from kancompress.format.checkpoint import load_checkpoint
        from kancompress.tasks import Metrics

        if min_accuracy is not None:
            accuracy_limit(min_accuracy)  # a bad limit is refused before any work
        data = _given_data(dataset, data_file, target, task, data_dir, download)
        if data is not None:  # a model that cannot take the data is refused from its header, before loading
            api.check_data(read_header(checkpoint).config, data)
        loaded = load_checkpoint(checkpoint)
        result = api.evaluation(loaded, data, download=download, device=device, fc_forward=fc_forward)
        checks = metric_checks(result, min_accuracy, max_mse, min_r2)
        if checks:
            result.update(gate_json(checks))
        if as_json:
            out.print_json(json.dumps(result))
            _gate_exit(checks, quiet=True)
        else:
            out.print(f"{checkpoint} ({loaded.kind}) on {result['dataset']} test ({result['n']} examples): "
                      f"{Metrics.from_json(result).describe()}", highlight=False, markup=False)
            paths = result["fc_forward"]
            if any(methods != ["decode"] for methods in paths.values()):
                used = ", ".join(f"layer {layer}: {'/'.join(methods)}" for layer, methods in paths.items())
                out.print(f"codebook-space forward ({used})", highlight=False, markup=False)
            _gate_exit(checks)


def _gate_exit(checks: list[Check], quiet: bool = False) -> None:
    """Exit with `GATE_EXIT` and one line per missed limit (on stderr; none with --json, whose "passed" says it)."""
    failed = [check for check in checks if not check.passed]
    if not failed:
        if checks and not quiet:
            out.print(f"gate passed: {'; '.join(check.describe() for check in checks)}", highlight=False, markup=False)
        return
    if not quiet:
        for check in failed:
            err.print(f"gate failed: {check.describe()}", highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(GATE_EXIT)


@app.command()
def inspect(
    checkpoint: Annotated[Path, typer.Argument(help="Any kancompress checkpoint (only its header is read).")],
    k: Annotated[int, typer.Option("-k", "--clusters", help="For dense/meta checkpoints: project clustering at this k.")] = 16,
    as_json: JsonOut = False,
    max_bytes: Annotated[Optional[int], typer.Option("--max-bytes", min=1, metavar="N", help="Gate: fail (exit 3) if the file is larger on disk.", show_default="none")] = None,
    max_bits_per_edge: Annotated[Optional[float], typer.Option("--max-bits-per-edge", help="Gate: fail (exit 3) above these bits per edge, all-in (file bytes·8 / edges).", show_default="none")] = None,
) -> None:
    """Storage report per layer and in total (paper Eq. 10), from the file's header alone. With a gate (--max-bytes,
    --max-bits-per-edge) a miss exits with status 3 and one line naming the value and the limit."""
    with _errors():
        if k < 2:
            raise ConfigError(f"-k {k} is too small; use k >= 2")
        report = inspect_json(read_header(checkpoint), k)
        checks = size_checks(report, max_bytes, max_bits_per_edge)
        if as_json:
            out.print_json(json.dumps({**report, **(gate_json(checks) if checks else {})}))
        else:
            _render_report(checkpoint, k)
        _gate_exit(checks, quiet=as_json)


@app.command("import")
def import_(
    source: Annotated[Path, typer.Argument(help="state_dict saved by an upstream library (.safetensors, .pt, .pth; a training checkpoint dict too).")],
    output: Output = None,
    library: Annotated[Optional[str], typer.Option("--from", help="efficient-kan | fastkan | pykan | torch-conv-kan | chebykan | fourierkan | wav-kan.", show_default="detected from the keys")] = None,
    check: Annotated[Optional[Path], typer.Option("--check", help="An .npz with the original model's inputs x and outputs y: refuse the import beyond --check-tolerance.", show_default="none")] = None,
    check_tolerance: Annotated[float, typer.Option("--check-tolerance", help="Largest deviation allowed by --check, relative to the output scale.")] = 1e-4,
    base_activation: Annotated[Optional[str], typer.Option("--base-activation", help="Not stored in state_dicts: silu | gelu | relu | tanh | identity | zero (efficient-kan, FastKAN, pykan without config, KANConv).", show_default="the library's, stated")] = None,
    config_file: Annotated[Optional[Path], typer.Option("--config", help="pykan: the model's _config.yml.", show_default="{path}_config.yml beside {path}_state")] = None,
    denominator: Annotated[Optional[float], typer.Option("--rbf-denominator", help="FastKAN RBF width.", show_default="(max - min)/(G - 1), as FastKAN")] = None,
    dataset: Annotated[Optional[str], typer.Option("--dataset", help="Built-in dataset to record for eval and finetune.", show_default="none")] = None,
    data_file: Annotated[Optional[Path], typer.Option("--data", help="Your data file to record for eval and finetune (its task and widths are checked).", show_default="none")] = None,
    target: Target = None,
    task: Annotated[Optional[str], typer.Option("--task", help="classification | regression: what the upstream model was trained for.", show_default="the data's; else regression for one output")] = None,
    strides: Annotated[Optional[str], typer.Option("--strides", help="torch-conv-kan: stride of each conv layer.", show_default="1,2,2,1, stated")] = None,
    grid_size: Annotated[Optional[int], typer.Option("--grid-size", help="torch-conv-kan KANConv grid size.", show_default="5, stated")] = None,
    spline_order: Annotated[Optional[int], typer.Option("--spline-order", help="torch-conv-kan KANConv spline order.", show_default="3, stated")] = None,
    grid_range: Annotated[Optional[str], typer.Option("--grid-range", help="torch-conv-kan KANConv grid range LO,HI.", show_default="-1,1, stated")] = None,
    wavelet: Annotated[Optional[str], typer.Option("--wavelet", help="Wav-KAN: mexican_hat | morlet | dog | meyer | shannon.", show_default="mexican_hat, stated")] = None,
    force: Force = False,
) -> None:
    """Convert an upstream KAN state_dict into a kancompress dense checkpoint (outputs reproduced exactly).

    What the file does not store (a base activation, strides, ...) comes from options; a default the import assumes is said on stderr. With --check the import is compared with the original model's outputs."""
    with _errors():
        from kancompress import api
        from kancompress.format.checkpoint import save_checkpoint
        from kancompress.interop import ImportOptions

        path = check_output(output or source.with_name(f"{source.stem}-kancompress.safetensors"), force, (source,))
        options = ImportOptions(base_activation=base_activation, denominator=denominator,
                                strides=_int_list("--strides", strides), grid_size=grid_size,
                                spline_order=spline_order, grid_range=_range("--grid-range", grid_range),
                                wavelet=wavelet)
        result = api.import_checkpoint(source, library, options, dataset, config_file=config_file, task=task,
                                       data_file=data_file, target=target, check_file=check,
                                       check_tolerance=check_tolerance)
        for note in result.notes:
            err.print(f"note: {note}", highlight=False, markup=False, soft_wrap=True)
        save_checkpoint(result.model, path, result.provenance, force=force, inputs=(source,))
        config = result.model.config
        checked = f"; checked: {result.check.describe()}" if result.check is not None else ""
        out.print(f"imported {result.provenance['source_library']} {config.model} {list(config.widths)} -> "
                  f"{path}{checked}", highlight=False, markup=False, soft_wrap=True)


def _int_list(flag_name: str, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        return tuple(int(v) for v in value.split(","))
    except ValueError:
        raise ConfigError(f"{flag_name} {value!r} must be comma-separated integers, e.g. 1,2,2,1") from None


def _range(flag_name: str, value: str | None) -> tuple[float, float] | None:
    if value is None:
        return None
    try:
        lo, hi = (float(v) for v in value.split(","))
    except ValueError:
        raise ConfigError(f"{flag_name} {value!r} must be LO,HI, e.g. -1,1") from None
    return lo, hi


@app.command("export")
def export(
    checkpoint: Annotated[Path, typer.Argument(help="Any kancompress checkpoint.")],
    to: Annotated[str, typer.Option("--to", help="efficient-kan | fastkan (dense state_dicts) | onnx (an ONNX graph) | c (C99 source, fully-connected models); compressed checkpoints stay compressed in onnx and c.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output: .safetensors or .pt/.pth (torch.save of a plain state_dict) for a state_dict; .onnx for onnx; a folder for c.")],
    name: Annotated[Optional[str], typer.Option("--name", help="c: the C prefix (NAME.h, NAME_predict).", show_default="from the checkpoint's file name")] = None,
    image_size: Annotated[int, typer.Option("--image-size", min=1, metavar="N", help="onnx, conv models: image size to trace with (the graph takes any size).")] = 32,
    force: Force = False,
) -> None:
    """Write a dense state_dict in an upstream library's layout (clustered checkpoints are decoded), or an ONNX graph
    that keeps a clustered checkpoint's codebooks and packed indices."""
    with _errors():
        from kancompress import api
        from kancompress.format.checkpoint import load_checkpoint, save_state_dict

        if to == "c":
            from kancompress.format.files import write_folder_atomic

            exported = api.export_c(load_checkpoint(checkpoint), name)
            write_folder_atomic(output, {file: text.encode() for file, text in exported.files.items()}, force)
            for note in exported.notes:
                err.print(f"note: {note}", highlight=False, markup=False, soft_wrap=True)
            main = next(file for file in exported.files if file.endswith(".c") and file != "main.c")
            out.print(f"exported C ({exported.data_bytes:,} bytes of constant data, {exported.ram_bytes:,} bytes of "
                      f"RAM) -> {output}/: build with gcc -O2 -std=c99 {output}/{main} {output}/main.c -lm",
                      highlight=False, markup=False, soft_wrap=True)
            return
        if to == "onnx":
            from kancompress.onnx_export import export_onnx, require_onnx

            if output.suffix != ".onnx":
                raise ConfigError(f"{output}: an ONNX export is written to a .onnx file")
            require_onnx()
            check_output(output, force, (checkpoint,))
            data = export_onnx(load_checkpoint(checkpoint).model, image_size)
            write_atomic(output, data)
            out.print(f"exported ONNX ({len(data):,} bytes) -> {output}", highlight=False, markup=False)
            return
        if output.suffix not in (".safetensors", ".pt", ".pth"):
            raise ConfigError(f"{output}: write .safetensors, .pt or .pth (the file's type follows its extension)")
        check_output(output, force, (checkpoint,))
        loaded = load_checkpoint(checkpoint)
        state = api.export_checkpoint(loaded, to)
        recorded = {key: str(loaded.header.provenance[key]) for key in ("dataset", "task")
                    if loaded.header.provenance.get(key)}
        save_state_dict(state, output, force=force, inputs=(checkpoint,), metadata={
            "kancompress_" + key: value for key, value in recorded.items()})
        out.print(f"exported {len(state)} tensors in {to} layout -> {output}", highlight=False, markup=False)


@app.command()
def predict(
    model: Annotated[Path, typer.Argument(help="A kancompress checkpoint (.safetensors) or an exported .onnx.")],
    data_file: Annotated[Path, typer.Option("--data", help="Inputs: .npy, .npz (array x), or .csv (header row; numeric columns).")],
    target: Annotated[Optional[str], typer.Option("--target", help="CSV columns to leave out (e.g. a label column).", show_default="none")] = None,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Write the outputs: .npy (the output array) or .csv (outputs, and the class for classification).", show_default="print them")] = None,
    force: Force = False,
) -> None:
    """Run a model on your inputs: logits and classes, or regression outputs in your units."""
    with _errors():
        from kancompress.predict import predict as run_model
        from kancompress.predict import read_inputs

        if output is not None:
            if output.suffix not in (".npy", ".csv"):
                raise ConfigError(f"{output}: write .npy or .csv")
            check_output(output, force, (model, data_file))
        result = run_model(model, read_inputs(data_file, target))
        columns = [f"output_{j}" for j in range(result.outputs.shape[1])] + (["class"] if result.classes is not None
                                                                              else [])
        rows = [[*(f"{v:.6g}" for v in values), *([str(int(c))] if result.classes is not None else [])]
                for values, c in zip(result.outputs.tolist(), (result.classes if result.classes is not None
                                                               else [None] * len(result.outputs)))]
        text = "\n".join([",".join(columns), *(",".join(row) for row in rows)]) + "\n"
        if output is None:
            out.print(text, end="", highlight=False, markup=False, soft_wrap=True)
        elif output.suffix == ".npy":
            import io

            import numpy as np

            buffer = io.BytesIO()
            np.save(buffer, result.outputs)
            write_atomic(output, buffer.getvalue())
            out.print(f"wrote {len(rows)} rows of outputs -> {output}", highlight=False, markup=False)
        else:
            write_atomic(output, text.encode())
            out.print(f"wrote {len(rows)} rows -> {output}", highlight=False, markup=False)


def _kb(n: float) -> str:
    return f"{n / 1000:,.2f}"


def _render_report(path: Path, k: int) -> None:
    """The storage report as a table: one row per layer when the terminal is wide enough, else one column per layer
    (every number whole: cells wrap instead of being cut, also when piped)."""
    header = read_header(path)
    report = storage_report(header, k)
    title = f"{path}  ({report.kind} {report.model}, format v{header.version})"
    if report.projected:
        title += f"  (clustered columns: projected at k={k}, bit-packed, float32)"
    names = ("layer", "n", "|w|", "k", "b", "coding", "bits/e", "H(I)", "dense KB", "clust. KB", "r Eq.10",
             "vs fp32")
    rows = [[str(r.layer), f"{r.n:,}", str(r.width), str(r.k), str(r.codebook_bits), r.index_coding,
             f"{r.bits_per_edge:.2f}", f"{r.entropy:.2f}" if r.entropy is not None else "-", _kb(r.dense_bytes),
             _kb(r.clustered_bytes), f"{r.ratio:.1f}x", f"{r.stored_ratio:.1f}x"] for r in report.layers]
    dense = sum(r.dense_bytes for r in report.layers)
    clustered = sum(r.clustered_bytes for r in report.layers)
    totals = [["edges", *[""] * 7, _kb(dense), _kb(clustered), "", f"{dense / clustered:.1f}x"],
              ["extras", *[""] * 7, _kb(report.extras_bytes), _kb(report.extras_bytes), "", ""],
              ["model", *[""] * 7, _kb(report.dense_bytes), _kb(report.clustered_bytes), "", f"{report.ratio:.1f}x"]]
    widths = [max(len(cell) for cell in column) for column in zip(names, *rows, *totals)]
    if sum(widths) + 3 * len(widths) + 1 <= out.width:
        table = Table(title=escape(title), title_justify="left")
        for name in names:
            table.add_column(name, justify="right", overflow="fold")
        for row in rows:
            table.add_row(*row)
        table.add_section()
        for row in totals:
            table.add_row(*row)
    else:  # narrow terminal: metrics down, layers across
        table = Table(title=escape(title), title_justify="left")
        table.add_column("", overflow="fold")
        for row in rows:
            table.add_column(f"layer {row[0]}", justify="right", overflow="fold")
        table.add_column("model", justify="right", overflow="fold")
        model_column = {"dense KB": totals[2][8], "clust. KB": totals[2][9], "vs fp32": totals[2][11]}
        for position, name in enumerate(names[1:], start=1):
            table.add_row(name, *(row[position] for row in rows), model_column.get(name, ""))
    out.print(table)
    out.print("n edges, b codebook bits, bits/e stored index bits per edge, H(I) index entropy (bits), "
              "r Eq.10 the paper's ratio (same b for dense and codebook, log2 k index bits), "
              "vs fp32 = float32 dense KB / stored KB", highlight=False, markup=False)
    out.print(f"extras ({extras_label(report)}): {_kb(report.extras_bytes)} KB; file: {_kb(report.file_bytes)} KB "
              f"on disk ({report.total_bytes:,} bytes of tensors, {report.edge_bytes:,} of them edge storage); "
              "1 KB = 1000 bytes", highlight=False, markup=False)


def _version(value: bool) -> None:
    if value:
        out.print(f"kancompress {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    version: Annotated[bool, flag("--version", callback=_version, is_eager=True, help="Show the version.")] = False,
    max_decoded_bytes: Annotated[Optional[float], typer.Option("--max-decoded-bytes", help="Refuse checkpoints whose decoded model would take more memory than this (bytes).", show_default="8 GiB")] = None,
) -> None:
    """kancompress: MetaCluster compression of Kolmogorov-Arnold Networks (arXiv 2510.19105)."""
    if max_decoded_bytes is not None:  # for this command only (in-process callers keep their own limit)
        import kancompress.format.checkpoint as checkpoint_format

        previous = checkpoint_format.MAX_DECODED_BYTES
        checkpoint_format.MAX_DECODED_BYTES = int(max_decoded_bytes)

        def restore() -> None:
            checkpoint_format.MAX_DECODED_BYTES = previous

        ctx.call_on_close(restore)


def run() -> None:
    """The `kancompress` command: the Typer app, with Ctrl-C at any moment (even while importing) one line, and a
    usage error (an unknown option, a missing argument) one `error:` line with exit status 2."""
    try:
        code = app(prog_name="kancompress", standalone_mode=False)
    except KeyboardInterrupt:
        err.print("[red]interrupted[/red]: no output was written", highlight=False)
        raise SystemExit(130) from None
    except Exception as exc:  # click's UsageError (vendored by newer Typer versions): matched by name
        if not any(cls.__name__ == "UsageError" for cls in type(exc).__mro__):
            if type(exc).__name__ == "Abort":
                err.print("[red]interrupted[/red]: no output was written", highlight=False)
                raise SystemExit(130) from None
            raise
        message = exc.format_message()  # type: ignore[attr-defined]
        if not message:  # no arguments at all: the help was shown
            raise SystemExit(2) from None
        context = getattr(exc, "ctx", None)
        command = context.command_path if context is not None else "kancompress"
        err.print(f"[red]error:[/red] {escape(message)} (see '{command} --help')", highlight=False, soft_wrap=True)
        raise SystemExit(2) from None
    raise SystemExit(code if isinstance(code, int) else 0)
