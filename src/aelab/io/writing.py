"""Writing results a chunk at a time: :func:`write_rows` and its :class:`RowWriter`.

The rows go to a temporary sibling of the target, which replaces the target only when
every announced row was written; on an error the target is left as it was.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..exceptions import DataError
from ._common import commit, discard, suffix_of, temp_path_for
from ._formats import check_numeric_dtype, column_names, parquet_modules, write_delimited_rows

__all__ = ["write_rows", "RowWriter", "ROW_STREAM_EXTENSIONS"]

#: Formats that :func:`write_rows` can write a chunk at a time.
ROW_STREAM_EXTENSIONS = (".npy", ".csv", ".tsv", ".parquet")

class RowWriter:
    """Writes rows chunk by chunk to a temporary file; :meth:`close` renames it onto ``path``.

    Use it through :func:`write_rows`. If the ``with`` block raises, or fewer
    rows than announced were written, the temporary file is deleted and an
    existing file at ``path`` is left as it was.

    Attributes
    ----------
    path : pathlib.Path
    n_rows : int or None
        Rows announced (required for ``.npy``).
    rows_written : int
    """

    def __init__(self, path, n_rows, trailing_shape, dtype, columns):
        self.path = Path(path)
        self._suffix = suffix_of(self.path, ROW_STREAM_EXTENSIONS, "stream rows to")
        self.n_rows = None if n_rows is None else int(n_rows)
        if self.n_rows is not None and self.n_rows < 0:
            raise DataError(f"n_rows must be >= 0, got {n_rows}.")
        self.trailing_shape = tuple(int(s) for s in trailing_shape)
        self.dtype = np.dtype(dtype)
        check_numeric_dtype(self.dtype, f"the dtype for {str(self.path)!r}")
        self.rows_written = 0
        self._closed = False
        if self._suffix == ".npy" and self.n_rows is None:
            raise DataError("writing a .npy file row by row needs n_rows (the final number of rows) up front.")
        if self._suffix != ".npy" and len(self.trailing_shape) > 1:
            raise DataError(
                f"{self._suffix} files hold 1-D or 2-D arrays, but rows of shape {self.trailing_shape} were "
                "announced. Use .npy for rows with more dimensions."
            )
        width = self.trailing_shape[0] if self.trailing_shape else 1
        self._names = column_names(width, columns) if (columns is not None or self._suffix == ".parquet") else None
        self._tmp = temp_path_for(self.path)
        try:
            self._open()
        except BaseException:
            discard(self._tmp)
            raise

    def _open(self):
        if self._suffix == ".npy":
            header = np.lib.format.open_memmap(
                self._tmp, mode="w+", dtype=self.dtype, shape=(self.n_rows, *self.trailing_shape)
            )
            offset = header.offset
            del header  # only the header and the file size come from numpy; data go through plain writes
            self._fh = open(self._tmp, "r+b")
            self._fh.seek(offset)
        elif self._suffix == ".parquet":
            pa, pq = parquet_modules("writing .parquet files")
            schema = pa.schema([(n, pa.from_numpy_dtype(self.dtype)) for n in self._names])
            self._fh = pq.ParquetWriter(self._tmp, schema)
        else:
            self._fh = open(self._tmp, "w", encoding="utf-8", newline="")
            if self._names is not None:
                self._fh.write(self._delimiter.join(self._names) + "\n")

    @property
    def _delimiter(self) -> str:
        return "\t" if self._suffix == ".tsv" else ","

    def write(self, chunk) -> None:
        """Append ``chunk`` (shape ``(k, *trailing_shape)``), converted to the writer's dtype."""
        if self._closed:
            raise DataError(f"the writer for {str(self.path)!r} is closed.")
        arr = np.asarray(chunk)
        if arr.shape[1:] != self.trailing_shape or arr.ndim == 0:
            raise DataError(
                f"chunk for {str(self.path)!r} has shape {arr.shape}, but rows of shape {self.trailing_shape} "
                f"were announced, i.e. chunks of shape (k, {', '.join(map(str, self.trailing_shape))})."
            )
        if self.n_rows is not None and self.rows_written + len(arr) > self.n_rows:
            raise DataError(
                f"too many rows for {str(self.path)!r}: {self.rows_written} written + {len(arr)} in this chunk "
                f"> n_rows={self.n_rows}."
            )
        arr = np.ascontiguousarray(arr, dtype=self.dtype)
        if self._suffix == ".npy":
            self._fh.write(arr.tobytes())
        elif self._suffix == ".parquet":
            pa, _ = parquet_modules("writing .parquet files")
            cols = arr.reshape(len(arr), -1)
            self._fh.write_table(pa.table({n: cols[:, i] for i, n in enumerate(self._names)}))
        else:
            write_delimited_rows(self._fh, arr, self._delimiter)
        self.rows_written += len(arr)

    def close(self) -> Path:
        """Finish the file and move it into place; returns the final path."""
        if self._closed:
            return self.path
        if self.n_rows is not None and self.rows_written != self.n_rows:
            self.abort()
            raise DataError(
                f"only {self.rows_written} of the {self.n_rows} announced rows were written to "
                f"{str(self.path)!r}; nothing was saved."
            )
        self._fh.close()
        self._closed = True
        try:
            commit(self._tmp, self.path)
        except BaseException:
            discard(self._tmp)
            raise
        return self.path

    def abort(self) -> None:
        """Drop everything written so far; ``path`` is left untouched."""
        if not self._closed:
            self._closed = True
            try:
                self._fh.close()
            finally:
                discard(self._tmp)

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_rows(
    path: str | os.PathLike,
    n_rows: int | None = None,
    trailing_shape: Sequence[int] = (),
    dtype="float32",
    *,
    columns: Sequence[str] | None = None,
) -> RowWriter:
    """Open a streaming writer: rows go to a temporary file that replaces ``path`` on success.

    Parameters
    ----------
    path : str or path-like
        Ends in ``.npy``, ``.csv``, ``.tsv`` or ``.parquet``.
    n_rows : int, optional
        Total rows to come; required for ``.npy`` and checked on close for all formats.
    trailing_shape : tuple of int, default ()
        Shape of one row: ``()`` for one value per row (scores), ``(d,)`` for
        vectors; ``.npy`` takes any shape.
    dtype : dtype, default float32
    columns : sequence of str, optional
        CSV/TSV header (none by default) or Parquet column names (default x0, x1, ...).

    Returns
    -------
    RowWriter
        Use as a context manager and call ``write(chunk)`` for each chunk.

    Examples
    --------
    >>> with write_rows("scores.npy", len(src)) as w:    # doctest: +SKIP
    ...     for chunk in src.iter_chunks():
    ...         w.write(model_scores(chunk))
    """
    return RowWriter(path, n_rows, trailing_shape, dtype, columns)
