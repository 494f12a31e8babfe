"""Helpers shared by the readers and writers: atomic replacement, path checks, errors."""

from __future__ import annotations

import os
from pathlib import Path

import contextlib

from .._fs import atomic_path, commit, discard, fsync_dir as _fsync_dir, temp_path_for  # noqa: F401 (re-exported)
from ..exceptions import AelabError, DataError, DataFileNotFoundError, require  # noqa: F401 (re-exported)

#: File extensions :func:`aelab.io.read_array` understands (a folder of images is also accepted).
READ_EXTENSIONS = (".npy", ".npz", ".csv", ".tsv", ".parquet", ".h5", ".hdf5")
#: File extensions :func:`aelab.io.write_array` writes.
WRITE_EXTENSIONS = (".npy", ".npz", ".csv", ".tsv", ".parquet", ".h5", ".hdf5")
#: Image file extensions read from a folder.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


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




@contextlib.contextmanager
def reading(path: str | os.PathLike):
    """Turn whatever a format library raises on a damaged file into a DataError naming the file."""
    try:
        yield
    except (AelabError, KeyboardInterrupt):
        raise
    except MemoryError:
        raise DataError(f"cannot read {str(path)!r}: it asks for more memory than there is (a damaged header, or "
                        "data larger than memory: aelab.io.open_array or --stream always reads it a chunk at a "
                        "time).") from None
    except Exception as exc:  # numpy, zipfile, pyarrow, h5py and codec errors on damaged bytes
        detail = " ".join(str(exc).split())[:300]
        raise DataError(f"cannot read {str(path)!r} ({type(exc).__name__}: {detail}). The file is damaged, "
                        "truncated or not in the format its extension names; re-create or re-download it.") from None
