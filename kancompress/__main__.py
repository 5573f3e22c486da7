"""`python -m kancompress` and the `kancompress` command: Ctrl-C is one line at any moment, even while importing."""

from __future__ import annotations

import signal
import sys

TORCH_COMMANDS = ("train", "cluster", "finetune", "sweep", "eval", "import", "export", "predict")


def _import_torch_deferring_ctrl_c() -> None:
    """Import torch with SIGINT held back: torch's extension modules abort the process (not a KeyboardInterrupt)
    when interrupted mid-import. A Ctrl-C during the import is delivered right after it."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # e.g. a background job: Ctrl-C is not ours to take
        import torch  # noqa: F401

        return
    pending: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda number, frame: pending.append(number))
    try:
        import torch  # noqa: F401
    finally:
        signal.signal(signal.SIGINT, previous)
    if pending:
        raise KeyboardInterrupt


def main() -> None:
    try:
        if any(arg in TORCH_COMMANDS for arg in sys.argv[1:3]):
            _import_torch_deferring_ctrl_c()
        from kancompress.cli import run

        run()
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: no output was written\n")
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
