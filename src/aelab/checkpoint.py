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

from .exceptions import ConfigError, PersistenceError

__all__ = ["TrainState", "Checkpointer", "read_checkpoint", "rng_state", "set_rng_state"]

FORMAT = "aelab-checkpoint"
FORMAT_VERSION = 1
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
        if self.folder.exists() and not (self.folder.is_dir() and (not any(self.folder.iterdir())
                                                                   or (self.folder / INDEX_FILE).is_file())):
            raise PersistenceError(f"checkpoint folder {str(self.folder)!r} exists and is not an aelab checkpoint; "
                                   "choose a new folder name.")

    def due(self, epoch: int, last: bool) -> bool:
        return (epoch + 1) % self.every == 0 or last

    def save(self, state: TrainState, rng: dict) -> None:
        from . import __version__
        from .persistence import _jsonable, write_folder

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
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        write_folder(self.folder, tensors, {INDEX_FILE: doc}, TENSOR_FILE)


def read_checkpoint(folder, comm, fingerprint: dict) -> TrainState:
    """The :class:`TrainState` in ``folder``, checked against this run (world size, data, settings)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    index = folder / INDEX_FILE
    if not index.is_file() or not (folder / TENSOR_FILE).is_file():
        raise PersistenceError(f"{str(folder)!r} is not an aelab checkpoint (no {INDEX_FILE} and {TENSOR_FILE}); "
                               "pass the folder given to checkpoint_dir / --checkpoint-dir.")
    try:
        doc = json.loads(index.read_text(encoding="utf-8"))
        tensors = load_file(str(folder / TENSOR_FILE))
    except (OSError, ValueError) as exc:
        raise PersistenceError(f"the checkpoint {str(folder)!r} cannot be read: {exc}") from None
    if doc.get("format") != FORMAT or doc.get("format_version", 0) > FORMAT_VERSION:
        raise PersistenceError(f"{str(folder)!r} is not a checkpoint this aelab can read "
                               f"(format {doc.get('format')!r} version {doc.get('format_version')!r}).")
    if doc["world_size"] != comm.world:
        raise ConfigError(f"the checkpoint was written by {doc['world_size']} process(es) but this run has "
                          f"{comm.world}; resume with --nproc {doc['world_size']}.")
    from .persistence import _jsonable

    theirs, ours = doc["fingerprint"], _jsonable(fingerprint)
    changed = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
    if changed:
        detail = "; ".join(f"{k}: checkpoint {theirs.get(k)!r}, now {ours.get(k)!r}" for k in changed)
        raise ConfigError(f"the checkpoint does not belong to this run ({detail}). Resume with the same data "
                          "and settings, or start afresh without resume.")
    model = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")} or None
    return TrainState(epoch=int(doc["epoch"]), history=doc["history"],
                      best=float("inf") if doc["best"] is None else float(doc["best"]),
                      since_best=int(doc["since_best"]), model=model, optimizer=_join_optimizer(tensors, doc["optimizer"]),
                      best_model=best, rng=doc["rng"], fingerprint=theirs)
