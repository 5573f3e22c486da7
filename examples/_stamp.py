"""What every results file states about the code that produced it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def commit() -> str:
    """The short git commit of this checkout; outside a git checkout (a copy sent to a GPU machine, say) the
    RESULTS_COMMIT environment variable, else ''."""
    if not (Path(__file__).resolve().parent.parent / ".git").exists():
        return os.environ.get("RESULTS_COMMIT", "")
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent)
    return done.stdout.strip()
