"""Collider-physics layouts: LHC Olympics 2020 events and the ADC2021 challenge files."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from ..exceptions import DataError
from ..io._common import existing_file, h5py_module, suffix_of
from ..io._formats import choose_key, h5_dataset_names, open_h5_dataset, read_array

#: Objects of one ADC2021 event, in storage order.
ADC2021_OBJECTS = ("MET",) + tuple(f"e{i}" for i in range(1, 5)) + tuple(f"mu{i}" for i in range(1, 5)) + tuple(
    f"jet{i}" for i in range(1, 11)
)
#: Names of the 57 columns returned by :func:`load_adc2021`.
ADC2021_FEATURES = tuple(f"{obj}_{q}" for obj in ADC2021_OBJECTS for q in ("pT", "eta", "phi"))


def _enable_hdf5_plugins() -> None:
    """Register extra HDF5 compression filters (blosc, ...) when hdf5plugin is installed."""
    with contextlib.suppress(ImportError):
        import hdf5plugin  # noqa: F401


def _rows(max_events: int | None, n: int) -> int:
    if max_events is None:
        return n
    if isinstance(max_events, bool) or not isinstance(max_events, (int, np.integer)) or max_events < 0:
        raise DataError(f"max_events must be a non-negative integer or None, got {max_events!r}.")
    return min(int(max_events), n)


def _integer_labels(y: np.ndarray, path: Path) -> np.ndarray:
    y = np.asarray(y).ravel()
    if y.dtype.kind == "f" and not np.all(y == np.round(y)):
        raise DataError(f"{str(path)!r}: the labels (last column) are not whole numbers; is this an LHCO file?")
    return y.astype(np.int64)


def _take(events, index, path: Path) -> np.ndarray:
    """``events[index]`` as an ndarray, for an ndarray, a memmap or an h5py dataset."""
    try:
        return np.asarray(events[index])
    except (OSError, ValueError) as exc:
        raise DataError(
            f"cannot read the events in {str(path)!r} ({exc}). If the HDF5 data are compressed with "
            "blosc or another plugin filter, `pip install hdf5plugin` and try again."
        ) from exc


def load_lhco(
    path: str | os.PathLike,
    n_particles: int | None = None,
    *,
    key: str | None = None,
    max_events: int | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Load LHC Olympics 2020 events as particle lists ``(n, particles, 3)``.

    Layouts
    -------
    Each event is a zero-padded list of particles (the R&D set has 700), each
    particle ``(pT, eta, phi)``. Accepted files:

    * ``.h5``/``.hdf5``: a 2-D dataset ``(n, 3 * particles)`` whose columns are
      ``pT_0, eta_0, phi_0, pT_1, ...``, optionally followed by one label column
      (``3 * particles + 1`` columns, as in ``events_anomalydetection.h5``: 2101
      columns, label 1 = signal). The pandas layout ``df/block0_values`` is found
      automatically without pandas; otherwise pass ``key`` or keep one 2-D dataset.
      A 3-D dataset ``(n, particles, 3)`` with an optional ``y`` dataset also works.
    * ``.npz``: ``X`` of shape ``(n, particles, 3)`` or the 2-D layout above, optional ``y``.
    * ``.npy``: ``(n, particles, 3)`` or the 2-D layout above (memory-mapped, so only
      the requested particles and events are read).

    Parameters
    ----------
    path : str or path-like
    n_particles : int, optional
        Keep the first ``n_particles`` particles of each event; more than stored
        are zero-padded. Default: all stored.
    key : str, optional
        HDF5 dataset path or ``.npz`` array name of the events.
    max_events : int, optional
        Read only the first ``max_events`` events (the full R&D set is 18 GB as float64).

    Returns
    -------
    X : numpy.ndarray of float32, shape (n, particles, 3)
    y : numpy.ndarray of int64, shape (n,), or None when the file has no labels
    """
    path = existing_file(path)
    suffix = suffix_of(path, (".h5", ".hdf5", ".npz", ".npy"), "read an LHCO file from")
    if n_particles is not None and (isinstance(n_particles, bool) or int(n_particles) < 1):
        raise DataError(f"n_particles must be a positive integer or None, got {n_particles!r}.")
    if suffix == ".npy":
        return _particles(read_array(path), None, path, n_particles, max_events)
    if suffix == ".npz":
        events = read_array(path, key)
        with np.load(path, allow_pickle=False) as npz:
            labels = npz["y"] if "y" in npz.files and key != "y" else None
        return _particles(events, labels, path, n_particles, max_events)
    h5py = h5py_module("reading LHCO HDF5 files")
    _enable_hdf5_plugins()
    if key is None:
        try:
            with h5py.File(path, "r") as fh:
                names = [n for n in h5_dataset_names(fh) if fh[n].ndim in (2, 3)]
        except OSError as exc:
            raise DataError(f"{str(path)!r} is not a valid HDF5 file ({exc}).") from exc
        key = "df/block0_values" if "df/block0_values" in names else choose_key(names, None, path, "2-D/3-D dataset")
    fh, ds = open_h5_dataset(path, key)
    with fh:
        labels = fh["y"] if ds.ndim == 3 and isinstance(fh.get("y"), h5py.Dataset) else None
        return _particles(ds, labels, path, n_particles, max_events)


def _particles(events, labels, path: Path, n_particles, max_events):
    """Cut events from a (n, p, 3) or (n, 3p[+1]) ndarray, memmap or h5py dataset."""
    rows = _rows(max_events, events.shape[0])
    if events.ndim == 3 and events.shape[2] == 3:
        keep = events.shape[1] if n_particles is None else min(int(n_particles), events.shape[1])
        X = _take(events, (slice(0, rows), slice(0, keep)), path)
    elif events.ndim == 2 and events.shape[1] % 3 in (0, 1):
        stored = events.shape[1] // 3
        keep = stored if n_particles is None else min(int(n_particles), stored)
        X = _take(events, (slice(0, rows), slice(0, 3 * keep)), path).reshape(rows, keep, 3)
        if events.shape[1] % 3 == 1:
            labels = _take(events, (slice(0, rows), events.shape[1] - 1), path)
    else:
        raise DataError(
            f"{str(path)!r}: events have shape {events.shape}; expected (n, particles, 3) or "
            "(n, 3 * particles) with an optional last label column."
        )
    if n_particles is not None and int(n_particles) > keep:
        X = np.concatenate([X, np.zeros((rows, int(n_particles) - keep, 3), X.dtype)], axis=1)
    y = None
    if labels is not None:
        y = _integer_labels(_take(labels, slice(0, rows), path), path)
        if len(y) != rows:
            raise DataError(f"{str(path)!r}: {rows} events but {len(y)} labels; they must match.")
    return X.astype(np.float32), y


def load_adc2021(
    path: str | os.PathLike, key: str = "Particles", *, max_events: int | None = None
) -> np.ndarray:
    """Load an ADC2021 (Anomaly Detection Challenge 2021) file as 57 features per event.

    Layout
    ------
    The HDF5 dataset ``Particles`` has shape ``(n, 19, 4)``: per event 19 objects,
    in order MET, 4 electrons, 4 muons and 10 jets (zero rows where an object is
    absent), each ``(pT, eta, phi, type)`` with type 0 none, 1 MET, 2 electron,
    3 muon, 4 jet. The type is implied by the position and is dropped; the rest is
    flattened object by object to ``MET_pT, MET_eta, MET_phi, e1_pT, ...``
    (:data:`ADC2021_FEATURES`).

    Parameters
    ----------
    path : str or path-like
        An ``.h5``/``.hdf5`` file such as ``background_for_training.h5``.
    key : str, default "Particles"
        Dataset holding the objects.
    max_events : int, optional
        Read only the first ``max_events`` events.

    Returns
    -------
    numpy.ndarray of float32, shape (n, 57)
    """
    suffix_of(path, (".h5", ".hdf5"), "read an ADC2021 file from")
    h5py_module("reading ADC2021 HDF5 files")
    _enable_hdf5_plugins()
    fh, ds = open_h5_dataset(path, key)
    with fh:
        if ds.ndim != 3 or ds.shape[1] != len(ADC2021_OBJECTS) or ds.shape[2] not in (3, 4):
            raise DataError(
                f"dataset {key!r} of {str(path)!r} has shape {ds.shape}; the ADC2021 layout is (n, 19, 4): "
                "MET, 4 electrons, 4 muons, 10 jets, each (pT, eta, phi, type)."
            )
        events = _take(ds, slice(0, _rows(max_events, ds.shape[0])), Path(path))
    return np.ascontiguousarray(events[:, :, :3].reshape(len(events), -1), dtype=np.float32)
