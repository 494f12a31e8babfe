"""Synthetic collider events in exactly the ADC2021 layout, for tests, examples and benchmarks.

:func:`make_adc2021` draws events as the ADC2021 challenge stores them (HDF5 dataset
``Particles``, shape ``(n, 19, 4)``: MET, 4 electrons/photons, 4 muons, 10 jets, each
``(pT, eta, phi, type)``, absent objects zero, each kind sorted by falling pT), so that
:func:`~aelab.datasets.load_adc2021` reads the file it writes. The physics is a cartoon
of the L1 trigger's inputs, not a simulation: background is QCD-like (a few soft jets,
sometimes a W or Z lepton, soft MET), and each signal type adds what its name says.
No download, no randomness outside ``random_state``.
"""

from __future__ import annotations

import os

import numpy as np

from ..exceptions import ConfigError
from ..io._common import h5py_module

#: Signal types of :func:`make_adc2021` and their labels (background is 0).
ADC2021_SIGNALS = {"leptons": 1, "met": 2, "jets": 3}
# per kind: first slot, slots, type code, pT threshold (GeV), |eta| acceptance
_SLOTS = {"e": (1, 4, 2, 23.0, 2.5), "mu": (5, 4, 3, 21.0, 2.1), "jet": (9, 10, 4, 15.0, 4.0)}


def _objects(ev: np.ndarray, rng, kind: str, count: np.ndarray, pt_scale: float, pt_shift: float = 0.0) -> None:
    """Add ``count`` objects of ``kind`` per event (pT = threshold + shift + exponential) to those already
    there; each kind keeps its hardest ``slots`` objects, sorted by falling pT."""
    first, slots, code, pt_min, eta_max = _SLOTS[kind]
    n = len(ev)
    pt = pt_min + pt_shift + rng.exponential(pt_scale, (n, slots))
    pt = np.where(np.arange(slots) < np.minimum(count, slots)[:, None], pt, 0.0)
    eta = np.clip(rng.normal(0.0, eta_max / 2, (n, slots)), -eta_max, eta_max)
    phi = rng.uniform(-np.pi, np.pi, (n, slots))
    new = np.stack([pt, eta, phi, np.full((n, slots), float(code))], axis=2) * (pt > 0)[:, :, None]
    both = np.concatenate([ev[:, first : first + slots], new], axis=1)
    order = np.argsort(-both[:, :, 0], axis=1, kind="stable")[:, :slots]
    ev[:, first : first + slots] = np.take_along_axis(both, order[:, :, None], 1)


def _events(n: int, rng, signal: str | None) -> np.ndarray:
    ev = np.zeros((n, 19, 4), np.float64)
    # background: jets, W/Z leptons, soft MET
    _objects(ev, rng, "jet", rng.poisson(2.5, n), 20.0)
    lep = rng.choice([0, 1, 2], size=n, p=[0.7, 0.25, 0.05])
    is_e = rng.random(n) < 0.5
    _objects(ev, rng, "e", np.where(is_e, lep, 0), 15.0)
    _objects(ev, rng, "mu", np.where(is_e, 0, lep), 15.0)
    met = rng.exponential(12.0, n) + 10.0 * (lep == 1)
    if signal == "leptons":    # a heavy boson to four leptons of one flavour, 3 or 4 of them reconstructed
        k = rng.integers(3, 5, n)
        is_e = rng.random(n) < 0.5
        _objects(ev, rng, "e", np.where(is_e, k, 0), 40.0, 10.0)
        _objects(ev, rng, "mu", np.where(is_e, 0, k), 40.0, 10.0)
    elif signal == "met":      # a charged Higgs to tau nu: large MET and a hard jet
        met = met + 100.0 + rng.exponential(80.0, n)
        _objects(ev, rng, "jet", np.ones(n, int), 50.0, 25.0)
    elif signal == "jets":     # leptoquarks to b tau: many hard jets and a lepton
        _objects(ev, rng, "jet", rng.integers(4, 7, n), 60.0, 30.0)
        _objects(ev, rng, "mu", np.ones(n, int), 30.0, 5.0)
    ev[:, 0] = np.stack([met, np.zeros(n), rng.uniform(-np.pi, np.pi, n), np.ones(n)], axis=1)
    return ev.astype(np.float32)


def make_adc2021(n_background: int = 10_000, n_signal: int = 1_000, signals=tuple(ADC2021_SIGNALS), *,
                 path: str | os.PathLike | None = None, overwrite: bool = False,
                 random_state=None) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic events in the ADC2021 layout, optionally written as an ADC2021 HDF5 file.

    Parameters
    ----------
    n_background : int
        Background (Standard-Model-like) events, label 0.
    n_signal : int
        Events of *each* signal type in ``signals``.
    signals : sequence of str
        Signal types, from :data:`ADC2021_SIGNALS`: "leptons" (3-4 hard leptons of one
        flavour, label 1), "met" (large missing energy and a hard jet, label 2), "jets" (4-6
        hard jets and a muon, label 3).
    path : str or path-like, optional
        Also write the events to this ``.h5`` file: dataset ``Particles`` (n, 19, 4) float32
        and ``labels`` (n,) int64 (needs h5py, extra ``io``). Read it back with
        ``aelab.datasets.load_adc2021(path)``. The file is written whole or not at all.
    overwrite : bool
        Replace an existing file at ``path`` (default False: an existing file is refused).
    random_state : int or None

    Returns
    -------
    particles : numpy.ndarray of float32, shape (n, 19, 4)
        Background first, then each signal type in turn.
    labels : numpy.ndarray of int64, shape (n,)
        0 for background, the signal's code otherwise (``labels > 0`` marks anomalies).
    """
    unknown = sorted(set(signals) - set(ADC2021_SIGNALS))
    if unknown:
        raise ConfigError(f"unknown signal type(s) {unknown}; expected a subset of {list(ADC2021_SIGNALS)}.")
    for name, v in (("n_background", n_background), ("n_signal", n_signal)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ConfigError(f"{name} must be a non-negative integer, got {v!r}.")
    h5py = h5py_module("writing ADC2021 HDF5 files") if path is not None else None
    if path is not None:
        from pathlib import Path

        if Path(path).suffix.lower() not in (".h5", ".hdf5"):
            raise ConfigError(f"path={str(path)!r}: ADC2021 files are HDF5; give a name ending in .h5.")
        if Path(path).exists() and not overwrite:
            raise ConfigError(f"{str(path)!r} exists; make_adc2021 does not replace a file unless told to. "
                              "Choose another path, or pass overwrite=True.")
    rng = np.random.default_rng(random_state)
    parts = [_events(int(n_background), rng, None)] + [_events(int(n_signal), rng, s) for s in signals]
    labels = np.concatenate([np.zeros(int(n_background), np.int64)]
                            + [np.full(int(n_signal), ADC2021_SIGNALS[s], np.int64) for s in signals])
    particles = np.concatenate(parts)
    if path is not None:
        from .._fs import atomic_path

        with atomic_path(path) as tmp, h5py.File(tmp, "w") as fh:
            fh.create_dataset("Particles", data=particles, chunks=(min(len(particles), 65536) or 1, 19, 4))
            fh.create_dataset("labels", data=labels)
    return particles, labels
