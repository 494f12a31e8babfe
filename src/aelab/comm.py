"""The process group a fit runs in: one process or many ranks, seen through one small :class:`Comm`.

:func:`current` gives the :class:`Comm` of the initialised default process group (torchrun,
``aelab train --nproc``, :func:`aelab.distributed.fit`), or the single-process identity; the
fit, the post-fit statistics and the training loop ask it for their shard and their reductions
and never import :mod:`aelab.distributed` (which launches ranks, and sits above the estimators).
This module is on the ground floor: it imports nothing of aelab but the exceptions.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from .exceptions import ConfigError

__all__ = ["Comm", "current", "process_group", "world_from_env", "TIMEOUT_S"]

#: Seconds a collective waits for the other ranks before it fails (a lost rank never hangs the job).
TIMEOUT_S = int(os.environ.get("AELAB_DIST_TIMEOUT", "300"))



class Comm:
    """The collectives a fit needs, over the default process group (world size 1: identities)."""

    def __init__(self, rank: int = 0, world: int = 1, local_rank: int = 0):
        self.rank, self.world, self.local_rank = rank, world, local_rank

    @property
    def parallel(self) -> bool:
        return self.world > 1

    def __repr__(self) -> str:
        return f"Comm(rank={self.rank}, world={self.world})"

    # ------------------------------------------------------------------ sharding
    def bounds(self, n: int) -> list[int]:
        """Where the ranks' shards of n rows start, and n: contiguous ranges in rank order."""
        return [n * r // self.world for r in range(self.world + 1)]

    def shard(self, n: int) -> tuple[int, int]:
        """This rank's rows ``[start, stop)`` of n."""
        b = self.bounds(n)
        return b[self.rank], b[self.rank + 1]

    def rows(self, X, n: int):
        """This rank's shard of X (an array, or a source read lazily: only these rows are read)."""
        if not self.parallel:
            return X
        start, stop = self.shard(n)
        return X.rows(start, stop) if hasattr(X, "iter_chunks") else X[start:stop]

    # ------------------------------------------------------------------ reductions
    def gather(self, obj: Any) -> list:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.parallel:
            return [obj]
        out: list = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.parallel:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def sum(self, values) -> np.ndarray:
        """Element-wise float64 sum over ranks."""
        values = np.asarray(values, dtype=np.float64)
        if not self.parallel:
            return values
        t = torch.from_numpy(np.array(values, dtype=np.float64, copy=True))
        dist.all_reduce(t)
        return t.numpy()

    def concat(self, array: np.ndarray) -> np.ndarray:
        """The ranks' arrays stacked in rank order (= row order of the shards)."""
        return array if not self.parallel else np.concatenate(self.gather(array))

    def merge(self, stats):
        """:class:`~aelab.preprocessing.RunningStats` of all ranks, merged in rank order."""
        if not self.parallel:
            return stats
        parts = self.gather(stats)
        merged = parts[0]
        for p in parts[1:]:
            merged.merge(p)
        return merged

    # ------------------------------------------------------------------ training
    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """The module whose forward trains: DDP across ranks, the model itself alone."""
        if not self.parallel:
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def device(self, device: torch.device) -> torch.device:
        """One device per rank: CUDA ranks take ``cuda:LOCAL_RANK``."""
        if self.parallel and device.type == "cuda" and device.index is None:
            return torch.device("cuda", self.local_rank % torch.cuda.device_count())
        return device


def current() -> Comm:
    """The :class:`Comm` of the initialised default process group, or the single-process one."""
    if dist.is_available() and dist.is_initialized():
        return Comm(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return Comm()


def world_from_env() -> int:
    """The world size torchrun (or ``--nproc``) put in the environment: 1 outside a data-parallel run."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1") or 1)
    except ValueError:
        raise ConfigError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not an integer.") from None


@contextlib.contextmanager
def process_group(on_error=None):
    """Join the process group described by torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR,
    MASTER_PORT) for the duration of the block; a no-op without one (world size 1) or when a group
    is already initialised. Backend: gloo for CPU tensors, NCCL for CUDA ones. ``on_error(rank, exc)``
    runs when the block raises, before the group is destroyed (which fails the peers' collectives)."""
    if world_from_env() <= 1 or dist.is_initialized():
        yield current()
        return
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=TIMEOUT_S))
    comm = current()
    try:
        yield comm
    except Exception as exc:
        if on_error is not None:
            on_error(comm.rank, exc)
        raise
    finally:
        dist.destroy_process_group()
