"""Computational cost of a model: parameters, MACs, activation memory and latency.

The counts come from one forward pass of a single zero sample with forward hooks on
the *leaf* modules (modules without children), so they see what actually runs,
including layers called several times. Operations written as functions inside a
``forward`` (``torch.cat``, the residual ``+``, ``F.pad``) are not modules and are not
counted; they cost no multiplications.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence

import torch
from torch import nn

from ..exceptions import ConfigError, NotFittedError

__all__ = ["cost", "format_cost"]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_POOL = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)


def _tensors(obj) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for item in obj for t in _tensors(item)]
    return []


def _macs(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int | None:
    """Multiply-accumulates of one call (batch of 1), or None if not a MAC layer."""
    if isinstance(module, _CONV):
        return out.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)
    if isinstance(module, _CONV_T):
        return inp.numel() * (module.out_channels // module.groups) * math.prod(module.kernel_size)
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    if isinstance(module, nn.Bilinear):
        return out.numel() * module.in1_features * module.in2_features
    return None


def _other_ops(module: nn.Module, out: torch.Tensor) -> int:
    """One operation per output element; pooling counts its whole window."""
    if isinstance(module, _POOL):
        k = module.kernel_size
        return out.numel() * (math.prod(k) if isinstance(k, tuple) else k ** (out.dim() - 2))
    return out.numel()


def _resolve(model_or_estimator, input_shape):
    obj = model_or_estimator
    if isinstance(obj, nn.Module):
        if input_shape is None:
            raise ConfigError(
                "input_shape is required for a bare nn.Module: pass the shape of one "
                "sample without the batch dimension, e.g. input_shape=(1, 28, 28)."
            )
        return obj, input_shape
    model = getattr(obj, "model_", None)
    if isinstance(model, nn.Module):
        if input_shape is None:
            input_shape = getattr(obj, "model_input_shape_", None)
        if input_shape is None:
            raise ConfigError(
                f"{type(obj).__name__} has no model_input_shape_; pass input_shape, the "
                f"shape of one sample the model takes (without the batch dimension)."
            )
        return model, input_shape
    if hasattr(obj, "fit"):
        raise NotFittedError(
            f"{type(obj).__name__} is not fitted (it has no model_); call fit before cost."
        )
    raise ConfigError(
        f"cost needs an nn.Module or a fitted estimator with a model_ attribute; got "
        f"{type(obj).__name__}."
    )


def cost(model_or_estimator, input_shape: int | Sequence[int] | None = None,
         latency_runs: int = 10) -> dict:
    """Parameters, MACs, activation memory and latency of one sample through a model.

    Parameters
    ----------
    model_or_estimator : nn.Module or fitted estimator
        A module, or an object with a ``model_`` module (aelab estimators after
        ``fit``), whose ``model_input_shape_`` gives the default ``input_shape``.
    input_shape : int or sequence of int, optional
        Shape of one sample *without* the batch dimension, e.g. ``(1, 28, 28)`` or
        ``784``. Required for a bare module.
    latency_runs : int, default=10
        Timed forward passes for the latency (after two warm-up passes); 0 skips the
        measurement and reports ``latency_ms=None``.

    Returns
    -------
    dict
        ``params``
            Number of parameters: exactly ``sum(p.numel() for p in model.parameters())``
            (weights and biases; shared parameters once).
        ``macs``
            Multiply-accumulates per sample, from the layers that run: a convolution
            costs ``out_h * out_w * out_c * (in_c / groups) * kh * kw``, a linear
            layer ``in * out`` (bias additions are not counted). One MAC is often
            quoted as two FLOPs.
        ``other_ops``
            Operations without multiply-accumulate, per sample: one per output element
            of activations, normalisation, upsampling and other leaf layers, and
            ``window`` per output element of pooling.
        ``activation_bytes``
            Activation memory per sample: the total size in bytes of the output
            tensors of all leaf modules in one forward pass, with outputs that share
            storage with their input (``nn.Identity``, ``nn.Flatten``, in-place
            activations) not counted again. The input is not counted. It is the memory
            a training step keeps for the backward pass, or an FPGA dataflow design
            must buffer; it is not the peak memory of inference, which frees
            tensors as it goes.
        ``latency_ms``
            Median wall-clock time of one forward pass with batch size 1 in eval mode
            under ``torch.no_grad()``, on this machine and device, in milliseconds.
        ``input_shape``
            The per-sample input shape used.

    Notes
    -----
    The model runs in eval mode on the device and dtype of its first parameter and is
    put back in its previous mode afterwards. A forward returning a dataclass (the VAE)
    is fine: only the layer outputs are inspected.
    """
    model, input_shape = _resolve(model_or_estimator, input_shape)
    shape = (int(input_shape),) if isinstance(input_shape, int) else tuple(int(s) for s in input_shape)
    if latency_runs < 0:
        raise ConfigError(f"latency_runs must be >= 0; got {latency_runs}.")
    # the probe goes where the model lives: a buffer-only model (PCA) has no parameters
    first = next(model.parameters(), None)
    first = first if first is not None else next(model.buffers(), None)
    x = torch.zeros((1, *shape), dtype=first.dtype if first is not None else torch.float32,
                    device=first.device if first is not None else "cpu")
    counts = {"macs": 0, "other_ops": 0, "activation_bytes": 0}

    def hook(module, inputs, output):
        ins = _tensors(inputs)
        in_storages = {t.untyped_storage().data_ptr() for t in ins}
        for out in _tensors(output):
            macs = _macs(module, ins[0], out) if ins else None
            if macs is None:
                counts["other_ops"] += _other_ops(module, out)
            else:
                counts["macs"] += macs
            if out.untyped_storage().data_ptr() not in in_storages:
                counts["activation_bytes"] += out.numel() * out.element_size()

    was_training = model.training
    handles = [m.register_forward_hook(hook) for m in model.modules() if not any(m.children())]
    model.eval()
    try:
        from torch.utils.flop_counter import FlopCounterMode

        with torch.no_grad():
            # torch's FLOP counter sees every product, including functional ones (PCA's
            # matmuls) that no layer hook sees; one multiply-accumulate = two FLOPs
            with FlopCounterMode(display=False) as flops:
                model(x)
            counts["macs"] = max(counts["macs"], flops.get_total_flops() // 2)
            for h in handles:
                h.remove()
            handles = []
            latency = _latency(model, x, latency_runs)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {
        "params": sum(p.numel() for p in model.parameters()),
        **counts,
        "latency_ms": latency,
        "input_shape": shape,
    }


def _latency(model: nn.Module, x: torch.Tensor, runs: int) -> float | None:
    if runs == 0:
        return None
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    times = []
    for i in range(runs + 2):
        sync()
        start = time.perf_counter()
        model(x)
        sync()
        if i >= 2:  # the first two passes warm up caches and allocators
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _si(value: float, unit: str = "", base: int = 1000) -> str:
    prefixes = ("", "K", "M", "G", "T") if base == 1000 else ("", "Ki", "Mi", "Gi", "Ti")
    i = 0
    while abs(value) >= base and i < len(prefixes) - 1:
        value /= base
        i += 1
    return f"{value:.1f} {prefixes[i]}{unit}".rstrip() if i else f"{value:g} {unit}".rstrip()


def format_cost(d: dict) -> str:
    """Format the dict returned by :func:`cost` as a small aligned table.

    Parameters
    ----------
    d : dict
        Output of :func:`cost`.

    Returns
    -------
    str
        One line per quantity: name, exact value, and a human-readable value.
    """
    latency = d.get("latency_ms")
    rows = [
        ("input shape", "x".join(map(str, d["input_shape"])) if "input_shape" in d else "?", ""),
        ("parameters", f"{d['params']:,}", _si(d["params"])),
        ("MACs / sample", f"{d['macs']:,}", _si(d["macs"])),
        ("other ops / sample", f"{d.get('other_ops', 0):,}", _si(d.get("other_ops", 0))),
        ("activations / sample", f"{d['activation_bytes']:,} B", _si(d["activation_bytes"], "B", 1024)),
        ("latency / sample", "not measured" if latency is None else f"{latency:.3f} ms", ""),
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    return "\n".join(f"{a:<{w0}}  {b:>{w1}}  {c}".rstrip() for a, b, c in rows)
