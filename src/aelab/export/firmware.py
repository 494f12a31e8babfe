"""The registered score heads on what a firmware computes: one pass of the whole network in fixed point
(the PyTorch emulation, :mod:`aelab.export.emulate`, or hls4ml's compiled C model, :mod:`aelab.export.hls`),
scored by the same head module Python scores with (:meth:`aelab.fitted.Fitted.head`).

What runs in fixed point: the cast scaled input, every layer of the network (the graph of
:func:`aelab.export.ir.graph` with ``whole=True``), hence the reconstruction and the code (the encoder's
last Dense, read at the full width of its accumulator: ``z``, or a VAE's ``mu`` and ``logvar``).
What runs in float64 (float32 where the head itself works in float32) after the firmware: the head, on
those fixed-point values: the error sums and means, the code's Mahalanobis distance, |mu|, the KL and
the ELBO, and the neighbour distance of the fixed-point input to the reference rows (which are kept in
float32 scaled units, as in Python). The model's own :meth:`~aelab.models.AutoencoderNet.assemble`
splits the code, crops a padded reconstruction and applies ``mask_zeros`` (on the raw input's zeros,
as the firmware score does), so nothing of the model or the score is written twice.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..kinds import kind_of

__all__ = ["FirmwarePass", "head_scores", "check_scores"]


@dataclass
class FirmwarePass:
    """One pass of the whole network on some rows, float64 tensors in the network's (padded) layout:
    ``x`` the cast scaled input, ``absent`` the raw input's zeros (``mask_zeros`` models, else None),
    ``code`` the encoder's output and ``output`` the network's (the reconstruction)."""

    x: torch.Tensor
    absent: torch.Tensor | None
    code: torch.Tensor
    output: torch.Tensor

    @staticmethod
    def cat(parts: list[FirmwarePass]) -> FirmwarePass:
        absent = None if parts[0].absent is None else torch.cat([p.absent for p in parts])
        return FirmwarePass(torch.cat([p.x for p in parts]), absent, torch.cat([p.code for p in parts]),
                            torch.cat([p.output for p in parts]))


def check_scores(f, score) -> list[str]:
    """``score`` (a name or a sequence of names) as a list, each checked and its head built (ConfigError
    before any firmware work for a score the model does not offer or lacks the statistics of)."""
    names = [score] if isinstance(score, str) or not isinstance(score, Sequence) else list(score)
    for name in names:
        kind_of(f.model_cfg).check_score(name, "this model")  # ConfigError for a score the kind does not offer
        f.head(name)  # ConfigError for missing statistics
    return names


@torch.no_grad()
def head_scores(f, p: FirmwarePass, score: str) -> np.ndarray:
    """The head of ``score`` (``f.head(score)``, the module Python scores with) on a firmware pass (float64)."""
    head = f.head(score)
    if next(iter(head.buffers()), torch.empty(0)).device.type != "cpu":
        head = copy.deepcopy(head).cpu()
    model = f.model
    x = model.crop(p.x)
    absent = None if p.absent is None else model.crop(p.absent)
    out = model.assemble(x, p.code, p.output, absent)
    return head(x, out).double().numpy()
