"""Quantisation-aware fine-tuning: the firmware graph trained with its casts in the forward pass and
straight-through gradients, written back into the network it came from."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from ..exceptions import ConfigError
from .emulate import Context, check_rows, run
from .fixed import Precision, weight_type
from .ir import fitted_state, firmware_score, graph, network_input

__all__ = ["finetune"]


class _STE(torch.autograd.Function):
    """Cast forward, identity backward (the straight-through estimator)."""

    @staticmethod
    def forward(ctx, x, p):
        return p.quantize(x).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        return g, None


def finetune(est_or_fitted, X, precision, epochs: int = 5, lr: float = 3e-4, batch_size: int = 1024,
             accum: str = "auto", weight_precision=None, random_state=None):
    """Quantisation-aware fine-tuning: train the folded network with its input, weights, biases and
    activations cast to ``precision`` in the forward pass and straight-through gradients.

    X: training rows (normal data, as for ``fit``). Batch norm is folded into the Linear layers
    first (and left as identity), so the trained float weights are what the firmware casts.
    Returns a new fitted estimator (or a new Fitted when given one) whose training scores,
    statistics and threshold are recomputed; its fixed-point emulation at ``precision`` is what
    it was trained for, its float scores are the shadow weights' and may differ.
    """
    from ..fitted import post_fit_statistics
    from ..thresholds import threshold_from_contamination, threshold_from_fpr

    f = fitted_state(est_or_fitted)
    prec = Precision.of(precision, weight_precision, accum)
    p = prec.data
    g = graph(f)
    X = check_rows(f, X)
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ConfigError(f"epochs must be a positive integer, got {epochs!r}.")
    gen = torch.Generator().manual_seed(int(np.random.default_rng(random_state).integers(2**31 - 1)))
    params = [nn.Parameter(t.float().clone()) for layer in g.weighted for t in (layer.W, layer.b)]
    trained = g.with_weights(params)
    xs, mask = network_input(f, X, None, g)
    lo, hi = p.range
    xs = xs.clamp(lo, hi).float()
    mask = mask if mask is not None else torch.zeros_like(xs, dtype=torch.bool)
    opt = torch.optim.Adam(params, lr=lr)
    pr = weight_type(prec.weight)  # the weights are rounded as round_weights rounds them
    ctx = Context(prec, fq=lambda t: _STE.apply(t, p), wq=lambda t: _STE.apply(t, pr), exact=False)
    for _ in range(int(epochs)):
        for idx in torch.randperm(len(xs), generator=gen).split(int(batch_size)):
            x = ctx.fq(xs[idx])
            out = run(trained.layers, x, ctx)
            loss = firmware_score(g, x, out, mask[idx] if g.target != "mu" else None).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    model = copy.deepcopy(f.model).cpu()
    with torch.no_grad():
        for layer in trained.weighted:  # back into the module each layer came from, by name
            m = model.get_submodule(layer.source)
            m.weight[: len(layer.W)] = layer.W  # a VAE's last Linear: only the mean's rows were trained
            if m.bias is not None:
                m.bias[: len(layer.b)] = layer.b
            if layer.folded:  # folded into the layer: the batch norm is now the identity
                bn = model.get_submodule(layer.folded)
                bn.running_mean.zero_(), bn.running_var.fill_(1.0 - bn.eps), bn.weight.fill_(1.0), bn.bias.zero_()
    draft = f.replace(model=model.to(f.device).eval(),
                      history={**f.history, "finetune": {"precision": str(p), "epochs": int(epochs)}})
    st = post_fit_statistics(draft.model, X, lambda X_, fn, dt: draft.map(X_, fn, "finetune", dt), draft.score,
                             f.recon_kind)
    scores = st.pop("decision_scores")
    draft = draft.replace(**st)
    scores = draft.scores(X, draft.score, "finetune") if scores is None else scores
    rule = f.threshold_rule or {}
    threshold = (threshold_from_fpr(scores, rule["fpr"]) if "fpr" in rule
                 else threshold_from_contamination(scores, rule.get("contamination", 0.1)))
    draft = draft.replace(decision_scores=scores, threshold=float(threshold),
                          threshold_rule={**rule, "n": int(len(scores))})
    if isinstance(est_or_fitted, type(f)):
        return draft
    return type(est_or_fitted).from_fitted(draft, **est_or_fitted.get_params(deep=False))
