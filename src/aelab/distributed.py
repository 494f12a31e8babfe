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
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from . import comm as _comm
from .comm import TIMEOUT_S, Comm, current, world_from_env  # noqa: F401 (re-exported)
from .exceptions import ConfigError, TrainingError

__all__ = ["Comm", "current", "process_group", "launch", "fit", "check_rows", "launcher_alive", "TIMEOUT_S"]

log = logging.getLogger("aelab")

#: Set by :func:`launch` for its ranks: the launcher's pid (the ranks die with it) and the folder where a
#: rank that fails writes its rank and message (so the launcher names the rank that raised first).
ENV_LAUNCHER, ENV_ERRORS = "AELAB_LAUNCHER_PID", "AELAB_RANK_ERRORS"
_PR_SET_PDEATHSIG = 1


@contextlib.contextmanager
def process_group():
    """:func:`aelab.comm.process_group` whose failure is recorded for the launcher (:func:`record_failure`)."""
    with _comm.process_group(on_error=record_failure) as comm:
        yield comm


def default_threads(nproc: int) -> int:
    """CPU threads per rank when not given: the cores shared evenly (at least 1).

    torchrun itself sets OMP_NUM_THREADS=1 for every rank when it is unset; aelab always
    states the number instead of inheriting it.
    """
    return max(1, (os.cpu_count() or 1) // nproc)


def bind_to_launcher() -> None:
    """In a rank that :func:`launch` started: end with the launcher, however it ends.

    On Linux the kernel sends this process SIGKILL when the launcher dies (a parent-death
    signal; the launcher forks its ranks from its main thread, which lives as long as it
    does), and the launcher's pid is compared with our parent's to close the race of a
    launcher that died before the signal was armed. SIGINT is left to the launcher, which
    stops the ranks and reports the interruption once. A no-op outside :func:`launch`.
    """
    expected = os.environ.get(ENV_LAUNCHER)
    if not expected or world_from_env() <= 1:
        return
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if not launcher_alive():
        os._exit(128 + int(signal.SIGKILL))  # the launcher is already gone: nothing more may happen
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, signal.SIG_DFL)


def launcher_alive() -> bool:
    """False in a rank of :func:`launch` whose launcher has ended (check before writing anything);
    True everywhere else."""
    expected = os.environ.get(ENV_LAUNCHER)
    return not expected or world_from_env() <= 1 or os.getppid() == int(expected)


def check_launcher(what: str) -> None:
    """Raise :class:`TrainingError` instead of writing ``what`` when the launcher has ended."""
    if not launcher_alive():
        raise TrainingError(f"the launcher of this rank has ended; {what} was not written.")


def record_failure(rank: int, exc: BaseException, exit_code: int | None = None) -> bool:
    """In a rank of :func:`launch`: write this rank's failure for the launcher (True when written).

    A failure of a collective (a peer that ended) is marked as such, so that the launcher
    names the rank that raised on its own, not one that lost its peer. ``exit_code``
    defaults to the command line's: 2 for bad input, 1 for a failure.
    """
    if exit_code is None:
        from .exceptions import AelabError

        exit_code = 2 if isinstance(exc, (AelabError, OSError)) and not isinstance(exc, TrainingError) else 1
    folder = os.environ.get(ENV_ERRORS)
    if not folder or not os.path.isdir(folder):
        return False
    target = os.path.join(folder, f"rank-{rank}.json")
    if os.path.exists(target):  # the first failure of this rank is the one to report
        return True
    message = " ".join(str(exc).split()) or type(exc).__name__
    peer = isinstance(exc, dist.DistError) or (
        isinstance(exc, RuntimeError) and any(k in message for k in ("gloo", "NCCL", "by peer", "ProcessGroup")))
    record = {"rank": int(rank), "type": type(exc).__name__, "message": message, "exit_code": int(exit_code),
              "peer": peer, "time_ns": time.time_ns()}
    tmp = os.path.join(folder, f".rank-{rank}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(record, fh)
        os.replace(tmp, target)
    except OSError:
        return False
    return True


def _first_failure(folder: str) -> dict | None:
    """The failure that came first: of the ranks that raised on their own, the earliest."""
    records = []
    for name in os.listdir(folder):
        if name.startswith("rank-") and name.endswith(".json"):
            try:
                with open(os.path.join(folder, name), encoding="utf-8") as fh:
                    records.append(json.load(fh))
            except (OSError, ValueError):
                continue
    if not records:
        return None
    return min(records, key=lambda r: (bool(r.get("peer")), int(r.get("time_ns", 0)), int(r.get("rank", 0))))


_LAUNCH_PREFIX = "aelab-launch-"


def _sweep_launch_folders(root: str | None = None) -> None:
    """Remove the folders of launches whose launcher was killed (its pid is in the name and no longer runs)."""
    import re
    import shutil
    import tempfile

    root = root or tempfile.gettempdir()
    try:
        names = os.listdir(root)
    except OSError:
        return
    for name in names:
        m = re.fullmatch(re.escape(_LAUNCH_PREFIX) + r"(\d+)-\w+", name)
        path = os.path.join(root, name)
        if m is None or not os.path.isdir(path) or os.path.islink(path):
            continue
        try:
            if os.stat(path).st_uid != os.getuid():
                continue
            os.kill(int(m.group(1)), 0)
            continue  # its launcher still runs
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except (OSError, ValueError, OverflowError):
            continue


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class Stopped(TrainingError):
    """The launcher was stopped by a signal (SIGTERM, SIGHUP, ...); its ranks were stopped too."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = int(signum)
        self.exit_code = 128 + int(signum)


def shard_training_rows(n: int, world: int, validation_fraction: float, seed: int | None) -> list[int] | None:
    """Training rows in each rank's shard after the validation split of ``seed`` (None: unknown seed,
    and then None unless no split can empty a shard)."""
    n_val = _held_out(n, validation_fraction)
    bounds = [n * r // world for r in range(world + 1)]
    sizes = [b - a for a, b in zip(bounds, bounds[1:])]
    if n_val == 0:
        return sizes
    if min(sizes) > n_val:  # whatever rows are held out, every shard keeps some
        return None if seed is None else [s - n_val for s in sizes]  # a lower bound, enough to pass
    if seed is None:
        return None
    from .training import validation_split

    _, train_idx = validation_split(n, float(validation_fraction), torch.Generator(device="cpu").manual_seed(int(seed)))
    return [int(((train_idx >= a) & (train_idx < b)).sum()) for a, b in zip(bounds, bounds[1:])]


def _held_out(n: int, validation_fraction: float) -> int:
    n_val = int(round(float(validation_fraction or 0.0) * n))
    return 0 if n_val < 1 or n - n_val < 1 else n_val


def _too_few(n: int, world: int, validation_fraction: float, seed: int | None) -> bool:
    if n < world or n - _held_out(n, validation_fraction) < world:
        return True
    counts = shard_training_rows(n, world, validation_fraction, seed)
    return counts is not None and min(counts) < 1


def check_rows(n: int, nproc: int, validation_fraction: float = 0.0, seed: int | None = None,
               what: str = "the data", option: str = "nproc=") -> None:
    """Raise :class:`ConfigError` when ``n`` rows are too few for ``nproc`` ranks.

    Every rank trains on rows of its own shard (contiguous, n / nproc rows), so every shard
    needs rows left for training after the validation split (``validation_fraction`` of the
    rows, drawn by ``seed``; with ``seed=None`` only what holds for every seed is checked
    here, and the ranks check the rest before training).
    """
    nproc, n = int(nproc), int(n)
    if nproc <= 1 or not _too_few(n, nproc, validation_fraction, seed):
        return
    n_val = _held_out(n, validation_fraction)
    most = next((w for w in range(nproc - 1, 0, -1) if not _too_few(n, w, validation_fraction, seed)), 1)
    held = f" ({n_val} held out for validation)" if n_val else ""
    raise ConfigError(f"{what} has {n} rows{held}, too few for {nproc} ranks: every rank trains on rows of its own "
                      f"shard and at least one would get none. Use at most {most} rank(s) ({option}{most}), more "
                      "rows, or a smaller validation_fraction.")


def launch(nproc: int, entrypoint: Callable | str, args: tuple = (), threads: int | None = None) -> dict[int, Any]:
    """Run ``entrypoint(*args)`` (a function, or a program such as ``sys.executable``) in ``nproc`` local
    ranks with torchrun's elastic agent (c10d rendezvous on 127.0.0.1, a free port, no restarts).

    Returns ``{rank: return value}`` for a function. A rank that fails ends every rank
    and raises :class:`~aelab.exceptions.TrainingError` naming the rank that raised first and
    its message. The ranks end with the launcher, however it ends (see :func:`bind_to_launcher`);
    SIGINT raises KeyboardInterrupt and SIGTERM (SIGHUP, SIGQUIT) :class:`Stopped`, once every
    rank has stopped.
    """
    if not isinstance(nproc, (int, np.integer)) or nproc < 1:
        raise ConfigError(f"nproc must be a positive integer, got {nproc!r}.")
    import shutil
    import tempfile
    import threading
    import uuid

    from torch.distributed.elastic.multiprocessing.api import DefaultLogsSpecs, SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    threads = threads or default_threads(nproc)
    # one folder for this launch: the ranks' failure records and torch's own per-rank files (which torch
    # would leave behind in a torchelastic_* folder of its own); removed at the end, or by a later launch
    # when this launcher was killed
    _sweep_launch_folders()
    folder = tempfile.mkdtemp(prefix=f"{_LAUNCH_PREFIX}{os.getpid()}-")
    errors = os.path.join(folder, "errors")
    os.mkdir(errors)
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=int(nproc), run_id=f"aelab-{uuid.uuid4().hex[:8]}",
                          rdzv_backend="c10d", rdzv_endpoint="127.0.0.1:0", max_restarts=0, monitor_interval=0.1,
                          start_method="spawn", logs_specs=DefaultLogsSpecs(log_dir=os.path.join(folder, "torch")))
    saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "AELAB_THREADS", ENV_LAUNCHER, ENV_ERRORS)}
    os.environ["OMP_NUM_THREADS"] = os.environ["AELAB_THREADS"] = str(threads)
    os.environ[ENV_LAUNCHER], os.environ[ENV_ERRORS] = str(os.getpid()), errors
    # the agent installs its own handlers (they raise SignalException); give the caller's back afterwards
    main = threading.current_thread() is threading.main_thread()
    handlers = {sig: signal.getsignal(sig) for sig in (getattr(signal, n, None) for n in (
        "SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT")) if sig is not None} if main else {}
    # torch's elastic loggers each set their own level (LOGLEVEL): quiet every one of them, the agent's
    # "Received 15 death signal" and "failed (exitcode ...)" included; aelab says what happened once
    quiet = [logging.getLogger(n) for n in ("torch.distributed.elastic", "torch.distributed.launcher")] + [
        logging.getLogger(n) for n in list(logging.Logger.manager.loggerDict)
        if n.startswith(("torch.distributed.elastic.", "torch.distributed.launcher."))]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.CRITICAL)
    log.info("data-parallel: %d ranks x %d CPU threads", nproc, threads)
    try:
        return elastic_launch(config, entrypoint)(*args)
    except ChildFailedError as exc:
        first = _first_failure(errors)
        # a rank killed by a signal without a word (SIGKILL: the OOM killer; SIGSEGV) is the cause: the
        # others' errors follow from it; SIGTERM is what the agent sends the other ranks once one failed
        killed = sorted((f.exitcode == -signal.SIGTERM, f.timestamp, r) for r, f in exc.failures.items()
                        if f.exitcode < 0 and not os.path.exists(os.path.join(errors, f"rank-{r}.json")))
        if killed and (first is None or first.get("peer") or not killed[0][0]):
            rank = killed[0][2]
            sig = -exc.failures[rank].exitcode
            error = TrainingError(f"rank {rank} of {nproc} was killed by {_signal_name(sig)} (every rank was "
                                  "stopped and nothing was written)")
            error.rank, error.exit_code = rank, 1
            raise error from None
        if first is not None:
            rank, code = int(first["rank"]), int(first.get("exit_code", 1))
            error = TrainingError(f"rank {rank} of {nproc} failed: {first['message']} (every rank was stopped "
                                  "and nothing was written)")
        else:  # no rank wrote its failure (killed by a signal): the first that ended
            ranked = sorted(exc.failures.items(), key=lambda kv: (kv[1].exitcode != 2, kv[1].timestamp, kv[0]))
            rank, failure = ranked[0]
            code = failure.exitcode
            how = f"exit code {code}" if code >= 0 else f"signal {-code}"
            error = TrainingError(f"rank {rank} of {nproc} failed ({how}); every rank was stopped and nothing "
                                  "was written.")
        error.rank, error.exit_code = rank, code
        raise error from None
    except SignalException as exc:
        signum = int(exc.sigval)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt from None
        name = _signal_name(signum)
        raise Stopped(f"stopped by {name}; all {nproc} ranks were stopped and wrote nothing more.", signum) from None
    finally:
        for sig, handler in handlers.items():
            if handler is not None:
                signal.signal(sig, handler)
        for q, lvl in zip(quiet, levels):
            q.setLevel(lvl)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(folder, ignore_errors=True)


def _fit_rank(estimator, X, fit_kwargs: dict):
    bind_to_launcher()
    threads = int(os.environ.get("AELAB_THREADS", "1"))
    torch.set_num_threads(threads)
    with process_group() as comm:
        try:
            estimator.fit(X, **fit_kwargs)
        except Exception as exc:
            if not record_failure(comm.rank, exc):
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
    from .device import resolve_device

    if isinstance(nproc, (int, np.integer)) and nproc > 1:
        _check_fit_rows(estimator, X, int(nproc))
    states = launch(nproc, _fit_rank, (estimator, X, fit_kwargs), threads)
    config, tensors = states[0]
    device = resolve_device(estimator.device)
    estimator._fitted = Fitted.from_state(config, tensors, device, estimator.anomaly_score)
    return estimator


def _check_fit_rows(estimator, X, nproc: int, what: str = "X", option: str = "nproc=") -> None:
    """:func:`check_rows` for ``estimator.fit(X)`` in ``nproc`` ranks, before any rank starts."""
    try:
        n = len(X)
    except TypeError:  # not sized: fit's own validation reports it
        return
    fraction = getattr(estimator, "validation_fraction", 0.0)
    if not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
        return  # fit's own validation reports it
    seed = getattr(estimator, "random_state", None)
    seed = seed if isinstance(seed, (int, np.integer)) else None
    check_rows(n, nproc, fraction, seed, what=what, option=option)


def run_cli(nproc: int, argv: list[str], threads: int | None = None) -> None:
    """``aelab ARGV`` in ``nproc`` local ranks (the CLI's ``--nproc``): each rank runs the same command."""
    launch(nproc, sys.executable, ("-m", "aelab", *argv), threads)
