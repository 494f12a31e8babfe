"""Input checks shared by every estimator (check_array in the scikit-learn sense).

Messages say what was received, what was expected and how to fix it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .exceptions import DataError, NonNumericError, NotFittedError


def _to_numpy(X: Any) -> np.ndarray:
    try:
        import torch

        if isinstance(X, torch.Tensor):
            return X.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    if hasattr(X, "to_numpy") and not isinstance(X, np.ndarray):  # pandas, polars
        try:
            return X.to_numpy()
        except Exception as exc:  # noqa: BLE001
            raise DataError(f"could not convert {type(X).__name__} to an array: {exc}") from exc
    return np.asarray(X)


def check_array(
    X: Any,
    *,
    name: str = "X",
    allow_images: bool = True,
    min_samples: int = 1,
    dtype=np.float32,
    row_offset: int | None = None,
) -> np.ndarray:
    """Return ``X`` as a finite float array of shape (n, d), (n, h, w) or (n, c, h, w).

    ``dtype=None`` keeps float64 (and integers wider than 16 bits, as float64) so that the
    scaler can subtract large offsets exactly; everything else becomes float32.

    ``row_offset``: X is a chunk of a larger data set starting at that row; a bad value is
    then reported by its row in the whole data set.

    Raises :class:`~aelab.exceptions.DataError` for non-numeric data, NaN or inf,
    a wrong number of dimensions, or fewer than ``min_samples`` rows.
    """
    try:
        arr = _to_numpy(X)
    except DataError:
        raise
    if arr.dtype == object:  # numbers held as Python objects are fine; anything else is not
        try:
            arr = np.asarray(arr, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            bad = _first_non_numeric(arr)
            raise NonNumericError(
                f"{name} must be numeric, but it has dtype object ({exc}"
                + (f"; first non-numeric value: {bad!r}" if bad is not None else "")
                + "). Convert it to numbers first, e.g. with np.asarray(X, dtype=float), or drop the text columns."
            ) from None
    if arr.dtype.kind in "USV":
        bad = _first_non_numeric(arr)
        raise NonNumericError(
            f"{name} must be numeric, but it has dtype {arr.dtype}"
            + (f" (first non-numeric value: {bad!r})" if bad is not None else "")
            + ". Convert it to numbers first, e.g. with np.asarray(X, dtype=float), "
            "or drop the text columns."
        )
    if arr.dtype.kind == "c":
        raise DataError(f"Complex data not supported: {name} is complex ({arr.dtype}); aelab needs real numbers. "
                        "Pass X.real, np.abs(X), or both as separate features.")
    max_ndim = 4 if allow_images else 2
    if arr.ndim < 2 or arr.ndim > max_ndim:
        expected = "(n_samples, n_features)" + (
            ", images (n, height, width) or (n, channels, height, width)" if allow_images else ""
        )
        hint = (" Reshape your data: X.reshape(-1, 1) for a single feature or X.reshape(1, -1) for a single sample."
                if arr.ndim == 1 else "")
        raise DataError(f"{name} has {arr.ndim} dimension(s) with shape {arr.shape}; expected {expected}.{hint}")
    if arr.shape[0] < min_samples:
        raise DataError(
            f"{name} has {arr.shape[0]} sample(s) (shape {arr.shape}); at least {min_samples} required."
        )
    if 0 in arr.shape[1:]:
        raise DataError(f"{name} has an empty feature dimension: 0 feature(s) (shape={arr.shape}) while a minimum "
                        "of 1 is required. Every sample needs at least one feature; check the column selection "
                        "that produced it.")
    # contiguous (torch cannot take negative strides such as Z[::-1]) and writable (a read-only
    # memmap from read_array)
    if dtype is None:
        wide = arr.dtype == np.float64 or (arr.dtype.kind in "iu" and arr.dtype.itemsize > 2)
        dtype = np.float64 if wide else np.float32
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if not arr.flags.writeable:
        arr = arr.copy()
    if not np.isfinite(arr).all():
        bad = ~np.isfinite(arr)
        n_bad = int(bad.sum())
        first = np.argwhere(bad)[0]
        fix = "Remove or impute them before fitting, e.g. X = np.nan_to_num(X) or drop those rows."
        if row_offset is not None:  # a chunk: rows counted in the whole data set
            row = int(row_offset) + int(first[0])
            raise DataError(
                f"{name} contains {n_bad} NaN or infinite value(s) in rows {row_offset} to "
                f"{int(row_offset) + arr.shape[0] - 1} (first at row {row} of {name}, index "
                f"{(row, *(int(i) for i in first[1:]))}). {fix}")
        raise DataError(
            f"{name} contains {n_bad} NaN or infinite value(s) (first at index {tuple(int(i) for i in first)}). {fix}"
        )
    return arr


def iter_checked_chunks(source, name: str = "X", chunk_rows: int | None = None):
    """The chunks of a source (:func:`aelab.io.open_array`, or one rank's shard of it), each checked by
    :func:`check_array` (``dtype=None``); a bad value is reported by its row in the whole data set."""
    start = int(getattr(source, "origin", 0))
    for chunk in source.iter_chunks(chunk_rows):
        yield check_array(chunk, name=name, dtype=None, row_offset=start)
        start += len(chunk)


def _first_non_numeric(arr: np.ndarray):
    for v in arr.ravel()[:10000]:
        try:
            float(v)
        except (TypeError, ValueError):
            return v
    return None


def input_dtype(X: Any) -> np.dtype:
    """The dtype ``X`` arrives with, before :func:`check_array` casts it (the layout rule reads it)."""
    dtype = getattr(X, "dtype", None)
    try:
        return np.dtype(dtype) if dtype is not None else np.asarray(X).dtype
    except TypeError:  # a torch dtype or a pandas frame's per-column dtypes
        return _to_numpy(X).dtype


def is_source(X) -> bool:
    """True for a chunked data source (``aelab.io.open_array``) rather than an in-memory array."""
    return hasattr(X, "iter_chunks") and hasattr(X, "shape") and not isinstance(X, np.ndarray)


def check_is_fitted(est, attribute: str = "model_") -> None:
    if not hasattr(est, attribute):
        name = type(est).__name__
        raise NotFittedError(
            f"This {name} instance is not fitted yet. Call 'fit' with training data before using this method."
        )


def check_sample_shape(X: np.ndarray, expected: tuple, est_name: str, name: str = "X") -> None:
    """Compare the per-sample shape of X with the one seen in fit."""
    got = tuple(X.shape[1:])
    if got == tuple(expected):
        return
    if len(expected) == 1 and len(got) == 1:
        raise DataError(
            f"{name} has {got[0]} features, but {est_name} is expecting {expected[0]} features as input "
            f"(it was fitted with {expected[0]}). "
            "Pass data with the same columns, in the same order, as at fit time."
        )
    raise DataError(
        f"{name} has per-sample shape {got}, but {est_name} was fitted on shape {tuple(expected)}. "
        "Pass data of the same shape as at fit time (resize images or select the same columns)."
    )
