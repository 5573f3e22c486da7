"""Resumable runs of `train` and `finetune`: the job (command, options, input files) saved with the training
state beside the output (`OUTPUT.state`), and the rules for starting, resuming and finishing a run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kancompress.errors import ConfigError
from kancompress.format.files import check_output
from kancompress.format.state import load_train_state, save_train_state, state_path_for
from kancompress.options import FinetuneOptions, TrainOptions

# Options a resumed run may change: they do not alter what was already computed.
RESUMABLE_CHANGES: tuple[str, ...] = ("epochs", "patience", "device")


@dataclass(frozen=True)
class Job:
    """What a run needs to continue after an interruption."""

    command: str  # "train" | "finetune"
    options: TrainOptions | FinetuneOptions
    checkpoint: str | None = None  # finetune: the clustered checkpoint
    reassign: str | None = None  # finetune --reassign: the checkpoint that was clustered

    def to_json(self) -> dict[str, Any]:
        return {"command": self.command, "options": self.options.to_json(), "checkpoint": self.checkpoint,
                "reassign": self.reassign}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        options_type = TrainOptions if data.get("command") == "train" else FinetuneOptions
        try:
            return cls(data["command"], options_type.from_json(data["options"]), data.get("checkpoint"),
                       data.get("reassign"))
        except (KeyError, TypeError, ValueError):
            raise ConfigError("the interrupted run was started by another kancompress version; "
                              "start over with --force") from None


def start(output: Path, force: bool, inputs: tuple[Path, ...] = ()) -> None:
    """A fresh run: the output may be written, and no interrupted run is silently thrown away."""
    check_output(output, force, inputs)
    state = state_path_for(output)
    if state.exists() and not force:
        raise ConfigError(f"{state}: an interrupted run exists; pass --resume to continue it or --force to restart")


def resume(output: Path, command: str, force: bool) -> tuple[dict[str, Any], Job] | None:
    """The state and job of the interrupted run writing `output`; None when it has no state yet (interrupted
    before its first epoch ended), so the caller starts afresh."""
    check_output(output, force)
    if not state_path_for(output).exists():
        return None
    state, data = load_train_state(state_path_for(output))
    job = Job.from_json(data)
    if job.command != command:
        raise ConfigError(f"{state_path_for(output)} belongs to a {job.command!r} run; resume it with that command")
    return state, job


def with_changes(job: Job, given: dict[str, tuple[Any, Any]]) -> tuple[Job, list[str]]:
    """Apply options given again on --resume: those in RESUMABLE_CHANGES are applied (returned by name), any other
    that differs from the interrupted run is refused, naming it. `given` maps an option name to
    (value given now, value the interrupted run used)."""
    applied = []
    options = job.options
    for name, (now, before) in sorted(given.items()):
        if now == before:
            continue
        if name not in RESUMABLE_CHANGES:
            raise ConfigError(f"--{name.replace('_', '-')} {now} conflicts with the interrupted run ({before}); "
                              "resume without it, or start over with --force")
        if name == "device":
            options = replace(options, device=now)
        else:
            options = replace(options, train=replace(options.train, **{name: now}))
        applied.append(name)
    return replace(job, options=options), applied


def state_writer(output: Path, job: Job) -> Callable[[dict[str, Any]], None]:
    def write(state: dict[str, Any]) -> None:
        save_train_state(state_path_for(output), state, job.to_json())

    return write


def finish(output: Path) -> None:
    """The run's output is written: its resumable state is no longer needed."""
    state_path_for(output).unlink(missing_ok=True)
