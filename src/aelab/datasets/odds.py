"""Tabular anomaly-detection benchmarks: ODDS ``.mat`` and ADBench ``.npz`` files."""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

import numpy as np

from ..exceptions import DataError
from ..io._common import DataFileNotFoundError, existing_file, h5py_module
from ._paths import DATA_DIR_ENV, search_dirs


def _labels(y: np.ndarray, n: int, path: Path) -> np.ndarray:
    """Return ``y`` as int64 of length ``n``, checking the values are whole numbers."""
    y = np.asarray(y).ravel()
    if len(y) != n:
        raise DataError(f"{str(path)!r}: X has {n} rows but y has {len(y)} labels; they must match.")
    if y.dtype.kind not in "biuf" or (y.dtype.kind == "f" and not np.all(np.isfinite(y) & (y == np.round(y)))):
        raise DataError(f"{str(path)!r}: labels y must be whole numbers (1 = anomaly), got dtype {y.dtype}.")
    return y.astype(np.int64)


def _pick(keys, path: Path) -> None:
    missing = [k for k in ("X", "y") if k not in keys]
    if missing:
        shown = ", ".join(repr(k) for k in keys if not str(k).startswith("__")) or "none"
        raise DataError(
            f"{str(path)!r} has no {' or '.join(map(repr, missing))}; it holds: {shown}. "
            "ODDS/ADBench files store the features as 'X' and the labels as 'y'."
        )


def _read_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as fh:
        fh.seek(512)
        is_v73 = fh.read(8) == b"\x89HDF\r\n\x1a\n"  # MATLAB v7.3 = HDF5 after a 512-byte header
    if is_v73:
        h5py = h5py_module("reading MATLAB v7.3 .mat files")
        try:
            with h5py.File(path, "r") as fh:
                _pick(list(fh.keys()), path)
                # MATLAB stores column-major: an (n, d) matrix appears as (d, n) in HDF5.
                return np.asarray(fh["X"][()]).T, np.asarray(fh["y"][()])
        except (OSError, KeyError) as exc:
            raise DataError(f"{str(path)!r} is a damaged MATLAB v7.3 (HDF5) file ({exc}).") from exc
    import scipy.io
    import scipy.sparse

    try:
        mat = scipy.io.loadmat(path)
    except (ValueError, TypeError, OSError, NotImplementedError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{str(path)!r} is not a readable MATLAB .mat file ({exc}).") from exc
    _pick(list(mat), path)
    X = mat["X"].toarray() if scipy.sparse.issparse(mat["X"]) else mat["X"]
    return X, mat["y"]


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            _pick(npz.files, path)
            return npz["X"], npz["y"]
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, AttributeError) as exc:
        raise DataError(f"{str(path)!r} is not a readable .npz archive ({exc}).") from exc


def _resolve(name_or_path: str | os.PathLike, data_dir) -> Path:
    p = Path(name_or_path).expanduser()
    if p.suffix.lower() in (".mat", ".npz") or p.exists() or len(p.parts) > 1:
        if p.suffix.lower() not in (".mat", ".npz"):
            raise DataError(f"load_odds reads ODDS .mat and ADBench .npz files, got {str(p)!r}.")
        return existing_file(p)
    name = str(name_or_path)
    pattern = re.compile(rf"(\d+_)?{re.escape(name)}\.(mat|npz)", re.IGNORECASE)
    dirs = ([Path(data_dir).expanduser()] if data_dir is not None else []) + search_dirs("odds", None)
    for folder in dirs:
        if folder.is_dir():
            matches = sorted(f for f in folder.iterdir() if pattern.fullmatch(f.name) and f.is_file())
            if matches:
                return matches[0]
    raise DataFileNotFoundError(
        f"no ODDS/ADBench data set {name!r}: looked for {name}.mat, {name}.npz and <number>_{name}.npz in "
        + ", ".join(repr(str(d)) for d in dirs)
        + f". Download it (ODDS: https://odds.cs.stonybrook.edu/, ADBench: https://github.com/Minqi824/ADBench) "
        f"into one of those folders, pass data_dir=..., set {DATA_DIR_ENV}, or pass the file's path."
    )


def load_odds(
    name_or_path: str | os.PathLike, data_dir: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Load an ODDS ``.mat`` or ADBench ``.npz`` anomaly-detection data set.

    Parameters
    ----------
    name_or_path : str or path-like
        A file path, or a bare name such as ``"cardio"``, looked up (case-insensitive)
        as ``cardio.mat``, ``cardio.npz`` or ADBench's ``6_cardio.npz`` in ``data_dir``,
        then ``$AELAB_DATA_DIR/odds``, ``$AELAB_DATA_DIR`` and ``~/.cache/aelab/odds``.
    data_dir : path, optional
        Folder searched first for a bare name.

    Returns
    -------
    X : numpy.ndarray of float64, shape (n, d)
    y : numpy.ndarray of int64, shape (n,)
        1 = anomaly (outlier), 0 = normal.

    Notes
    -----
    Both formats store the features as ``X`` and the labels as ``y``. ``.mat``
    files are read with ``scipy.io.loadmat``; MATLAB v7.3 files, which are HDF5,
    with h5py (extra ``io``), transposing back MATLAB's column-major layout.
    """
    path = _resolve(name_or_path, data_dir)
    X, y = _read_mat(path) if path.suffix.lower() == ".mat" else _read_npz(path)
    X = np.asarray(X)
    if X.ndim != 2 or X.dtype.kind not in "biuf":
        raise DataError(f"{str(path)!r}: X must be a numeric (n, d) matrix, got shape {X.shape} dtype {X.dtype}.")
    return X.astype(np.float64), _labels(y, len(X), path)
