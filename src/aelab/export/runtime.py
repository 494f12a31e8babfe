"""ONNX files and ONNX Runtime sessions: the shared names of an exported graph, the ``onnx`` extra,
checked file names and atomic saves, and running a session on rows chunk by chunk.

:mod:`aelab.export.onnx` builds the graph and :mod:`aelab.export.int8` quantises it; both sit
on this module, and ``aelab.export.onnx`` re-exports its public names. onnx and onnxruntime are
imported only inside the functions (extra ``aelab[onnx]``).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from .._validation import check_array, check_sample_shape, is_source
from ..exceptions import DataError, require
from ..fitted import EVAL_ROWS

__all__ = ["INPUT_NAME", "HEAD", "require_onnx", "check_onnx_path", "onnx_session", "run_session"]

INPUT_NAME = "input"


HEAD = "head_"  # the score head's name in the graph: nodes that read its constants are never quantised


ORT_PURPOSE = "Exporting to ONNX and scoring with ONNX Runtime"


def require_onnx(module: str):
    return require(module, "onnx", ORT_PURPOSE)


@contextlib.contextmanager
def _quiet_exporter():
    """torch.onnx's deprecation warnings and its logging (missing torchvision ops, ...) stay out of the output."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with contextlib.redirect_stdout(io.StringIO()):
                yield
    finally:
        logger.setLevel(level)


def check_onnx_path(path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise DataError(f"cannot write {str(path)!r}: an ONNX model file name ends in .onnx, e.g. model.onnx.")
    if path.is_dir():
        raise DataError(f"cannot write {str(path)!r}: it is a folder. Give a file name such as {path / 'model.onnx'}.")
    if not path.parent.is_dir():
        raise DataError(f"cannot write {str(path)!r}: the folder {str(path.parent)!r} does not exist. Create it first.")
    return path


def _save(proto, path: Path) -> None:
    from ..io._common import atomic_path

    onnx = require_onnx("onnx")
    with atomic_path(path) as tmp:
        onnx.save_model(proto, str(tmp), save_as_external_data=False)


def onnx_session(model, threads: int | None = None):
    """An ONNX Runtime CPU session for a file path, bytes or ModelProto; ``threads``: intra-op threads
    (default: torch's current setting, so both engines run on the same cores)."""
    ort = require_onnx("onnxruntime")
    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads or torch.get_num_threads())
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), opts,
                                providers=["CPUExecutionProvider"])


def _raw_chunks(X, input_shape: tuple, owner: str):
    """``(n_rows, iterator)`` over float32 chunks of X in the user's layout, validated as Fitted.batches does."""
    if is_source(X):
        if tuple(X.shape[1:]) != tuple(input_shape):
            check_sample_shape(np.empty((0, *X.shape[1:])), input_shape, owner)

        def chunks():
            for chunk in X.iter_chunks():
                chunk = check_array(chunk, name="a chunk of X", dtype=None)
                for i in range(0, chunk.shape[0], EVAL_ROWS):
                    yield np.ascontiguousarray(chunk[i : i + EVAL_ROWS], dtype=np.float32)

        return len(X), chunks()
    Xv = check_array(X, dtype=None)
    check_sample_shape(Xv, tuple(input_shape), owner)
    return Xv.shape[0], (np.ascontiguousarray(Xv[i : i + EVAL_ROWS], dtype=np.float32)
                         for i in range(0, Xv.shape[0], EVAL_ROWS))


def _input_shape(session) -> tuple:
    meta = session.get_modelmeta().custom_metadata_map
    if "input_shape" in meta:
        return tuple(json.loads(meta["input_shape"]))
    return tuple(session.get_inputs()[0].shape[1:])


def run_session(session, X, owner: str = "the ONNX model") -> np.ndarray:
    """Run ``session`` on X (array or chunked source) EVAL_ROWS rows at a time and stack the output."""
    n, chunks = _raw_chunks(X, _input_shape(session), owner)
    name = session.get_inputs()[0].name
    out, pos = None, 0
    for chunk in chunks:
        r = session.run(None, {name: chunk})[0]
        if out is None:
            out = np.empty((n, *r.shape[1:]), dtype=r.dtype)
        out[pos : pos + len(r)] = r
        pos += len(r)
    return out if out is not None else np.empty((0,), dtype=np.float64)
