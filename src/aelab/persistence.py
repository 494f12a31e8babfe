"""Save and load a fitted estimator as a folder; nothing is ever unpickled.

Layout of a model folder::

    config.json          class name, constructor parameters, network config, fitted metadata
    weights.safetensors  network weights and the arrays of the fitted state (scaler, codes, scores)
    meta.json            versions of aelab, torch, numpy and Python, creation time

JSON and safetensors are data formats: loading parses them and never executes code
from the files. Saving writes a temporary sibling folder and swaps it in with
renames, so a crash mid-save leaves the previous model intact.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from .exceptions import PersistenceError

FORMAT = "aelab-model"
FORMAT_VERSION = 1
_FILES = ("config.json", "weights.safetensors", "meta.json")
_MAX_JSON_BYTES = 64 * 2**20


def _jsonable(v):
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return None  # e.g. a np.random.Generator as random_state: not reproducible from a file


def save(est, path) -> None:
    from safetensors.torch import save_file

    from . import __version__
    from ._validation import check_is_fitted

    check_is_fitted(est)
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise PersistenceError(f"cannot save a model to {str(path)!r}: a file of that name exists. Choose a folder path.")
    if path.is_dir() and any(path.iterdir()) and not (path / "config.json").is_file():
        raise PersistenceError(f"{str(path)!r} is a non-empty folder that holds no aelab model; refusing to "
                               "replace it. Choose a new or empty folder.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in est.model_.state_dict().items()}
    arrays = {"scaler.offset": est.scaler_.offset, "scaler.scale": est.scaler_.scale,
              "decision_scores": est.decision_scores_, "latent_mean": est.latent_mean_, "latent_cov": est.latent_cov_,
              "recon_means": est.recon_means_}
    tensors.update({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items() if v is not None})
    config = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "class": type(est).__name__,
        "params": _jsonable(est.get_params()), "model": est.model_cfg_.to_dict(), "scaler": est.scaler_.config(),
        "fitted": _jsonable({
            "input_shape": est.input_shape_, "channels_last": est.channels_last_,
            "n_features_in": est.n_features_in_, "recon_kind": est.recon_kind_, "score": est.score_,
            "threshold": est.threshold_, "threshold_rule": est.threshold_rule_, "history": est.history_,
        }),
    }
    meta = {"aelab": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        save_file(tensors, str(tmp / "weights.safetensors"))
        for name, obj in (("config.json", config), ("meta.json", meta)):
            with open(tmp / name, "w", encoding="utf-8") as f:
                json.dump(obj, f, indent=2)
                f.flush()
                os.fsync(f.fileno())
        if path.exists():
            backup = path.parent / f".{path.name}.old-{os.getpid()}-{time.time_ns()}"
            os.replace(path, backup)
            os.replace(tmp, path)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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


def load(path, device: str = "auto"):
    """Load a model folder written by ``save``; scores are identical to the saved model's.

    ``device`` places the network ("auto", "cpu" or "cuda"). Raises
    :class:`~aelab.exceptions.PersistenceError` for anything that is not a valid model folder
    (including files replaced by pickle payloads, which are never executed).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .config import ModelConfig
    from .estimators import PCA, VAE, Autoencoder
    from .models import build_model
    from .preprocessing import Scaler
    from .training import resolve_device

    path = Path(path)
    if not path.is_dir():
        raise PersistenceError(f"no model folder at {str(path)!r}; pass the folder written by est.save(path).")
    cfg = _read_json(path / "config.json")
    _read_json(path / "meta.json")
    if cfg.get("format") != FORMAT or cfg.get("format_version") != FORMAT_VERSION:
        raise PersistenceError(f"{str(path / 'config.json')!r} is not an aelab model config of format version "
                               f"{FORMAT_VERSION} (found format={cfg.get('format')!r}, "
                               f"version={cfg.get('format_version')!r}).")
    classes = {"Autoencoder": Autoencoder, "VAE": VAE, "PCA": PCA}
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
    try:
        params = dict(cfg["params"])
        for k in ("hidden", "channels"):
            if isinstance(params.get(k), list):
                params[k] = tuple(params[k])
        est = classes[cfg["class"]](**params)
        fitted = cfg["fitted"]
        est.input_shape_ = tuple(fitted["input_shape"])
        est.channels_last_ = bool(fitted["channels_last"])
        est.n_features_in_ = int(fitted["n_features_in"])
        est.recon_kind_ = fitted["recon_kind"]
        est.threshold_ = float(fitted["threshold"])
        est.threshold_rule_ = fitted["threshold_rule"]
        est.history_ = fitted["history"]
        est.model_cfg_ = ModelConfig.from_dict(cfg["model"])
        est.model_input_shape_ = tuple(est.model_cfg_.input_shape)
        est.scaler_ = Scaler.from_state(cfg["scaler"], {"offset": tensors["scaler.offset"].numpy(),
                                                        "scale": tensors["scaler.scale"].numpy()})
        est.decision_scores_ = tensors["decision_scores"].numpy()
        est.latent_mean_ = tensors["latent_mean"].numpy()
        est.latent_cov_ = tensors["latent_cov"].numpy()
        # models saved before the fitted scores existed lack these two: they keep their "mse"-family scores
        est.recon_means_ = tensors["recon_means"].numpy() if "recon_means" in tensors else None
        est.score_ = fitted.get("score", est.score)
        est.device_ = resolve_device(device)
        model = build_model(est.model_cfg_)
        state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        model.load_state_dict(state, strict=True)
        est.model_ = model.to(est.device_).eval()
    except PersistenceError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise PersistenceError(f"the model folder {str(path)!r} is inconsistent or from an incompatible "
                               f"version: {type(exc).__name__}: {exc}") from None
    return est
