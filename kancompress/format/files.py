"""Where outputs may go, and how they are written: never over an input, never over an existing file without
`force`, always atomically (temporary file in the same folder, fsync, rename)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from kancompress.errors import OutputExistsError

PathLike = str | os.PathLike[str]


def check_output(path: PathLike, force: bool, inputs: tuple[PathLike, ...] = ()) -> Path:
    """Refuse an output that exists (unless `force`), that is an input, or whose folder is missing."""
    out = Path(path)
    for source in inputs:
        if out.exists() and Path(source).exists() and out.resolve() == Path(source).resolve():
            raise OutputExistsError(f"{out}: output is the input file; choose another output path")
    if out.is_dir():
        raise OutputExistsError(f"{out}: is a folder; give a file path for the output")
    if out.exists() and not force:
        raise OutputExistsError(f"{out}: already exists; pass --force to overwrite it")
    if not out.parent.exists():
        raise OutputExistsError(f"{out.parent}: output folder does not exist; create it first")
    return out


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: PathLike, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, fsync it, then rename it into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode, like any other tool's
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_folder_atomic(path: PathLike, files: dict[str, bytes], force: bool) -> Path:
    """Write `files` (name -> bytes) as the folder `path`: built as a temporary folder beside it, then renamed into
    place. An existing folder is refused unless `force`, and then replaced only once the new one is complete."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"{path}: is a file; give a folder path for the output")
    if path.exists() and any(path.iterdir()) and not force:
        raise OutputExistsError(f"{path}: already exists and is not empty; pass --force to replace it")
    if not path.parent.exists():
        raise OutputExistsError(f"{path.parent}: output folder does not exist; create it first")
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        os.chmod(staging, 0o777 & ~_umask())
        for name, data in files.items():
            write_atomic(staging / name, data)
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(staging, path)
            for leftover in (old / path.name).iterdir():
                leftover.unlink()
            (old / path.name).rmdir()
            old.rmdir()
        else:
            os.replace(staging, path)
    except BaseException:
        for leftover in staging.glob("*") if staging.exists() else ():
            leftover.unlink()
        if staging.exists():
            staging.rmdir()
        raise
    return path
