"""Data-parallel training on torch.distributed: one process or many, the same fit.

``fit`` asks :func:`current` for a :class:`Comm`. With no process group it is the
single-process identity; inside one (torchrun, ``aelab train --nproc N``, or
:func:`fit`) every rank reads only its shard of the rows, and the statistics that a
single process takes over all rows are reduced across ranks:

* the scaler's and the layout's :class:`~aelab.preprocessing.RunningStats`, merged in
  rank order with the same pairwise update that merges chunks;
* the validation rows (one global split by the seed), whose loss is summed over ranks,
  so early stopping stops every rank at the same epoch;
* gradients, all-reduced by :class:`~torch.nn.parallel.DistributedDataParallel`;
* the post-fit statistics: the code Gaussian, the reconstruction means, the reference
  rows of the neighbour scores and every training score (gathered in row order), hence
  the threshold.

The global batch is ``batch_size x world size``: ``batch_size`` is per rank, as in
PyTorch's DDP. Launching is torch's own: :func:`launch` runs torchrun's elastic agent
in this process; nothing here schedules or communicates on its own.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from .exceptions import ConfigError, TrainingError

__all__ = ["Comm", "current", "process_group", "launch", "fit", "TIMEOUT_S"]

log = logging.getLogger("aelab")

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


def _world_from_env() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ConfigError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not an integer.") from None


@contextlib.contextmanager
def process_group():
    """Join the process group described by torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR,
    MASTER_PORT) for the duration of the block; a no-op without one (world size 1) or when a group
    is already initialised. Backend: gloo for CPU tensors, NCCL for CUDA ones."""
    if _world_from_env() <= 1 or dist.is_initialized():
        yield current()
        return
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=TIMEOUT_S))
    try:
        yield current()
    finally:
        dist.destroy_process_group()


def default_threads(nproc: int) -> int:
    """CPU threads per rank when not given: the cores shared evenly (at least 1).

    torchrun itself sets OMP_NUM_THREADS=1 for every rank when it is unset; aelab always
    states the number instead of inheriting it.
    """
    return max(1, (os.cpu_count() or 1) // nproc)


def launch(nproc: int, entrypoint: Callable | str, args: tuple = (), threads: int | None = None) -> dict[int, Any]:
    """Run ``entrypoint(*args)`` (a function, or a program such as ``sys.executable``) in ``nproc`` local
    ranks with torchrun's elastic agent (c10d rendezvous on 127.0.0.1, a free port, no restarts).

    Returns ``{rank: return value}`` for a function. A rank that fails ends every rank
    and raises :class:`~aelab.exceptions.TrainingError` naming it.
    """
    if not isinstance(nproc, (int, np.integer)) or nproc < 1:
        raise ConfigError(f"nproc must be a positive integer, got {nproc!r}.")
    import uuid

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    threads = threads or default_threads(nproc)
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=int(nproc), run_id=f"aelab-{uuid.uuid4().hex[:8]}",
                          rdzv_backend="c10d", rdzv_endpoint="127.0.0.1:0", max_restarts=0, monitor_interval=0.1,
                          start_method="spawn")
    saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "AELAB_THREADS")}
    os.environ["OMP_NUM_THREADS"] = os.environ["AELAB_THREADS"] = str(threads)
    quiet = [logging.getLogger(n) for n in ("torch.distributed.elastic", "torch.distributed.launcher")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.CRITICAL)
    log.info("data-parallel: %d ranks x %d CPU threads", nproc, threads)
    try:
        return elastic_launch(config, entrypoint)(*args)
    except ChildFailedError as exc:
        # the rank that failed on its own (bad input exits 2) rather than one that lost its peer
        ranked = sorted(exc.failures.items(), key=lambda kv: (kv[1].exitcode != 2, kv[1].timestamp, kv[0]))
        rank, failure = ranked[0]
        how = f"exit code {failure.exitcode}" if failure.exitcode >= 0 else f"signal {-failure.exitcode}"
        error = TrainingError(f"rank {rank} of {nproc} failed ({how}; its message is above); every rank was "
                              "stopped and nothing was written.")
        error.exit_code = failure.exitcode
        raise error from None
    finally:
        for q, lvl in zip(quiet, levels):
            q.setLevel(lvl)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _fit_rank(estimator, X, fit_kwargs: dict):
    threads = int(os.environ.get("AELAB_THREADS", "1"))
    torch.set_num_threads(threads)
    with process_group() as comm:
        try:
            estimator.fit(X, **fit_kwargs)
        except BaseException as exc:
            print(f"aelab: rank {comm.rank} failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            raise
        return estimator.fitted_.to_state() if comm.rank == 0 else None


def fit(estimator, X, nproc: int = 2, threads: int | None = None, **fit_kwargs):
    """Fit ``estimator`` data-parallel in ``nproc`` local processes; returns it, fitted.

    ``X`` is what ``estimator.fit`` takes; a path opened with :func:`aelab.io.open_array`
    (a source) is best, since each rank then reads only its rows (an in-memory array is
    copied to every rank). ``threads`` per rank defaults to the cores shared evenly.
    ``fit_kwargs`` go to ``fit`` (``checkpoint_dir``, ``checkpoint_every``, ``resume``).
    The model equals a single-process fit on the same rows with ``batch_size`` times
    ``nproc`` (within the tolerance stated in docs/scale.md), since the global batch is
    ``batch_size x nproc``.
    """
    from .fitted import Fitted
    from .training import resolve_device

    states = launch(nproc, _fit_rank, (estimator, X, fit_kwargs), threads)
    config, tensors = states[0]
    device = resolve_device(estimator.device)
    estimator._fitted = Fitted.from_state(config, tensors, device, estimator.anomaly_score)
    return estimator


def run_cli(nproc: int, argv: list[str], threads: int | None = None) -> None:
    """``aelab ARGV`` in ``nproc`` local ranks (the CLI's ``--nproc``): each rank runs the same command."""
    launch(nproc, sys.executable, ("-m", "aelab", *argv), threads)
