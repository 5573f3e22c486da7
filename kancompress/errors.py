"""The errors kancompress raises at its public boundaries.

The CLI catches `KanCompressError` (and only it), prints its message as one line and exits non-zero.
Every message names the offending thing and says how to fix it.
"""

from __future__ import annotations


class KanCompressError(Exception):
    """Base class of every error the tool reports to a user."""


class ConfigError(KanCompressError, ValueError):
    """An option or a model configuration is invalid (unknown name, out of range)."""


class FormatError(KanCompressError):
    """A file is not a readable kancompress checkpoint (foreign, truncated, corrupted, too new)."""


class DataError(KanCompressError):
    """A dataset cannot be found or read."""


class OutputExistsError(KanCompressError):
    """An output path exists and overwriting was not asked for."""


class BudgetError(ConfigError):
    """`compress` found nothing within the budget; `trials` (JSON-ready) say what it tried."""

    def __init__(self, message: str, trials: list[dict[str, object]]):
        super().__init__(message)
        self.trials = trials
