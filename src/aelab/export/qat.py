"""Quantisation-aware fine-tuning, as torch.ao does it: the fitted network itself, with fake-quantised
layers, trained by aelab's one training loop, converted, and handed back through the one post-fit pass.

* **prepare**: a copy of the network with batch norm folded into the layer before it (the folded
  weights of the export graph, :func:`aelab.export.ir.graph`, written back by module name) and left
  as the identity. In the copy that trains, those identity batch norms are ``nn.Identity``, the
  weights and biases are parametrised by their cast to the weight type (round to nearest, saturate:
  what :func:`~aelab.export.fixed.round_weights` does offline), and forward hooks cast the input
  and the output of every activation, pooling and upsampling (and, with ``accum="same"``, every
  Dense and Conv2d result) to the data type, each by the emulation's own handler
  (:func:`aelab.export.emulate.apply`). Gradients pass straight through the casts.
* **train**: :func:`aelab.training.train`, the loop ``fit`` uses, on the firmware score
  (:func:`aelab.export.ir.firmware_score`: what the firmware computes), with the validation split
  drawn as ``fit`` draws it.
* **convert**: the parametrisations are removed leaving the cast weights, and the trained state is
  loaded by name into the folded network: the returned module holds the weights the firmware holds.
* **finish**: :func:`aelab.postfit.finish`, the pass ``fit`` ends with, on the converted module:
  code Gaussian, reconstruction means, neighbour reference, training scores, calibration scores of
  the held-out rows, and the threshold by the model's rule. ``decision_function``, the training
  scores and the threshold therefore come from one module.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from ..exceptions import ConfigError
from .emulate import Context, apply, check_rows
from .fixed import Precision, weight_type
from .ir import Activation, Conv, Dense, Pool, Upsample, fitted_state, firmware_score, graph

__all__ = ["finetune"]


class _STE(torch.autograd.Function):
    """Cast forward, identity backward (the straight-through estimator)."""

    @staticmethod
    def forward(ctx, x, p):
        return p.quantize(x).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        return g, None


class _Cast(nn.Module):
    """A weight's parametrisation: its cast to ``p`` (straight-through)."""

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, w):
        return _STE.apply(w, self.p)


def _layer(m: nn.Module):
    """The export graph's layer of an unweighted module that the firmware casts after (None: none)."""
    if isinstance(m, (nn.ReLU, nn.Sigmoid, nn.Tanh)):
        return Activation({nn.ReLU: "relu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh"}[type(m)])
    if isinstance(m, nn.LeakyReLU):
        return Activation("leaky_relu", float(m.negative_slope))
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
        return Pool("max" if isinstance(m, nn.MaxPool2d) else "avg", int(k))
    if isinstance(m, nn.Upsample):
        return Upsample(int(m.scale_factor))
    return None


def _weighted(m: nn.Module):
    """The export graph's layer of a Linear or Conv2d module, with its (cast) weights."""
    if isinstance(m, nn.Linear):
        return Dense(m.weight, m.bias)
    b = m.bias if m.bias is not None else torch.zeros(m.out_channels, dtype=m.weight.dtype, device=m.weight.device)
    return Conv(m.weight, b, tuple(m.padding))


def _fold(f, g) -> nn.Module:
    """A copy of the network with each batch norm folded into the layer before it (by module name) and
    left as the identity: the same outputs in evaluation, and the weights the firmware casts."""
    model = copy.deepcopy(f.model).eval()
    with torch.no_grad():
        for layer in g.weighted:
            m = model.get_submodule(layer.source)
            if layer.folded is None:
                continue
            if m.bias is None:
                raise ConfigError(f"fine-tuning folds the batch norm {layer.folded} into {layer.source}, which has "
                                  "no bias to hold it; fit with batch_norm=False for fixed-point fine-tuning.")
            m.weight[: len(layer.W)] = layer.W.to(m.weight.dtype)  # a VAE's last Linear: the mean's rows
            m.bias[: len(layer.b)] = layer.b.to(m.bias.dtype)
            bn = model.get_submodule(layer.folded)
            bn.running_mean.zero_(), bn.running_var.fill_(1.0 - bn.eps), bn.weight.fill_(1.0), bn.bias.zero_()
    return model


class _Prepared:
    """The training copy of a folded network with its fake quantisation (prepare / convert)."""

    def __init__(self, model: nn.Module, g, prec: Precision, halves: list[str]):
        self.net = copy.deepcopy(model)
        p = prec.data
        lo, hi = p.range
        self.ctx = Context(prec, fq=lambda t: _STE.apply(t, p))  # the weights: cast by their parametrisation
        self.cast_input = lambda x: self.ctx.fq(x.clamp(lo, hi))  # a trigger saturates its inputs
        folded = {layer.folded for layer in g.weighted if layer.folded}
        for name in folded:  # the identity in training too (a batch norm in training mode would renormalise)
            parent, _, child = name.rpartition(".")
            setattr(self.net.get_submodule(parent), child, nn.Identity())
        pw = weight_type(prec.weight)  # the weights are cast as round_weights casts them
        self.hooks = [self.net.get_submodule(halves[0]).register_forward_pre_hook(
            lambda m, args: (self.cast_input(args[0]), *args[1:]))]
        self.weighted = []
        for half in halves:
            for m in self.net.get_submodule(half).modules():
                if isinstance(m, (nn.Linear, nn.Conv2d)):
                    for name in ("weight", "bias"):
                        if getattr(m, name) is not None:
                            parametrize.register_parametrization(m, name, _Cast(pw))
                    self.weighted.append(m)
                    if self.ctx.same:  # accum="same": products and sums cast, by the emulation's handler
                        self.hooks.append(m.register_forward_hook(
                            lambda m, args, out: apply(_weighted(m), args[0], self.ctx)))
                elif (layer := _layer(m)) is not None:  # the emulation's handler, on the module's input
                    self.hooks.append(m.register_forward_hook(
                        lambda m, args, out, layer=layer: apply(layer, args[0], self.ctx)))

    def convert(self, into: nn.Module) -> nn.Module:
        """Remove the fake quantisation, keeping the cast weights, and load the state into ``into`` by name."""
        for h in self.hooks:
            h.remove()
        for m in self.weighted:
            for name in list(m.parametrizations.keys()):
                parametrize.remove_parametrizations(m, name, leave_parametrized=True)
        result = into.load_state_dict(self.net.state_dict(), strict=False)
        if result.unexpected_keys:  # pragma: no cover - the training copy has the folded network's names
            raise RuntimeError(f"fine-tuning produced unknown parameters {result.unexpected_keys}")
        return into.eval()


def _seed(random_state) -> int:
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        return int(random_state)
    return int(np.random.default_rng(random_state).integers(2**31 - 1))


def finetune(est_or_fitted, X, precision, epochs: int = 5, lr: float = 3e-4, batch_size: int = 1024,
             accum: str = "auto", weight_precision=None, random_state=None, validation_fraction=None):
    """Quantisation-aware fine-tuning: train the network with its input, weights, biases and activations
    cast to ``precision`` in the forward pass and straight-through gradients.

    X: training rows (normal data, as for ``fit``). The network's batch norm is folded into the
    layer before it first (and left as the identity); the returned model holds the weights cast to
    the weight type, so its fixed-point emulation at ``precision`` is what it was trained for, and
    its float scores are those of the same weights. ``validation_fraction`` (default: the
    estimator's, else 0.1) rows of X are held out as ``fit`` holds them out: they give the
    validation loss (``history_["finetune"]``) and the calibration scores. The post-fit statistics,
    training scores and threshold are recomputed by ``fit``'s own pass (:func:`aelab.postfit.finish`)
    under the model's threshold rule (its contamination, or a false-positive rate: then the
    conformal threshold of the calibration rows). Returns a new estimator through
    ``type(est).from_fitted`` (a new Fitted when given one).
    """
    from .. import conformal
    from ..comm import Comm
    from ..config import TrainConfig
    from ..postfit import finish
    from ..training import permuted_batches, train, validation_split

    f = fitted_state(est_or_fitted)
    prec = Precision.of(precision, weight_precision, accum)
    g = graph(f)
    X = check_rows(f, X)
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ConfigError(f"epochs must be a positive integer, got {epochs!r}.")
    est = None if isinstance(est_or_fitted, type(f)) else est_or_fitted
    if validation_fraction is None:
        validation_fraction = getattr(est, "validation_fraction", 0.1)
    if not 0 <= validation_fraction < 1:
        raise ConfigError(f"validation_fraction must be in [0, 1), got {validation_fraction!r}.")
    n, seed, dev, owner = len(X), _seed(random_state), f.device, "finetune"

    # prepare: the folded network, and its training copy with the fake quantisation
    model = _fold(f, g)
    halves = ["encoder"] if g.target == "mu" else ["encoder", "decoder"]
    qat = _Prepared(model, g, prec, halves)
    for name, child in qat.net.named_children():  # a VAE's firmware is its encoder's mean: the rest stays
        child.requires_grad_(name in halves)
    sigmoid = g.target != "mu" and f.model_cfg.output == "sigmoid"
    mask_zeros = bool(f.model_cfg.mask_zeros)

    def per_row(x):
        """The firmware score of each row under the fake quantisation (emulate's arithmetic)."""
        xq = qat.cast_input(x)
        if g.target == "mu":
            return firmware_score(g, xq, qat.net.encode(x)[0], None)
        x_hat = qat.net(x).x_hat
        x_hat = qat.ctx.fq(x_hat) if sigmoid else x_hat  # the output sigmoid is functional in the model
        return firmware_score(g, xq, x_hat, (x == 0) if mask_zeros else None)

    # train: the loop fit uses, with fit's validation split
    gen = torch.Generator(device="cpu").manual_seed(seed)
    val_idx, train_idx = validation_split(n, float(validation_fraction), gen)
    Xn = torch.from_numpy(f.to_net(X)).to(dev)
    Xt, Xv = (Xn[train_idx.to(dev)], Xn[val_idx.to(dev)]) if len(val_idx) else (Xn, Xn[:0])
    del Xn
    cfg = TrainConfig(epochs=int(epochs), batch_size=int(batch_size), lr=float(lr), weight_decay=0.0,
                      validation_fraction=float(validation_fraction), early_stopping=False, grad_clip=None)

    def val_fn():
        return float(sum(per_row(Xv[i : i + 4096]).double().sum() for i in range(0, len(Xv), 4096))) / len(Xv)

    history = train(qat.net, lambda xb: per_row(xb).mean(), lambda epoch: permuted_batches(Xt, cfg.batch_size, gen),
                    cfg, dev, val_fn if len(Xv) else None, generators={"batches": gen})

    # convert, then the post-fit pass fit makes
    model = qat.convert(model)
    rule = dict(f.threshold_rule or {})
    contamination = rule.get("contamination", 0.1)
    novelty = bool(est.novelty) if est is not None and hasattr(est, "novelty") else \
        bool((f.calibration_info or {}).get("clean"))
    hashes = [conformal.row_hashes(X)]
    if f.fit_hashes is not None and f.fit_hash_stride == 1:  # the network still holds what it learnt at fit
        hashes.append(np.asarray(f.fit_hashes))
    draft = f.replace(model=model, history={**f.history, "finetune": {
        "precision": str(prec), "epochs": int(epochs), **{k: [float(v) for v in h] for k, h in history.items()}}})
    # held-out rows that were rows of the original fit are in-sample for the weights fine-tuning started
    # from: they are left out of the calibration rows (none left: est.calibrate(X_normal) gives some)
    clean = ~conformal.fit_rows(X, f.fit_hashes, f.fit_hash_stride)
    draft = finish(draft, X, n, seed, owner=owner, comm=Comm(), hashes=hashes, contamination=contamination,
                   fraction=float(validation_fraction), novelty=novelty,
                   knn_seed=seed, calibration_rows=clean)
    if "fpr" in rule:  # a false-positive rate: the conformal threshold of the calibration rows
        draft = draft.replace(**conformal.fpr_threshold(draft, None, rule["fpr"], None))
    if est is None:
        return draft
    return type(est).from_fitted(draft, **est.get_params(deep=False))
