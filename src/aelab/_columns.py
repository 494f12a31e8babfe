"""Column names: recorded at fit (``feature_names_in_``) and checked wherever a model reads data.

scikit-learn's convention: names are recorded only when every column name is a string
(a pandas or polars DataFrame, a pyarrow Table, a Parquet file, a CSV/TSV file with a
header); data with other names, or in another order, is refused with a
:class:`~aelab.exceptions.DataError` that names the difference; unnamed data on a model
fitted with names (and named data on a model fitted without) gives a warning.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from .exceptions import DataError

__all__ = ["FeatureNamesWarning", "NamedArray", "feature_names", "check_feature_names", "file_column_names"]


class FeatureNamesWarning(UserWarning):
    """Data with column names met a model without them, or the reverse (the columns are not checked)."""


class NamedArray(np.ndarray):
    """A NumPy array that carries the column names of the file it was read from (a CSV header, a
    Parquet schema), so that ``fit`` records them and scoring checks them. Any NumPy operation
    takes it as the plain array it is."""

    columns: tuple[str, ...] | None

    def __new__(cls, array, columns):
        obj = np.asarray(array).view(cls)
        obj.columns = tuple(str(c) for c in columns)
        return obj

    def __reduce__(self):  # pickled (to the ranks of aelab.distributed.fit) with its names
        ctor, args, state = super().__reduce__()
        return ctor, args, (state, self.columns)

    def __setstate__(self, state) -> None:
        base, self.columns = state
        super().__setstate__(base)

    def __array_finalize__(self, obj) -> None:
        cols = getattr(obj, "columns", None)
        # a view with other columns (X[:, :2]) has no names of its own
        self.columns = cols if cols is not None and self.ndim == 2 and self.shape[1] == len(cols) else None


def feature_names(X) -> tuple[str, ...] | None:
    """The column names of X when it has them and all are strings; else None."""
    if isinstance(X, np.ndarray) and not isinstance(X, NamedArray):
        return None
    cols = getattr(X, "column_names", None)  # pyarrow Table / RecordBatch (whose .columns are the data)
    if cols is None:
        cols = getattr(X, "columns", None)  # pandas, polars, NamedArray, a chunked source
    if cols is None or callable(cols):
        return None
    try:
        names = list(cols)
    except TypeError:
        return None
    if not names or not all(isinstance(c, str) for c in names):
        return None
    return tuple(names)


def _listed(names, limit: int = 8) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def check_feature_names(X, fitted_names: tuple[str, ...] | None, owner: str, name: str = "X") -> None:
    """Refuse X whose column names differ from ``fitted_names`` (or come in another order); warn when
    only one of the two has names. Nothing happens when neither has."""
    names = feature_names(X)
    if names is None and fitted_names is None:
        return
    if fitted_names is None:
        warnings.warn(f"{name} has feature names, but {owner} was fitted without feature names; its columns "
                      "are taken by position.", FeatureNamesWarning, stacklevel=4)
        return
    if names is None:
        warnings.warn(f"{name} does not have valid feature names, but {owner} was fitted with feature names "
                      f"({_listed(list(fitted_names), 4)}); its columns are taken by position.",
                      FeatureNamesWarning, stacklevel=4)
        return
    fitted = tuple(fitted_names)
    if names == fitted:
        return
    # scikit-learn's message (its own estimator checks match it), then what to do
    message = "The feature names should match those that were passed during fit.\n"
    unseen, missing = sorted(set(names) - set(fitted)), sorted(set(fitted) - set(names))
    if unseen:
        message += "Feature names unseen at fit time:\n" + _bullets(unseen)
    if missing:
        message += "Feature names seen at fit time, yet now missing:\n" + _bullets(missing)
    if not unseen and not missing:
        message += "Feature names must be in the same order as they were in fit.\n"
        i = next((i for i, (a, b) in enumerate(zip(names, fitted)) if a != b), min(len(names), len(fitted)))
        if i < min(len(names), len(fitted)):
            message += f"Column {i} of {name} is {names[i]!r}, but {owner} was fitted with {fitted[i]!r} there.\n"
    raise DataError(message + f"Pass the columns {owner} was fitted with, in the same order "
                              "(model.feature_names_in_; for a DataFrame: X[list(model.feature_names_in_)]).")


def _bullets(names, limit: int = 5) -> str:
    out = "".join(f"- {n}\n" for n in names[:limit])
    return out + ("- ...\n" if len(names) > limit else "")


def file_column_names(path: str | os.PathLike) -> tuple[str, ...] | None:
    """The column names a data file states: the header of a CSV/TSV file, the schema of a Parquet
    file; None for other formats and for a CSV/TSV file without a header."""
    p = Path(path)
    suffix = p.suffix.lower()
    if not p.is_file():
        return None
    if suffix in (".csv", ".tsv"):
        from .io._formats import _first_row, _is_number

        first = _first_row(p, "\t" if suffix == ".tsv" else ",")
        if first is None or any(_is_number(f) for f in first[1]):
            return None
        return tuple(f.strip() for f in first[1])
    if suffix == ".parquet":
        from .io._formats import open_parquet

        return tuple(str(n) for n in open_parquet(p).schema_arrow.names)
    return None
