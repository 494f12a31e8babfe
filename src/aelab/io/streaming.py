"""Data larger than memory: chunked, lazily read sources (the row writer is :mod:`aelab.io.writing`).

:func:`open_array` returns an :class:`ArraySource`; estimators fit on it with
shuffled batches and score it chunk by chunk, and :func:`write_rows` writes the
results chunk by chunk to a file that appears, complete, only at the end.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..exceptions import DataError
from ._common import READ_EXTENSIONS, DataFileNotFoundError, reading, suffix_of
from ._formats import (
    npy_header,
    open_h5_dataset,
    open_parquet,
    parquet_modules,
    read_array,
    read_h5_rows,
    table_to_array,
)
from .writing import ROW_STREAM_EXTENSIONS, RowWriter, write_rows  # noqa: F401 (re-exported)

__all__ = ["ArraySource", "open_array", "write_rows", "RowWriter", "CHUNK_BYTES"]

#: Target size of one chunk in bytes when ``chunk_rows`` is not given (about 8 MB: small enough to keep streaming memory low, large enough for full-speed batches).
CHUNK_BYTES = 8 * 2**20


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise DataError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


class ArraySource:
    """A numeric array read lazily, in chunks of rows, from a file.

    Made by :func:`open_array`; the estimators' ``fit``, ``decision_function`` and
    :func:`aelab.latent.score_to_file` accept it in place of an array.

    Attributes
    ----------
    path : str
        The file read (``"<memory>"`` for :meth:`from_array`).
    key : str or None
        Dataset path in an HDF5 file or array name in an ``.npz``; else None.
    shape : tuple of int
        Full shape; ``shape[0]`` is the number of rows.
    dtype : numpy.dtype
        Dtype of the arrays returned by :meth:`read`.
    chunk_rows : int
        Rows per chunk in :meth:`iter_chunks`; by default about
        :data:`CHUNK_BYTES` (8 MB) of data.
    columns : tuple of str or None
        Column names the file states (a Parquet schema, a CSV/TSV header); ``fit``
        records them and scoring checks them.
    """

    columns: tuple[str, ...] | None = None

    def __init__(self, path, key, shape, dtype, chunk_rows=None):
        self.path = str(path)
        self.key = key
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        if chunk_rows is None:
            row_bytes = max(1, math.prod(self.shape[1:]) * self.dtype.itemsize)
            chunk_rows = max(1, CHUNK_BYTES // row_bytes)
        self.chunk_rows = _positive_int(chunk_rows, "chunk_rows")

    @classmethod
    def from_array(cls, array, chunk_rows: int | None = None) -> ArraySource:
        """Wrap an in-memory array, so that code written for sources also takes arrays."""
        return _MemorySource(array, "<memory>", None, chunk_rows)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def origin(self) -> int:
        """The row of the whole data set where this source starts (0; a shard's first row for :meth:`rows`)."""
        return 0

    def __repr__(self) -> str:
        key = f", key={self.key!r}" if self.key is not None else ""
        return (
            f"ArraySource({self.path!r}{key}, shape={self.shape}, dtype={self.dtype}, "
            f"chunk_rows={self.chunk_rows})"
        )

    def __enter__(self) -> ArraySource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release open file handles (reading again reopens them)."""

    def read(self, start: int, stop: int) -> np.ndarray:
        """Return rows ``[start, stop)`` as an in-memory array (bounds are clipped like a slice)."""
        start, stop, _ = slice(start, stop).indices(len(self))
        if stop <= start:
            return np.empty((0, *self.shape[1:]), dtype=self.dtype)
        with reading(self.path):
            out = np.asarray(self._read(start, stop), dtype=self.dtype)
        return out if out.flags.owndata else out.copy()  # never a view of a cache or of the caller's array

    def _read(self, start: int, stop: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def rows(self, start: int, stop: int) -> ArraySource:
        """A source over rows ``[start, stop)`` only (read lazily, like this one): one process's shard."""
        start, stop, _ = slice(start, stop).indices(len(self))
        return _RangeSource(self, start, max(start, stop))

    def iter_chunks(self, chunk_rows: int | None = None) -> Iterator[np.ndarray]:
        """Yield consecutive chunks of ``chunk_rows`` rows (the last may be shorter), in order."""
        step = self.chunk_rows if chunk_rows is None else _positive_int(chunk_rows, "chunk_rows")
        for start in range(0, len(self), step):
            yield self.read(start, start + step)

    def iter_shuffled_batches(
        self, batch_size: int, rng: np.random.Generator, buffer_chunks: int = 4, rows: np.ndarray | None = None
    ) -> Iterator[np.ndarray]:
        """Yield every row exactly once, in shuffled batches of ``batch_size`` rows.

        Chunks are visited in random order; ``buffer_chunks`` of them at a time are
        concatenated and permuted, then cut into batches. Rows that do not fill a
        last batch are carried into the next buffer, so every batch but the very
        last has ``batch_size`` rows. Memory: about ``2 * buffer_chunks`` chunks.

        Parameters
        ----------
        batch_size : int
        rng : numpy.random.Generator
            Source of randomness (an int seed is accepted too).
        buffer_chunks : int, default 4
            Chunks mixed together; more gives a better shuffle and uses more memory.
        rows : boolean array of length ``len(self)``, optional
            Only the rows marked True are yielded (for example all but a validation share).
        """
        batch_size = _positive_int(batch_size, "batch_size")
        buffer_chunks = _positive_int(buffer_chunks, "buffer_chunks")
        rng = np.random.default_rng(rng)
        starts = np.arange(0, len(self), self.chunk_rows)[rng.permutation(math.ceil(len(self) / self.chunk_rows))]
        carry = np.empty((0, *self.shape[1:]), dtype=self.dtype)
        for g in range(0, len(starts), buffer_chunks):
            parts = [carry] + [self._masked(s, s + self.chunk_rows, rows) for s in starts[g : g + buffer_chunks]]
            buffer = np.concatenate(parts)
            buffer = buffer[rng.permutation(len(buffer))]
            n_full = len(buffer) - len(buffer) % batch_size
            for i in range(0, n_full, batch_size):
                yield buffer[i : i + batch_size]
            carry = buffer[n_full:]
        if len(carry):
            yield carry


    def _masked(self, start: int, stop: int, rows: np.ndarray | None) -> np.ndarray:
        if rows is not None and len(rows) != len(self):
            raise DataError(f"rows has {len(rows)} entries but the source has {len(self)} rows; pass one "
                            "boolean per row.")
        block = self.read(start, stop)
        return block if rows is None else block[rows[start : start + len(block)]]

    def iter_masked_chunks(self, rows: np.ndarray) -> Iterator[np.ndarray]:
        """Consecutive chunks holding only the rows marked True in ``rows``, in order."""
        if len(rows) != len(self):
            raise DataError(f"rows has {len(rows)} entries but the source has {len(self)} rows; pass one "
                            "boolean per row.")
        for start in range(0, len(self), self.chunk_rows):
            if rows[start : start + self.chunk_rows].any():
                yield self._masked(start, start + self.chunk_rows, rows)


class _MemorySource(ArraySource):
    def __init__(self, array, path, key, chunk_rows):
        arr = np.asarray(array)
        if arr.ndim == 0:
            raise DataError(f"a source needs at least one dimension (rows), got a scalar from {path!r}.")
        self._array = arr
        super().__init__(path, key, arr.shape, arr.dtype, chunk_rows)

    def _read(self, start, stop):
        return self._array[start:stop]


class _RangeSource(ArraySource):
    def __init__(self, parent: ArraySource, start: int, stop: int):
        super().__init__(parent.path, parent.key, (stop - start, *parent.shape[1:]), parent.dtype, parent.chunk_rows)
        self._parent, self._start = parent, start
        self.columns = parent.columns

    @property
    def origin(self) -> int:
        return self._parent.origin + self._start

    def _read(self, start, stop):
        return self._parent.read(self._start + start, self._start + stop)

    def close(self):
        self._parent.close()


class _NpySource(ArraySource):
    """Maps only the requested rows for each read, so resident memory stays at one chunk."""

    def __init__(self, path, chunk_rows):
        shape, self._fortran, dtype, self._offset = npy_header(path)
        if not shape:
            raise DataError(f"{str(path)!r} holds a scalar; a source needs rows.")
        super().__init__(path, None, shape, dtype, chunk_rows)

    def _read(self, start, stop):
        if self._fortran and len(self.shape) > 1:  # rows are not contiguous: slice a whole-file map
            return np.load(self.path, mmap_mode="r")[start:stop]
        row_items = math.prod(self.shape[1:])
        window = np.memmap(
            self.path, dtype=self.dtype, mode="r", shape=(stop - start, *self.shape[1:]),
            offset=self._offset + start * row_items * self.dtype.itemsize,
        )
        out = np.array(window)
        del window
        return out


class _H5Source(ArraySource):
    def __init__(self, path, key, chunk_rows):
        self._file, ds = open_h5_dataset(path, key)
        if ds.ndim == 0:
            self._file.close()
            raise DataError(f"dataset {ds.name!r} in {str(path)!r} is a scalar; a source needs rows.")
        super().__init__(path, ds.name.lstrip("/"), ds.shape, ds.dtype, chunk_rows)

    def _dataset(self):
        if self._file is None or not self._file.id.valid:
            self._file, _ = open_h5_dataset(self.path, self.key)
        return self._file[self.key]

    def _read(self, start, stop):
        return read_h5_rows(self._dataset(), start, stop)

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None


class _ParquetSource(ArraySource):
    """Rows come from row groups; sequential iteration streams record batches."""

    def __init__(self, path, chunk_rows):
        pf = open_parquet(path)
        meta = pf.metadata
        dtypes = [np.dtype(f.type.to_pandas_dtype()) for f in pf.schema_arrow]
        dtype = np.result_type(*dtypes)
        if dtype.kind in "biu" and any(
            meta.row_group(g).column(c).statistics is None or meta.row_group(g).column(c).statistics.null_count
            for g in range(meta.num_row_groups)
            for c in range(meta.num_columns)
        ):
            dtype = np.dtype(np.float64)  # nulls (or unknown null counts) need NaN
        self._pf = pf
        self.columns = tuple(str(n) for n in pf.schema_arrow.names)
        self._group_starts = np.cumsum([0] + [meta.row_group(g).num_rows for g in range(meta.num_row_groups)])
        self._cache: tuple[int, np.ndarray] | None = None
        super().__init__(path, None, (meta.num_rows, meta.num_columns), dtype, chunk_rows)

    def _group(self, g: int) -> np.ndarray:
        if self._cache is None or self._cache[0] != g:
            pa, _ = parquet_modules("reading .parquet files")
            try:
                self._cache = (g, table_to_array(self._pf.read_row_group(g)).astype(self.dtype, copy=False))
            except (pa.ArrowException, OSError) as exc:
                raise DataError(f"row group {g} of {self.path!r} is corrupt or truncated ({exc}).") from exc
        return self._cache[1]

    def _read(self, start, stop):
        first = int(np.searchsorted(self._group_starts, start, side="right")) - 1
        last = int(np.searchsorted(self._group_starts, stop, side="left")) - 1
        parts = [
            self._group(g)[max(start - self._group_starts[g], 0) : stop - self._group_starts[g]]
            for g in range(first, last + 1)
        ]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def iter_chunks(self, chunk_rows=None):
        step = self.chunk_rows if chunk_rows is None else _positive_int(chunk_rows, "chunk_rows")
        pending, n_pending = [], 0
        batches = self._pf.iter_batches(batch_size=step)
        while True:
            with reading(self.path):  # a damaged page surfaces here, as the batch is decoded
                batch = next(batches, None)
                if batch is None:
                    break
                pending.append(table_to_array(batch).astype(self.dtype, copy=False))
            n_pending += len(pending[-1])
            while n_pending >= step:
                merged = np.concatenate(pending)
                yield merged[:step]
                pending, n_pending = [merged[step:]], n_pending - step
        if n_pending:
            yield np.concatenate(pending)

    def close(self):
        self._cache = None


def open_array(path: str | os.PathLike, key: str | None = None, chunk_rows: int | None = None) -> ArraySource:
    """Open a data file as a chunked, lazily read :class:`ArraySource`.

    ``.npy`` (memory-mapped per read), ``.h5``/``.hdf5`` (``key`` = dataset path)
    and ``.parquet`` (row groups) are read lazily, a chunk at a time, so they may
    be larger than memory. Every other format :func:`~aelab.io.read_array`
    understands (``.npz``, ``.csv``, ``.tsv``, image folders) is read into memory
    whole and then served in chunks the same way.

    Parameters
    ----------
    path : str or path-like
    key : str, optional
        Dataset (HDF5) or array (``.npz``) to read; default the only one or ``'X'``.
    chunk_rows : int, optional
        Rows per chunk; default about 8 MB of data per chunk.

    Returns
    -------
    ArraySource

    Examples
    --------
    >>> src = open_array("big.npy")                      # doctest: +SKIP
    >>> for chunk in src.iter_chunks(): ...              # doctest: +SKIP
    """
    p = Path(path)
    if p.is_dir():
        return _MemorySource(read_array(p), p, None, chunk_rows)
    suffix = suffix_of(p, READ_EXTENSIONS, "read")
    if not p.exists():
        raise DataFileNotFoundError(f"no such file: {str(p)!r}. Check the path (relative to {os.getcwd()!r}).")
    with reading(p):
        if suffix == ".npy":
            return _NpySource(p, chunk_rows)
        if suffix in (".h5", ".hdf5"):
            return _H5Source(p, key, chunk_rows)
        if suffix == ".parquet":
            return _ParquetSource(p, chunk_rows)
        source = _MemorySource(read_array(p, key), p, key, chunk_rows)
    if suffix in (".csv", ".tsv"):
        from .._columns import file_column_names

        source.columns = file_column_names(p)
    return source
