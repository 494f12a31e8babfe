"""One small, model-agnostic training loop (in the spirit of minGPT's trainer).

The loop knows nothing about autoencoders: it takes a ``loss_fn(batch) -> scalar``,
a source of batches per epoch and an optional validation function. Batches of
in-memory data are drawn by a random permutation of row indices of a tensor that
already lives on the training device: no DataLoader, no per-sample Python work.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from .config import TrainConfig
from .device import resolve_device  # noqa: F401 (re-exported)
from .exceptions import TrainingError

log = logging.getLogger("aelab")


def permuted_batches(X: torch.Tensor, batch_size: int, generator: torch.Generator) -> Iterable[torch.Tensor]:
    """Mini-batches of ``X`` in a fresh random order (the last, smaller batch is kept)."""
    n = X.shape[0]
    perm = torch.randperm(n, generator=generator, device=generator.device).to(X.device)
    for i in range(0, n, batch_size):
        yield X.index_select(0, perm[i : i + batch_size])


def validation_split(n: int, fraction: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``(validation rows, training rows)``: a random permutation of the n rows, cut after ``round(fraction * n)``.

    One rule for every path: an array in memory and the same rows streamed from a file
    hold out the same rows for the same seed. No validation rows when nothing would be
    left to train on.
    """
    n_val = int(round(fraction * n))
    if n_val < 1 or n - n_val < 1:
        return torch.empty(0, dtype=torch.int64), torch.arange(n)
    perm = torch.randperm(n, generator=generator)
    return perm[:n_val], perm[n_val:]


def clip_grad_norm(params: list[torch.Tensor], max_norm: float) -> None:
    """``torch.nn.utils.clip_grad_norm_`` (the same rule: scale by max_norm / (norm + 1e-6) when the
    global norm exceeds max_norm), in fewer operations on the CPU.

    PyTorch's foreach kernels are loops on the CPU: there its clip is a norm, a conversion
    and a multiply per parameter tensor every step, about a fifth of the operations of a
    dense autoencoder's step. Here: one norm of the concatenated gradients, and the
    multiplies only in the steps that clip. CUDA keeps PyTorch's fused version.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    if grads[0].device.type != "cpu":
        nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
        return
    norm = float(torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in grads])))
    coef = max_norm / (norm + 1e-6)
    if coef < 1.0:
        torch._foreach_mul_(grads, coef)


def make_optimizer(params, lr: float, weight_decay: float, device: torch.device) -> torch.optim.Optimizer:
    # The fused Adam kernel (CPU and CUDA) saves ~10% of a step against the foreach one.
    try:
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError):  # pragma: no cover - device without a fused kernel
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def train(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    batches: Callable[[int], Iterable[torch.Tensor]],
    cfg: TrainConfig,
    device: torch.device,
    val_fn: Callable[[], float] | None = None,
    progress: bool = False,
    comm=None,
    wrapped: nn.Module | None = None,
    generators: dict | None = None,
    checkpoint=None,
    resume=None,
) -> dict[str, list[float]]:
    """Train ``model`` in place and return the per-epoch history.

    ``batches(epoch)`` yields the training batches of one epoch; ``loss_fn`` maps a batch
    to the mean loss; ``val_fn()`` (optional) returns the validation loss. With early
    stopping, training ends after ``cfg.patience`` epochs without a relative improvement
    of ``cfg.min_delta`` in the monitored loss (validation if given, else training), and
    the best weights are restored.

    Data-parallel (``comm``, an :class:`aelab.distributed.Comm`): ``wrapped`` is the DDP
    module that ``loss_fn`` runs; the epoch's training loss is summed over ranks, and
    ``val_fn`` returns the loss over every rank's validation rows, so every rank takes
    the same early-stopping decision. ``checkpoint`` (an :class:`aelab.checkpoint.Checkpointer`)
    saves the state every few epochs; ``resume`` (a :class:`aelab.checkpoint.TrainState`)
    continues from one. ``generators`` names the random generators ``batches`` draws
    from, saved and restored with it.
    """
    from .checkpoint import TrainState, rng_state, set_rng_state
    from .comm import Comm

    comm = comm or Comm()
    wrapped = wrapped if wrapped is not None else model
    generators = generators or {}
    opt = make_optimizer(model.parameters(), cfg.lr, cfg.weight_decay, device)
    history: dict[str, list[float]] = {"loss": []}
    if val_fn is not None:
        history["val_loss"] = []
    best, best_state, since_best, first = math.inf, None, 0, 0
    if resume is not None:
        model.load_state_dict(resume.model)
        opt.load_state_dict(resume.optimizer)
        history = {k: list(v) for k, v in resume.history.items()}
        best, since_best, first = resume.best, resume.since_best, resume.epoch
        best_state = ({k: v.to(device) for k, v in resume.best_model.items()}
                      if resume.best_model is not None else None)
        set_rng_state(resume.rng[comm.rank], generators)
        if cfg.early_stopping and since_best >= cfg.patience:
            first = cfg.epochs  # the checkpointed run had stopped early: nothing left to train
    bar = _progress(cfg.epochs, progress)
    if bar is not None and first:
        bar.update(first)
    params = [p for p in model.parameters() if p.requires_grad]
    stopped = False
    for epoch in range(first, cfg.epochs):
        model.train()
        total = torch.zeros((), device=device)
        count = 0
        for xb in batches(epoch):  # data-parallel: every rank yields the same number of batches
            loss = loss_fn(xb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                clip_grad_norm(params, cfg.grad_clip)
            opt.step()
            total.add_(loss.detach(), alpha=xb.shape[0])
            count += xb.shape[0]
        total_sum, count = comm.sum([float(total), count])  # over ranks (one process: as it is)
        train_loss = float(total_sum) / max(count, 1)
        if not math.isfinite(train_loss):
            raise TrainingError(
                f"the training loss became {train_loss} in epoch {epoch + 1}. Likely causes: a learning rate "
                f"that is too high (lr={cfg.lr}; try 10x smaller), unscaled inputs with huge values "
                "(use scaler='standard'), or extreme values in the data."
            )
        history["loss"].append(train_loss)
        monitored = train_loss
        if val_fn is not None:
            model.eval()
            with torch.no_grad():
                monitored = float(val_fn())
            history["val_loss"].append(monitored)
        if bar is not None:
            bar.set_postfix(loss=f"{train_loss:.4g}", **({"val": f"{monitored:.4g}"} if val_fn else {}))
            bar.update(1)
        if cfg.early_stopping:
            if monitored < best - cfg.min_delta * abs(best) if math.isfinite(best) else monitored < best:
                best, since_best = monitored, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                since_best += 1
                if since_best >= cfg.patience:
                    log.info("early stopping after epoch %d (best monitored loss %.4g)", epoch + 1, best)
                    stopped = True
        if checkpoint is not None and (stopped or checkpoint.due(epoch, epoch + 1 == cfg.epochs)):
            state = TrainState(epoch=epoch + 1, history=history, best=best, since_best=since_best,
                               model=model.state_dict(), optimizer=opt.state_dict(), best_model=best_state)
            checkpoint.save(state, rng_state(generators))
        if stopped:
            break
    if bar is not None:
        bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="training", unit="epoch", leave=False)
