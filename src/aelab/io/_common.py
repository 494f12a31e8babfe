"""Helpers shared by the readers and writers: atomic replacement, path checks, errors."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..exceptions import DataError, require

#: File extensions :func:`aelab.io.read_array` understands (a folder of images is also accepted).
READ_EXTENSIONS = (".npy", ".npz", ".csv", ".tsv", ".parquet", ".h5", ".hdf5")
#: File extensions :func:`aelab.io.write_array` writes.
WRITE_EXTENSIONS = (".npy", ".npz", ".csv", ".tsv", ".parquet", ".h5", ".hdf5")
#: Image file extensions read from a folder.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


class DataFileNotFoundError(DataError, FileNotFoundError):
    """A data file or folder does not exist (both a DataError and a FileNotFoundError)."""


def suffix_of(path: str | os.PathLike, supported: tuple[str, ...], action: str) -> str:
    """Return the lower-case extension of ``path`` or raise a DataError listing ``supported``."""
    suffix = Path(path).suffix.lower()
    if suffix not in supported:
        got = f"extension {suffix!r}" if suffix else "no extension"
        raise DataError(
            f"cannot {action} {str(path)!r}: {got} is not supported. "
            f"Supported: {', '.join(supported)}"
            + (" or a folder of .png/.jpg images" if action == "read" else "")
            + ". Rename the file or convert it to one of these formats."
        )
    return suffix


def existing_file(path: str | os.PathLike) -> Path:
    """Return ``path`` as a Path after checking it is a non-empty regular file."""
    p = Path(path)
    if not p.exists():
        raise DataFileNotFoundError(f"no such file: {str(p)!r}. Check the path (relative to {os.getcwd()!r}).")
    if p.is_dir():
        raise DataError(f"{str(p)!r} is a folder, but a file was expected.")
    if p.stat().st_size == 0:
        raise DataError(f"{str(p)!r} is empty (0 bytes); expected a data file. Re-create or re-download it.")
    return p


def h5py_module(purpose: str):
    """Import h5py or raise a MissingDependencyError naming the 'io' extra."""
    return require("h5py", "io", purpose)


def _fsync_dir(folder: Path) -> None:
    """Flush the folder entry so a rename survives a crash (no-op where unsupported)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def temp_path_for(path: str | os.PathLike) -> Path:
    """Create and return an empty temporary file next to ``path`` (same folder, same file system)."""
    target = Path(path)
    if not target.parent.is_dir():
        raise DataFileNotFoundError(
            f"cannot write {str(target)!r}: the folder {str(target.parent)!r} does not exist. Create it first."
        )
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    # mkstemp creates the file -rw-------; give the result the usual permissions (0666 & ~umask)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return Path(tmp)


def commit(tmp: Path, target: str | os.PathLike) -> None:
    """fsync ``tmp`` and atomically rename it onto ``target``."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    _fsync_dir(Path(target).parent)


def discard(tmp: Path) -> None:
    """Remove a temporary file if it is still there."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically.

    If the body raises, the temporary file is removed and ``path`` (if it existed) is untouched.
    """
    tmp = temp_path_for(path)
    try:
        yield tmp
        commit(tmp, path)
    except BaseException:
        discard(tmp)
        raise
