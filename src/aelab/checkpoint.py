"""Resumable training state: a folder of safetensors plus JSON, written atomically, no pickle.

A checkpoint holds what the training loop needs to continue exactly where it stopped:
the network, the optimiser's state, the completed epochs and their history, the
early-stopping state (best loss, epochs since, best weights) and every random state
the loop draws from (per rank: the batch-order generators and torch's global RNG, used
by the denoising corruption and the VAE's sampling). Everything before training (the
statistics, the scaler, the validation split) is recomputed from the data and the seed,
and a fingerprint of those checks that a resumed run sees the same data and settings.

On CPU a resumed run ends with the same weights as the uninterrupted one (one process:
bit-identical; the tests check it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ._fs import MARKER, check_owned, verify_owned
from .exceptions import ConfigError, PersistenceError

__all__ = ["TrainState", "Checkpointer", "read_checkpoint", "rng_state", "set_rng_state"]

FORMAT = "aelab-checkpoint"
FORMAT_VERSION = 2  # 2: the folder carries aelab's marker with SHA-256 digests; 1 still reads
INDEX_FILE, TENSOR_FILE = "checkpoint.json", "state.safetensors"


@dataclass
class TrainState:
    """The training loop's state after ``epoch`` completed epochs."""

    epoch: int
    history: dict
    best: float
    since_best: int
    model: dict[str, torch.Tensor]
    optimizer: dict
    best_model: dict[str, torch.Tensor] | None = None
    rng: list[dict] = field(default_factory=list)  # one entry per rank
    fingerprint: dict = field(default_factory=dict)


def rng_state(generators: dict) -> dict:
    """JSON-able states of torch's global RNG and of the named torch/numpy generators."""
    out = {"torch": torch.get_rng_state().tolist()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    for name, g in generators.items():
        if isinstance(g, torch.Generator):
            out[name] = g.get_state().tolist()
        else:  # numpy Generator
            out[name] = g.bit_generator.state
    return out


def set_rng_state(state: dict, generators: dict) -> None:
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])
    for name, g in generators.items():
        if isinstance(g, torch.Generator):
            g.set_state(torch.tensor(state[name], dtype=torch.uint8))
        else:
            g.bit_generator.state = state[name]


def _split_optimizer(sd: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, state = {}, {}
    for idx, entries in sd["state"].items():
        for key, v in entries.items():
            if isinstance(v, torch.Tensor):
                tensors[f"opt.{idx}.{key}"] = v.detach().cpu().contiguous()
            else:
                state.setdefault(str(idx), {})[key] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": state}


def _join_optimizer(tensors: dict[str, torch.Tensor], doc: dict) -> dict:
    state: dict = {}
    for name, v in tensors.items():
        if name.startswith("opt."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = v
    for idx, entries in doc["scalars"].items():
        state.setdefault(int(idx), {}).update(entries)
    return {"state": state, "param_groups": doc["param_groups"]}


class Checkpointer:
    """Writes a :class:`TrainState` into ``folder`` every ``every`` epochs (rank 0 writes; all ranks
    contribute their random states)."""

    def __init__(self, folder, every: int, comm, fingerprint: dict):
        if not isinstance(every, (int, np.integer)) or every < 1:
            raise ConfigError(f"checkpoint_every must be a positive integer (epochs), got {every!r}.")
        self.folder, self.every, self.comm, self.fingerprint = Path(folder), int(every), comm, fingerprint
        if comm.rank == 0:
            check_owned(self.folder, "checkpoint")  # a folder of the user's is refused before training

    def due(self, epoch: int, last: bool) -> bool:
        return (epoch + 1) % self.every == 0 or last

    def save(self, state: TrainState, rng: dict) -> None:
        from ._version import __version__
        from ._fs import write_folder
        from .config import jsonable as _jsonable

        rngs = self.comm.gather(rng)
        if self.comm.rank != 0:
            return
        tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in state.model.items()}
        if state.best_model is not None:
            tensors.update({f"best.{k}": v.detach().cpu().contiguous() for k, v in state.best_model.items()})
        opt_tensors, opt_doc = _split_optimizer(state.optimizer)
        tensors.update(opt_tensors)
        doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "aelab": __version__, "epoch": state.epoch,
               "history": state.history, "best": None if not np.isfinite(state.best) else state.best,
               "since_best": state.since_best, "optimizer": _jsonable(opt_doc), "rng": rngs,
               "world_size": self.comm.world, "fingerprint": _jsonable(self.fingerprint)}
        write_folder(self.folder, "checkpoint", tensors, {INDEX_FILE: doc}, TENSOR_FILE)


def _bad(folder: Path, what: str) -> PersistenceError:
    return PersistenceError(f"the checkpoint {str(folder)!r} is damaged ({what}); it cannot be resumed. Start "
                            "afresh without resume, or resume from an intact copy.")


def _check_doc(doc, folder: Path) -> None:
    """The index's fields and their types; a hand-edited or foreign index is refused by name."""
    if not isinstance(doc, dict):
        raise _bad(folder, f"{INDEX_FILE} holds a {type(doc).__name__}, not an object")
    need = {"epoch": int, "history": dict, "since_best": int, "optimizer": dict, "rng": list, "world_size": int,
            "fingerprint": dict}
    for key, kind in need.items():
        if key not in doc:
            raise _bad(folder, f"{INDEX_FILE} has no {key!r}")
        if not isinstance(doc[key], kind) or isinstance(doc[key], bool):
            raise _bad(folder, f"{INDEX_FILE}: {key!r} is {doc[key]!r}, expected a {kind.__name__}")
    if doc["epoch"] < 0 or doc["world_size"] < 1 or len(doc["rng"]) != doc["world_size"]:
        raise _bad(folder, f"{INDEX_FILE}: epoch {doc['epoch']}, world_size {doc['world_size']} and "
                           f"{len(doc['rng'])} random states do not fit together")
    if not isinstance(doc.get("best", None), (int, float, type(None))):
        raise _bad(folder, f"{INDEX_FILE}: 'best' is {doc['best']!r}, expected a number or null")
    losses = doc["history"].get("loss")
    if not isinstance(losses, list) or len(losses) != doc["epoch"]:
        raise _bad(folder, f"{INDEX_FILE}: epoch {doc['epoch']} but a history of "
                           f"{len(losses) if isinstance(losses, list) else 'no'} epochs")
    if not all(isinstance(r, dict) and "torch" in r for r in doc["rng"]):
        raise _bad(folder, f"{INDEX_FILE}: a random state without torch's generator")
    if not isinstance(doc["optimizer"].get("param_groups"), list) or not isinstance(doc["optimizer"].get("scalars"),
                                                                                     dict):
        raise _bad(folder, f"{INDEX_FILE}: the optimiser state has no param_groups or scalars")


def _differences(theirs: dict, ours: dict, prefix: str = "") -> list[str]:
    """``key: checkpoint X, now Y`` for each setting that differs (nested settings by their own name)."""
    out = []
    for k in sorted(set(theirs) | set(ours)):
        a, b = theirs.get(k), ours.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, "" if k == "params" else f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: checkpoint {a!r}, now {b!r}")
    return out


def read_checkpoint(folder, comm, fingerprint: dict) -> TrainState:
    """The :class:`TrainState` in ``folder``, checked against this run (world size, data, settings).

    The folder's marker digests are checked first, so a truncated or edited file is refused
    with a clear :class:`~aelab.exceptions.PersistenceError` before anything is read into the run.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    index = folder / INDEX_FILE
    if not index.is_file() or not (folder / TENSOR_FILE).is_file():
        raise PersistenceError(f"{str(folder)!r} is not an aelab checkpoint (no {INDEX_FILE} and {TENSOR_FILE}); "
                               "pass the folder given to checkpoint_dir / --checkpoint-dir.")
    marked = verify_owned(folder, "checkpoint", (INDEX_FILE, TENSOR_FILE))
    try:
        doc = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _bad(folder, f"{INDEX_FILE} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("format_version"), int) \
            or doc["format_version"] > FORMAT_VERSION:
        raise PersistenceError(f"{str(folder)!r} is not a checkpoint this aelab can read (format "
                               f"{doc.get('format') if isinstance(doc, dict) else None!r} version "
                               f"{doc.get('format_version') if isinstance(doc, dict) else None!r}).")
    if doc["format_version"] >= 2 and not marked:
        raise _bad(folder, f"its marker {MARKER} is missing or unreadable")
    _check_doc(doc, folder)
    try:
        tensors = load_file(str(folder / TENSOR_FILE))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise _bad(folder, f"{TENSOR_FILE} cannot be read: {exc}") from None
    if doc["world_size"] != comm.world:
        raise ConfigError(f"the checkpoint was written by {doc['world_size']} process(es) but this run has "
                          f"{comm.world}; resume with --nproc {doc['world_size']}.")
    from .config import jsonable as _jsonable

    theirs, ours = doc["fingerprint"], _jsonable(fingerprint)
    if theirs.get("data_path") != ours.get("data_path") and "data_path" in theirs:
        raise ConfigError(f"the checkpoint was written by a run that read its data {theirs['data_path']} and this "
                          f"run reads it {ours.get('data_path')}; the batch order differs between the two, so the "
                          f"run could not continue exactly. Resume with --stream "
                          f"{'always' if theirs['data_path'] == 'streamed' else 'never'} (Python: pass the same kind "
                          "of X, an array or an aelab.io.open_array source).")
    changed = _differences(theirs, ours)
    if changed:
        raise ConfigError(f"the checkpoint does not belong to this run ({'; '.join(changed)}). Resume with the "
                          "same data and settings, or start afresh without resume.")
    model = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    if not model:
        raise _bad(folder, f"{TENSOR_FILE} holds no network weights")
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")} or None
    return TrainState(epoch=doc["epoch"], history=doc["history"],
                      best=float("inf") if doc.get("best") is None else float(doc["best"]),
                      since_best=doc["since_best"], model=model, optimizer=_join_optimizer(tensors, doc["optimizer"]),
                      best_model=best, rng=doc["rng"], fingerprint=theirs)


#: Rows hashed in full up to this count; above it, every k-th row (the fingerprint's sums cover all rows).
DIGEST_ROWS = 200_000


def rows_digest(local, n: int, comm) -> str:
    """SHA-256 of the rows in their order (every k-th row of large data), over all ranks.

    ``local`` is this rank's shard (an array, or a source read a chunk at a time) of ``n``
    rows. Reordered, swapped or edited rows give another digest, so a resume on other
    data is refused even where the per-column sums agree.
    """
    import hashlib

    stride = max(1, -(-n // DIGEST_ROWS))
    start = comm.shard(n)[0]
    h = hashlib.sha256()

    def add(block, offset: int) -> None:
        first = (-offset) % stride  # the first row of this block whose global index is a multiple of stride
        rows = np.ascontiguousarray(np.asarray(block)[first::stride])
        h.update(rows.dtype.str.encode())
        h.update(rows.tobytes())

    if hasattr(local, "iter_chunks"):
        offset = start
        for chunk in local.iter_chunks():
            add(chunk, offset)
            offset += len(chunk)
    else:
        add(local, start)
    parts = comm.gather(h.hexdigest())
    return hashlib.sha256("".join(parts).encode()).hexdigest() if len(parts) > 1 else parts[0]
