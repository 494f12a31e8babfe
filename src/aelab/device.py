"""Where models run: the one rule that turns "auto", "cpu" or "cuda" into a torch.device (ground floor)."""

from __future__ import annotations

import os

import torch

from .exceptions import ConfigError

__all__ = ["resolve_device"]


def resolve_device(device: str) -> torch.device:
    """``"auto"``: $AELAB_DEVICE when set (e.g. ``cpu`` to keep a CUDA machine's GPU free), else CUDA when present."""
    if device == "auto":
        device = os.environ.get("AELAB_DEVICE", "").strip() or ("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' was requested but CUDA is not available here; use device='auto' or 'cpu'.")
    return dev
