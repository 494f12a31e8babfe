"""Save and load a fitted estimator as a folder; nothing is ever unpickled.

Layout of a model folder::

    config.json          class name, constructor parameters, network config, fitted metadata
    weights.safetensors  network weights and the arrays of the fitted state (scaler, codes, scores)
    meta.json            versions of aelab, torch, numpy and Python, creation time

JSON and safetensors are data formats: loading parses them and never executes code
from the files. It holds one :class:`aelab.fitted.Fitted` and imports no estimator class
(``aelab.load`` builds the estimator). Saving goes through :func:`aelab._fs.write_owned`: the folder
is swapped in whole, so a crash mid-save leaves the previous model intact; it carries the marker
``.aelab.json`` (the files aelab wrote, with their SHA-256), loading refuses a damaged file, and a
user's own files in the folder are kept.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from ._fs import verify_owned, write_folder
from .config import jsonable as _jsonable
from .exceptions import PersistenceError

FORMAT = "aelab-model"
# 2: fitted.input_kind and params.anomaly_score (aelab 0.2); version 1 still loads.
# 3: the scaler's per-sample steps (scaler.pre, intensity images). Only a model that uses them is written
#    as version 3, so that an aelab which does not know them refuses it instead of scoring without them.
FORMAT_VERSION = 2
FORMAT_VERSION_PRE = 3
_READABLE_VERSIONS = (1, 2, 3)
_FILES = ("config.json", "weights.safetensors", "meta.json")
_MAX_JSON_BYTES = 64 * 2**20


def save(path, class_name: str, params: dict, fitted) -> None:
    """Write the fitted state ``fitted`` (an :class:`aelab.fitted.Fitted`) of a ``class_name`` estimator.

    Estimators call it as ``est.save(path)``. The folder appears complete or not at all.
    """
    from ._version import __version__

    state, tensors = fitted.to_state()
    version = FORMAT_VERSION_PRE if state.get("scaler", {}).get("pre", "none") != "none" else FORMAT_VERSION
    config = {"format": FORMAT, "format_version": version, "class": class_name,
              "params": _jsonable(params), **_jsonable(state)}
    meta = {"aelab": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_folder(path, "model", tensors, {"config.json": config, "meta.json": meta}, "weights.safetensors")


def _read_json(file: Path) -> dict:
    if not file.is_file():
        raise PersistenceError(f"{str(file)!r} is missing; a model folder needs {', '.join(_FILES)}.")
    if file.stat().st_size > _MAX_JSON_BYTES:
        raise PersistenceError(f"{str(file)!r} is {file.stat().st_size} bytes, too large for a model config.")
    raw = file.read_bytes()
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        hint = " It looks like a pickle file; aelab never loads pickles." if raw[:1] == b"\x80" else ""
        raise PersistenceError(f"{str(file)!r} is not valid JSON ({exc}).{hint}") from None
    if not isinstance(obj, dict):
        raise PersistenceError(f"{str(file)!r} should hold a JSON object, found {type(obj).__name__}.")
    return obj


def read(path, device: str, classes: list[str]):
    """Read a model folder written by :func:`save`.

    Returns ``(class name, constructor parameters, state)`` where ``state(anomaly_score)``
    builds the :class:`aelab.fitted.Fitted` on ``device`` ("auto", "cpu" or "cuda").
    :func:`aelab.load` turns them into an estimator. Raises
    :class:`~aelab.exceptions.PersistenceError` for anything that is not a valid model
    folder (including files replaced by pickle payloads, which are never executed).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .fitted import Fitted
    from .device import resolve_device

    path = Path(path)
    if not path.is_dir():
        raise PersistenceError(f"no model folder at {str(path)!r}; pass the folder written by est.save(path).")
    verify_owned(path, "model", _FILES)
    cfg = _read_json(path / "config.json")
    _read_json(path / "meta.json")
    if cfg.get("format") != FORMAT or cfg.get("format_version") not in _READABLE_VERSIONS:
        raise PersistenceError(f"{str(path / 'config.json')!r} is not an aelab model config of format version "
                               f"{' or '.join(map(str, _READABLE_VERSIONS))} (found format={cfg.get('format')!r}, "
                               f"version={cfg.get('format_version')!r}). A newer aelab wrote it? Upgrade aelab.")
    if cfg.get("class") not in classes:
        raise PersistenceError(f"unknown estimator class {cfg.get('class')!r}; expected one of {sorted(classes)}.")
    wfile = path / "weights.safetensors"
    if not wfile.is_file():
        raise PersistenceError(f"{str(wfile)!r} is missing; a model folder needs {', '.join(_FILES)}.")
    try:
        tensors = load_file(str(wfile), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise PersistenceError(f"{str(wfile)!r} is not a valid safetensors file ({exc}). aelab never loads "
                               "pickled weights; re-save the model with est.save(path).") from None
    dev = resolve_device(device)
    params = cfg.get("params")
    if not isinstance(params, dict):
        raise PersistenceError(f"the model folder {str(path)!r} is inconsistent: config.json has no parameters.")
    return cfg["class"], dict(params), lambda anomaly_score: Fitted.from_state(cfg, tensors, dev, anomaly_score)
