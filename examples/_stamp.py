"""What every results file states about the code that produced it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def commit() -> str:
    """The short git commit of this checkout, or the RESULTS_COMMIT environment variable where it is set (a copy
    sent to another machine may carry no or a stale .git); '' when neither is known."""
    if os.environ.get("RESULTS_COMMIT"):
        return os.environ["RESULTS_COMMIT"]
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent)
    return done.stdout.strip()
