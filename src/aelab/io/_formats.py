"""Whole-array readers and atomic writers, one pair per file format."""

from __future__ import annotations

import csv
import math
import os
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..exceptions import DataError, require
from ._common import (
    READ_EXTENSIONS,
    WRITE_EXTENSIONS,
    DataFileNotFoundError,
    atomic_path,
    existing_file,
    h5py_module,
    reading,
    suffix_of,
)
from ._images import read_image_folder

_NUMERIC_KINDS = "biufc"


# --------------------------------------------------------------------------- helpers
def check_numeric_dtype(dtype: np.dtype, where: str) -> None:
    """Raise a DataError unless ``dtype`` is a plain numeric (bool, int, float, complex) dtype."""
    if dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None:
        raise DataError(
            f"{where} has dtype {dtype}, but aelab handles numeric arrays only (bool, int, float). "
            "Convert it to numbers before saving it."
        )


def choose_key(available: Sequence[str], key: str | None, path: str | os.PathLike, what: str) -> str:
    """Pick ``key`` from ``available``: the only entry or ``'X'`` by default; else a DataError listing them."""
    listed = ", ".join(repr(k) for k in available) or "none"
    if key is None:
        if len(available) == 1:
            return available[0]
        if "X" in available:
            return "X"
        if not available:
            raise DataError(f"{str(path)!r} contains no {what}s.")
        raise DataError(
            f"{str(path)!r} contains several {what}s ({listed}) and none is called 'X'; "
            f"pass key=... to choose one."
        )
    if key not in available:
        raise DataError(f"{str(path)!r} has no {what} {key!r}; available: {listed}. Pass one of these as key.")
    return key


def as_numeric_array(array, path: str | os.PathLike, max_ndim: int | None = None) -> np.ndarray:
    """Return ``array`` as a numeric ndarray fit for writing to ``path``."""
    arr = np.asarray(array)
    check_numeric_dtype(arr.dtype, f"the array to write to {str(path)!r}")
    if max_ndim is not None and not 1 <= arr.ndim <= max_ndim:
        raise DataError(
            f"{Path(path).suffix} files hold 1-D or 2-D arrays, but the array has shape {arr.shape}. "
            "Reshape it to (n, d) first, or write .npy / .h5 which keep any shape."
        )
    return arr


def column_names(n_columns: int, columns: Sequence[str] | None) -> list[str]:
    """Return ``columns`` (checked against ``n_columns``) or the default names x0, x1, ..."""
    if columns is None:
        return [f"x{i}" for i in range(n_columns)]
    names = [str(c) for c in columns]
    if len(names) != n_columns:
        raise DataError(f"got {len(names)} column name(s) for an array with {n_columns} column(s).")
    return names


def as_2d(arr: np.ndarray) -> np.ndarray:
    return arr.reshape(-1, 1) if arr.ndim == 1 else arr


# --------------------------------------------------------------------------- .npy
def npy_header(path: str | os.PathLike) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """Return ``(shape, fortran_order, dtype, data_offset)`` of a .npy file after checking it is complete."""
    p = existing_file(path)
    with open(p, "rb") as fh:
        try:
            version = np.lib.format.read_magic(fh)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = reader(fh)
        except (ValueError, EOFError, OSError, SyntaxError) as exc:
            raise DataError(f"{str(p)!r} is not a valid .npy file ({exc}). Re-create it with numpy.save.") from exc
        offset = fh.tell()
    check_numeric_dtype(dtype, f"{str(p)!r}")
    expected = offset + math.prod(shape) * dtype.itemsize
    actual = p.stat().st_size
    if actual < expected:
        raise DataError(
            f"{str(p)!r} is truncated: its header announces shape {shape} of {dtype} "
            f"({expected} bytes in all) but the file has {actual} bytes. Re-create or re-download it."
        )
    return shape, fortran, dtype, offset


def _read_npy(path, key):
    npy_header(path)
    return np.load(path, mmap_mode="r", allow_pickle=False)


def _write_npy(tmp, arr, key, columns):
    with open(tmp, "wb") as fh:
        np.save(fh, arr, allow_pickle=False)


# --------------------------------------------------------------------------- .npz
def _read_npz(path, key):
    p = existing_file(path)
    try:
        npz = np.load(p, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise DataError(f"{str(p)!r} is not a valid .npz archive ({exc}). Re-create it with numpy.savez.") from exc
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DataError(f"{str(p)!r} holds a single .npy array, not an .npz archive; rename it to .npy.")
    with npz:
        name = choose_key(list(npz.files), key, p, "array")
        try:
            arr = npz[name]
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
            raise DataError(f"array {name!r} in {str(p)!r} is corrupt or truncated ({exc}).") from exc
    check_numeric_dtype(arr.dtype, f"array {name!r} in {str(p)!r}")
    return arr


def _write_npz(tmp, arr, key, columns):
    with open(tmp, "wb") as fh:
        np.savez(fh, **{key or "X": arr})


# --------------------------------------------------------------------------- .csv / .tsv
def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _first_row(path: Path, delimiter: str) -> tuple[int, list[str]] | None:
    """Return ``(line_number, fields)`` of the first non-blank row, or None."""
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        for row in reader:
            if any(field.strip() for field in row):
                return reader.line_num, row
    return None


def _diagnose_delimited(path: Path, delimiter: str, header: list[str] | None, skip: int) -> None:
    """Find the first ragged row or non-numeric value and raise a DataError that names it."""
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        n_columns, row_number = (len(header) if header else None), 0
        for row in reader:
            if reader.line_num <= skip or not any(field.strip() for field in row):
                continue
            row_number += 1
            if n_columns is None:
                n_columns = len(row)
            if len(row) != n_columns:
                raise DataError(
                    f"{str(path)!r}: line {reader.line_num} has {len(row)} field(s) but the "
                    f"{'header' if header else 'first row'} has {n_columns}. Every row needs the same "
                    f"number of {'tab' if delimiter == chr(9) else 'comma'}-separated values."
                )
            for j, value in enumerate(row):
                if not _is_number(value):
                    column = repr(header[j]) if header else f"{j + 1}"
                    raise DataError(
                        f"{str(path)!r}: non-numeric value {value!r} in column {column} at data row "
                        f"{row_number} (line {reader.line_num}); expected a number. "
                        "Fix or remove that value, or drop the column."
                    )


def _read_delimited(path, key, delimiter):
    p = existing_file(path)
    first = _first_row(p, delimiter)
    if first is None:
        raise DataError(f"{str(p)!r} has no data, only blank lines.")
    line, fields = first
    numeric = [_is_number(f) for f in fields]
    header = None if any(numeric) else [f.strip() for f in fields]
    skip = line if header is not None else 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": handled below
            arr = np.loadtxt(
                p, delimiter=delimiter, skiprows=skip, ndmin=2, dtype=np.float64,
                comments=None, quotechar='"', encoding="utf-8-sig",
            )
    except ValueError as exc:
        _diagnose_delimited(p, delimiter, header, skip)
        raise DataError(f"cannot read {str(p)!r} as numbers: {exc}") from exc
    if arr.shape[0] == 0:
        raise DataError(f"{str(p)!r} has a header ({', '.join(header or [])}) but no data rows.")
    return arr


def _write_delimited(tmp, arr, key, columns, delimiter):
    arr = as_2d(arr)
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        if columns is not None:
            fh.write(delimiter.join(column_names(arr.shape[1], columns)) + "\n")
        write_delimited_rows(fh, arr, delimiter)


def write_delimited_rows(fh, arr: np.ndarray, delimiter: str) -> None:
    """Write rows of ``arr`` as text, with the shortest repr that round-trips each number."""
    np.savetxt(fh, arr.astype(np.uint8) if arr.dtype == bool else arr, fmt="%s", delimiter=delimiter)


# --------------------------------------------------------------------------- .parquet
def parquet_modules(purpose: str):
    pa = require("pyarrow", "io", purpose)
    pq = require("pyarrow.parquet", "io", purpose)
    return pa, pq


def open_parquet(path: str | os.PathLike):
    """Open a ParquetFile after checking every column is numeric."""
    pa, pq = parquet_modules("reading .parquet files")
    p = existing_file(path)
    try:
        pf = pq.ParquetFile(p)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{str(p)!r} is not a valid Parquet file ({exc}). Re-create it.") from exc
    schema = pf.schema_arrow
    bad = [
        f"{f.name!r} ({f.type})"
        for f in schema
        if not (pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_boolean(f.type))
    ]
    if bad:
        raise DataError(
            f"{str(p)!r}: non-numeric column(s) {', '.join(bad)}; aelab reads numeric columns only. "
            "Drop or encode these columns first."
        )
    if not len(schema):
        raise DataError(f"{str(p)!r} has no columns.")
    return pf


def table_to_array(table) -> np.ndarray:
    """Stack the columns of a pyarrow Table or RecordBatch into an (n, d) array (nulls become NaN)."""
    if not table.num_rows:
        return np.empty((0, table.num_columns))
    return np.column_stack([col.to_numpy(zero_copy_only=False) for col in table.columns])


def _read_parquet(path, key):
    pa, _ = parquet_modules("reading .parquet files")
    pf = open_parquet(path)
    try:
        return table_to_array(pf.read())
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{str(path)!r} is corrupt or truncated ({exc}).") from exc


def _write_parquet(tmp, arr, key, columns):
    pa, pq = parquet_modules("writing .parquet files")
    arr = as_2d(arr)
    names = column_names(arr.shape[1], columns)
    pq.write_table(pa.table({n: arr[:, i] for i, n in enumerate(names)}), tmp)


# --------------------------------------------------------------------------- .h5 / .hdf5
def h5_dataset_names(group) -> list[str]:
    """Paths of every dataset in an open HDF5 file or group."""
    h5py = h5py_module("reading HDF5 files")
    names: list[str] = []
    group.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names


def open_h5_dataset(path: str | os.PathLike, key: str | None):
    """Open ``path`` and return ``(file, dataset)``; the caller closes the file."""
    h5py = h5py_module("reading HDF5 files")
    p = existing_file(path)
    try:
        fh = h5py.File(p, "r")
    except OSError as exc:
        raise DataError(f"{str(p)!r} is not a valid HDF5 file ({exc}). Re-create or re-download it.") from exc
    try:
        name = choose_key(h5_dataset_names(fh), key.strip("/") if key else None, p, "dataset")
        ds = fh[name]
        check_numeric_dtype(ds.dtype, f"dataset {name!r} in {str(p)!r}")
    except BaseException:
        fh.close()
        raise
    return fh, ds


def read_h5_rows(ds, start=None, stop=None) -> np.ndarray:
    """Read rows of an HDF5 dataset, turning low-level failures into DataError."""
    try:
        return ds[()] if ds.ndim == 0 else ds[start:stop]
    except (OSError, ValueError, RuntimeError) as exc:
        raise DataError(f"dataset {ds.name!r} in {ds.file.filename!r} is corrupt or truncated ({exc}).") from exc


def _read_h5(path, key):
    fh, ds = open_h5_dataset(path, key)
    with fh:
        return read_h5_rows(ds)


def _write_h5(tmp, arr, key, columns):
    h5py = h5py_module("writing HDF5 files")
    with h5py.File(tmp, "w") as fh:
        fh.create_dataset(key or "X", data=arr)


# --------------------------------------------------------------------------- public
_READERS = {
    ".npy": _read_npy,
    ".npz": _read_npz,
    ".csv": lambda p, k: _read_delimited(p, k, ","),
    ".tsv": lambda p, k: _read_delimited(p, k, "\t"),
    ".parquet": _read_parquet,
    ".h5": _read_h5,
    ".hdf5": _read_h5,
}
_WRITERS = {
    ".npy": (_write_npy, None),
    ".npz": (_write_npz, None),
    ".csv": (lambda t, a, k, c: _write_delimited(t, a, k, c, ","), 2),
    ".tsv": (lambda t, a, k, c: _write_delimited(t, a, k, c, "\t"), 2),
    ".parquet": (_write_parquet, 2),
    ".h5": (_write_h5, None),
    ".hdf5": (_write_h5, None),
}


def read_array(path: str | os.PathLike, key: str | None = None) -> np.ndarray:
    """Read a numeric array from a file or a folder of images.

    Parameters
    ----------
    path : str or path-like
        A file ending in ``.npy``, ``.npz``, ``.csv``, ``.tsv``, ``.parquet``,
        ``.h5`` or ``.hdf5``, or a folder of ``.png``/``.jpg``/``.jpeg`` images.
    key : str, optional
        The array in an ``.npz`` file or the dataset path in an HDF5 file.
        By default the only one there, else the one called ``'X'``.

    Returns
    -------
    numpy.ndarray
        * ``.npy``: a read-only ``numpy.memmap`` (nothing is loaded until used;
          ``np.array(x)`` makes an in-memory copy).
        * ``.csv``/``.tsv``: float64 ``(n, d)``; a first row without any number is
          taken as the header and skipped.
        * ``.parquet``: ``(n, d)`` of the columns' common dtype; nulls become NaN.
        * image folder: files sorted by name, ``(n, h, w)`` uint8 when all are
          grayscale, else ``(n, h, w, 3)`` uint8 RGB (alpha dropped).
        * other formats: the stored array, as stored.

    Raises
    ------
    DataError
        Unknown extension, empty, corrupt or truncated file, wrong key (the message
        lists the keys there), non-numeric value (with its column, row and value)
        or ragged rows (with the line number). A missing path raises
        ``DataFileNotFoundError``, both a DataError and a FileNotFoundError.
    MissingDependencyError
        When h5py, pyarrow or pillow is needed but missing (``pip install 'aelab[io]'``).
    """
    p = Path(path)
    if p.is_dir():
        return read_image_folder(p)
    suffix = suffix_of(p, READ_EXTENSIONS, "read")
    if not p.exists():
        raise DataFileNotFoundError(f"no such file: {str(p)!r}. Check the path (relative to {os.getcwd()!r}).")
    with reading(p):
        return _READERS[suffix](p, key)


def write_array(
    path: str | os.PathLike, array, key: str | None = None, *, columns: Sequence[str] | None = None
) -> Path:
    """Write ``array`` to ``path`` atomically, in the format its extension names.

    The data go to a temporary file in the same folder, which is flushed to disk
    and renamed onto ``path`` only once complete: if anything fails, an existing
    file at ``path`` is left as it was and no temporary file remains.

    Parameters
    ----------
    path : str or path-like
        Ends in ``.npy``, ``.npz``, ``.csv``, ``.tsv``, ``.parquet``, ``.h5`` or ``.hdf5``.
    array : array-like
        Numeric. CSV, TSV and Parquet take 1-D or 2-D arrays (1-D becomes one column).
    key : str, optional
        Array name in ``.npz`` or dataset path in HDF5 (default ``'X'``); ignored otherwise.
    columns : sequence of str, optional
        Column names: the header line of a CSV/TSV (none by default) and the
        Parquet column names (default ``x0, x1, ...``).

    Returns
    -------
    pathlib.Path
        The path written.
    """
    suffix = suffix_of(path, WRITE_EXTENSIONS, "write")
    writer, max_ndim = _WRITERS[suffix]
    arr = as_numeric_array(array, path, max_ndim)
    with atomic_path(path) as tmp:
        writer(tmp, arr, key, columns)
    return Path(path)
