"""The estimators: :class:`Autoencoder`, :class:`VAE` and :class:`PCA`.

Parameters and orchestration only: validation -> layout -> scaling -> network ->
training loop -> scores and threshold, each step a call into its own module. They
follow scikit-learn's contract (``__init__`` only stores parameters, learned state ends
in ``_``, ``fit`` returns ``self``) and PyOD's anomaly vocabulary (``decision_scores_``,
``threshold_``, ``predict`` giving 0 for normal and 1 for anomalous).

Everything ``fit`` learns is one :class:`~aelab.fitted.Fitted`, built in local variables
and assigned last: a fit that fails leaves the estimator exactly as it was. The public
fitted attributes are read-only views of it.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np
import torch

from . import losses
from ._params import ParamsBase
from ._columns import feature_names
from ._validation import check_array, check_is_fitted, input_dtype, is_source, iter_checked_chunks
from .config import ModelConfig, TrainConfig
from . import conformal
from .conformal import row_hashes
from .exceptions import ConfigError, DataError, NotFittedError
from .fitted import EVAL_ROWS, Fitted, check_latent
from .layout import INPUT_KINDS, Layout, intensity_images, resolve_layout
from .models import build_model
from .postfit import finish
from .preprocessing import (INTENSITY, NOISE_TYPES, SCALERS, RunningStats, Scaler, corrupt, resolve_intensity,
                            resolve_scaler)
from .scoring import check_score, resolve_score
from .device import resolve_device
from .training import permuted_batches, train, validation_split

__all__ = ["Autoencoder", "VAE", "PCA", "load"]

#: A streamed fit keeps its validation rows in memory up to this size, and re-reads them each epoch above it.
VAL_CACHE_BYTES = 64 * 2**20

#: batch_size="auto" takes 64 rows a step (and lr="auto" 2e-3) above this many rows, 32 (1e-3) up to it.
WIDE_BATCH_ROWS = 5000

#: Parameters renamed in 0.2: old name -> new name (the old one still works, with a FutureWarning).
RENAMED_PARAMS = {"score": "anomaly_score"}


def _accepts_renamed(init):
    """Let ``__init__`` take the old names of :data:`RENAMED_PARAMS`, with a FutureWarning.

    The wrapper keeps the signature of ``init`` (``inspect.signature`` follows
    ``__wrapped__``), so ``get_params``, ``clone`` and scikit-learn see only the new names.
    """

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        init(self, *args, **self._renamed(kwargs))

    return wrapper


def _positive_int(n) -> bool:
    return not isinstance(n, bool) and isinstance(n, (int, np.integer)) and n >= 1


def _in_threads(method):
    """Run ``method`` with ``torch.set_num_threads(self.n_threads)``, restoring the caller's setting after."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        n = self.n_threads
        if n is None or not _positive_int(n):
            return method(self, *args, **kwargs)  # None, or a bad value that fit's validation reports
        previous = torch.get_num_threads()
        torch.set_num_threads(int(n))
        try:
            return method(self, *args, **kwargs)
        finally:
            torch.set_num_threads(previous)

    return wrapper


def _view(name: str, doc: str, get):
    def fget(self):
        f = self.__dict__.get("_fitted")
        if f is None:
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet, so it has no {name}. "
                                 "Call 'fit' with training data first.")
        return get(f)

    return property(fget, doc=doc)


#: The public fitted attributes: name -> (what it is, how to read it from the Fitted).
_VIEWS = {
    "fitted_": ("the whole fitted state (aelab.fitted.Fitted)", lambda f: f),
    "model_": ("the trained network (an nn.Module)", lambda f: f.model),
    "scaler_": ("the input scaling fitted on the training data", lambda f: f.scaler),
    "model_cfg_": ("the network's resolved configuration", lambda f: f.model_cfg),
    "device_": ("the torch device of the network", lambda f: f.device),
    "input_kind_": ('"table" or "image": how the layout rule read X', lambda f: f.layout.kind),
    "input_shape_": ("per-sample shape seen at fit", lambda f: f.layout.input_shape),
    "channels_last_": ("images given as (n, h, w, c)", lambda f: f.layout.channels_last),
    "n_features_in_": ("values per sample", lambda f: f.layout.n_features),
    "model_input_shape_": ("per-sample shape the network takes", lambda f: f.net_shape),
    "recon_kind_": ("reconstruction term of the VAE's ELBO", lambda f: f.recon_kind),
    "score_": ("the resolved default anomaly score", lambda f: f.score),
    "latent_mean_": ("mean of the training codes", lambda f: f.latent_mean),
    "latent_cov_": ("covariance of the training codes", lambda f: f.latent_cov),
    "recon_means_": ("training means of the reconstruction scores", lambda f: f.recon_means),
    "decision_scores_": ("default anomaly score of every training row", lambda f: f.decision_scores),
    "threshold_": ("scores above it are flagged by predict", lambda f: f.threshold),
    "threshold_rule_": ("how threshold_ was set", lambda f: f.threshold_rule),
    "history_": ("per-epoch training and validation loss", lambda f: f.history),
    "n_epochs_config_": ("the epoch limit the fit ran under", lambda f: f.n_epochs_config),
    "calibration_scores_": ("sorted scores of rows the network did not train on (conformal p-values)",
                            lambda f: f.calibration),
    "contamination_": ("contamination='auto': the estimated share of anomalies in the training rows",
                       lambda f: f.contamination_estimate),
    "feature_names_in_": ("column names seen at fit, when all were strings (else no such attribute)",
                          lambda f: _feature_names_in(f)),
}


def _feature_names_in(f) -> np.ndarray:
    if f.feature_names is None:  # scikit-learn's convention: the attribute exists only with names
        raise AttributeError("feature_names_in_: the model was fitted on data without column names.")
    return np.asarray(f.feature_names, dtype=object)


class _Base(ParamsBase):
    """Shared machinery. Subclasses define ``__init__`` (parameters only), ``_build`` and ``_train``."""

    _variational = False
    _closed_form = False  # True: fitting draws nothing at random (PCA)
    _renamed_params = RENAMED_PARAMS

    @classmethod
    def from_fitted(cls, fitted: Fitted, **params):
        """An estimator with ``params`` that holds the fitted state ``fitted`` (an :class:`aelab.fitted.Fitted`):
        how loading, data-parallel fitting and fine-tuning hand back a fitted model."""
        if not isinstance(fitted, Fitted):
            raise ConfigError(f"from_fitted takes an aelab.fitted.Fitted, got {type(fitted).__name__}.")
        est = cls(**params)
        est._fitted = fitted
        return est

    def __sklearn_is_fitted__(self) -> bool:
        return self.__dict__.get("_fitted") is not None

    def _state(self) -> Fitted:
        check_is_fitted(self)
        return self.__dict__["_fitted"]

    # ------------------------------------------------------------------ public API
    @_in_threads
    def transform(self, X) -> np.ndarray:
        """Latent codes, shape (n, latent_dim); for the VAE, the posterior mean mu."""
        f = self._state()
        return f.map(X, lambda x: f.model.encode(x)[0], type(self).__name__, np.float32)

    @_in_threads
    def inverse_transform(self, Z) -> np.ndarray:
        """Decode codes ``Z`` (n, latent_dim) to data in the input's shape and units."""
        f = self._state()
        Z = check_latent(Z, f.model_cfg.latent_dim)
        with torch.no_grad():
            out = [f.model.decode(torch.from_numpy(Z[i : i + EVAL_ROWS]).to(f.device)).cpu().numpy()
                   for i in range(0, Z.shape[0], EVAL_ROWS)]
        return f.from_net(np.concatenate(out))

    @_in_threads
    def reconstruct(self, X) -> np.ndarray:
        """``inverse_transform(transform(X))``: reconstructions in the input's shape and units."""
        f = self._state()
        return f.from_net(f.map(X, lambda x: f.model(x).x_hat, type(self).__name__))

    @_in_threads
    def decision_function(self, X, score: str | None = None) -> np.ndarray:
        """Anomaly score per sample; HIGHER means MORE ANOMALOUS.

        ``score`` overrides the estimator's default (``score_``); see :mod:`aelab.scoring`.
        """
        f = self._state()
        score = score or f.score
        check_score(score, self._variational, type(self).__name__)
        return f.scores(X, score, type(self).__name__)

    def score_samples(self, X) -> np.ndarray:
        """scikit-learn convention (higher = more normal): ``-decision_function(X)``."""
        return -self.decision_function(X)

    @_in_threads
    def score(self, X, y=None) -> float:
        """Goodness of fit on ``X``, higher is better (scikit-learn's model-selection convention).

        The negative mean reconstruction error in the scaled units the network sees
        (``-mean(decision_function(X, score="mse"))``); for the VAE the mean ELBO
        (``-mean(decision_function(X, score="elbo"))``), a lower bound on the
        log-likelihood. ``GridSearchCV`` and ``cross_validate`` use it when no ``scoring``
        is given. ``y`` is ignored.
        """
        return -float(np.mean(self.decision_function(X, score="elbo" if self._variational else "mse")))

    @_in_threads
    def feature_errors(self, X) -> np.ndarray:
        """Per-feature (per-pixel) squared reconstruction error in scaled units, in X's shape.

        Rows sum (divided by the number of features) to the "mse" score, so a large entry
        shows *which* inputs make a sample anomalous.
        """
        from .scoring import feature_errors_batch

        f = self._state()
        return f.layout.from_net(f.map(X, lambda x: feature_errors_batch(f.model, x), type(self).__name__))

    @_in_threads
    def explain(self, X, method: str = "auto", background=None, **kwargs):
        """Why each row scores as it does: contributions per feature (pixel, object and feature) in X's
        shape that add up to the score; ``method``: "auto", "error" or "shapley". Returns an
        :class:`aelab.explain.Explanation`; see :func:`aelab.explain.explain`."""
        from .explain import explain

        return explain(self, X, method, background, **kwargs)

    @_in_threads
    def set_threshold(self, X=None, fpr: float | None = None, contamination: float | None = None):
        """Set ``threshold_`` from known-normal data at a target false-positive rate, or by contamination.

        ``fpr``: the threshold is chosen on the scores of ``X`` (known-normal samples) so that
        at most a fraction ``fpr`` of them lies strictly above it; see
        :func:`aelab.thresholds.threshold_from_fpr` for the exact quantile rule. Scores of
        rows the model was fitted on are in-sample (optimistic), so such rows are recognised
        (by a hash kept at fit) and replaced by the calibration rows, with a warning; X None
        uses the calibration rows alone. On calibration rows the threshold is the conformal
        one (:func:`aelab.conformal.conformal_threshold`): at most ``fpr`` of fresh normal
        rows lie above it. ``contamination``: the ``1 - contamination`` percentile of the
        (training) scores, as in PyOD; "auto" estimates it first (``contamination_``, see
        :meth:`estimate_contamination`). Returns ``self``.
        """
        f = self._state()
        if (fpr is None) == (contamination is None):
            raise ConfigError("set_threshold needs exactly one of fpr=... or contamination=...; "
                              f"got fpr={fpr!r}, contamination={contamination!r}.")
        if fpr is not None:  # never on in-sample scores: fit rows give way to the calibration rows
            self._fitted = f.replace(**conformal.fpr_threshold(f, X, fpr, self.decision_function))
            return self
        scores = f.decision_scores if X is None else self.decision_function(X)
        # fit's rule; "auto": the share estimated from the rows' scores (X: against clean calibration rows)
        clean = X is not None and f.calibration is not None and f.calibration_info.get("clean")
        self._fitted = f.replace(**conformal.contamination_threshold(scores, contamination,
                                                                     f.calibration if clean else None))
        return self

    def predict(self, X, fpr: float | None = None, fdr: float | None = None) -> np.ndarray:
        """0/1 flags (1 = anomaly). No argument: the score is above ``threshold_``.

        ``fpr=a``: the conformal p-value (:meth:`pvalues`) is at most ``a``, which flags at most
        a share ``a`` of fresh normal rows (in expectation, when they are exchangeable with
        the calibration rows). ``fdr=q``: Benjamini-Hochberg at level ``q`` on the batch's
        p-values (SciPy's ``false_discovery_control``): the expected share of normal rows
        among the flags is at most ``q``. See docs/metrics.md.
        """
        conformal.check_rule(fpr, fdr)
        if fpr is None and fdr is None:
            return (self.decision_function(X) > self._state().threshold).astype(np.int64)
        scores = self.decision_function(X)
        conformal.warn_fit_rows(self._state(), X)
        return conformal.flags(self._state(), scores, fpr, fdr)

    def pvalues(self, X) -> np.ndarray:
        """Conformal p-values: ``(1 + #{calibration scores >= score}) / (n_cal + 1)`` per row of X.

        Small means anomalous; a fresh normal row has ``P(p <= a) <= a`` for every ``a``. X may
        be a streamed source (only the scores are held). The calibration rows are the
        validation rows fit held out, or those given to :meth:`calibrate`.
        """
        f = self._state()
        cal = conformal.require_calibration(f, "pvalues")
        scores = self.decision_function(X)
        conformal.warn_fit_rows(f, X)
        return conformal.pvalues(scores, cal)

    @_in_threads
    def calibrate(self, X_normal):
        """Replace the calibration scores by those of ``X_normal``: clean rows not used in the fit.

        Rows that were part of the fit are recognised and left out (with a warning). Returns ``self``.
        """
        f = self._state()
        self._fitted = conformal.calibrated(f, X_normal, self.decision_function, type(self).__name__)
        return self

    def estimate_contamination(self, X=None) -> float:
        """The estimated share of anomalies: of the training rows (X None) or of the batch X.

        With clean calibration rows (``novelty=True`` or :meth:`calibrate`) a batch is
        estimated by Storey's estimator on its conformal p-values; otherwise (and for the
        training rows) under a robust model of the normal scores; see
        :func:`aelab.conformal.estimate_contamination`.
        """
        f = self._state()
        if X is None:
            if f.contamination_estimate is not None:
                return float(f.contamination_estimate)
            return conformal.estimate_contamination(f.decision_scores)
        clean = f.calibration is not None and f.calibration_info.get("clean")
        return conformal.estimate_contamination(self.decision_function(X), f.calibration if clean else None)

    def fit_predict(self, X, y=None) -> np.ndarray:
        """Fit on X and flag its rows by their training scores (``decision_scores_ > threshold_``, PyOD's
        ``labels_``); with a neighbour score a training row is not its own neighbour there."""
        f = self.fit(X)._state()
        return (f.decision_scores > f.threshold).astype(np.int64)

    @_in_threads
    def sample(self, n: int, random_state=None) -> np.ndarray:
        """Draw ``n`` new examples: decode codes from the prior (VAE) or a Gaussian fitted to training codes."""
        f = self._state()
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ConfigError(f"n must be a positive integer, got {n!r}.")
        rng = np.random.default_rng(random_state)
        k = f.model_cfg.latent_dim
        if self._variational:
            Z = rng.standard_normal((n, k))
        else:
            Z = rng.multivariate_normal(f.latent_mean, f.latent_cov, size=n, method="eigh")
        return self.inverse_transform(Z.astype(np.float32))

    def save(self, path) -> None:
        """Write the fitted model to the folder ``path`` (atomically; no pickle)."""
        from .persistence import save

        save(path, type(self).__name__, self.get_params(), self._state())

    def export_onnx(self, path, output: str = "score", score: str | None = None, **kwargs):
        """Write one self-contained ONNX file: raw input (float32, the input's shape and units) ->
        ``output`` ("score": ``decision_function``, "reconstruction" or "latent"), scaler and fitted
        statistics inside; see :func:`aelab.export.onnx.export_onnx` (extra ``aelab[onnx]``)."""
        from .export.onnx import export_onnx

        return export_onnx(self._state(), path, output, score, **kwargs)

    def to_hls(self, output_dir, precision: str = "ap_fixed<16,6>", **kwargs):
        """An hls4ml project of the network with bit-accurate C emulation and its parity against the
        float model; see :func:`aelab.export.hls.to_hls` (extra: hls)."""
        from .export.hls import to_hls

        return to_hls(self._state(), output_dir, precision=precision, **kwargs)

    # ------------------------------------------------------------------ fitting
    @_in_threads
    def fit(self, X, y=None, *, checkpoint_dir=None, checkpoint_every: int = 1, resume=None):
        """Fit on ``X``: an array (n, d), images (n, h, w) / (n, c, h, w), or a chunked source.

        Every data-dependent decision (layout, scaler, output, default score) is taken
        from statistics of all rows, so an array in memory and the same rows streamed from
        a file give the same decisions. On any error the estimator keeps its previous state.

        Inside an initialised torch.distributed process group (torchrun, ``aelab train
        --nproc``, :func:`aelab.distributed.fit`) every rank passes the same X, reads only
        its shard of the rows, and all ranks end with the same model (see docs/scale.md).

        ``checkpoint_dir``: save the training state there every ``checkpoint_every`` epochs;
        ``resume``: a checkpoint folder to continue from (same data and settings), ending
        with the weights the uninterrupted run would have.
        """
        from .comm import current

        self._validate_params_()
        owner = type(self).__name__
        comm = current()
        names = feature_names(X)
        if is_source(X):
            data, n, shape = X, len(X), tuple(X.shape)
            if n < 2:
                raise DataError(f"X has {n} rows; at least 2 are required to fit.")
            local = comm.rows(data, n)
            stats, hashes = RunningStats(), []
            for chunk in iter_checked_chunks(local):  # a bad value is named by its row in all of X
                stats.update(chunk)
                hashes.append(row_hashes(chunk))
            stats.dtype = np.dtype(X.dtype)
        else:
            dtype = input_dtype(X)
            data = check_array(X, min_samples=2, dtype=None)
            n, shape = data.shape[0], data.shape
            local = comm.rows(data, n)
            stats, hashes = RunningStats.of(local), [row_hashes(local)]
            stats.dtype = dtype
        stats = comm.merge(stats)
        seed = comm.broadcast(int(np.random.default_rng(self.random_state).integers(2**31 - 1))
                              if not isinstance(self.random_state, (int, np.integer)) else int(self.random_state))
        device = comm.device(resolve_device(self.device))
        layout = resolve_layout(self.input_kind, shape, stats)
        glow = intensity_images(layout, stats)  # non-negative images that are not pixels (jet images)
        kind, per_feature = resolve_scaler(self.scaler, layout.image, stats, glow)
        scaler = Scaler(kind, per_feature, resolve_intensity(self.intensity, glow)).fit_data(local, stats, comm)
        model_cfg = self._build(layout, kind)
        recon_kind = "bce" if (self._variational and model_cfg.output == "sigmoid") else "mse"
        draft = Fitted(layout=layout, scaler=scaler, model_cfg=model_cfg, model=None, device=device,
                       recon_kind=recon_kind,
                       score=resolve_score(self.anomaly_score, kind, not layout.image, bool(self.novelty), glow),
                       latent_mean=None, latent_cov=None, recon_means=None, decision_scores=None,
                       threshold=math.nan, threshold_rule={},
                       feature_names=names if is_source(X) else None)  # a source keeps its names
        run = _Run(comm, n, seed, self._checkpointing(checkpoint_dir, checkpoint_every, resume, comm, local, n, shape,
                                                      stats))
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            model = build_model(model_cfg).to(device)
            draft = draft.replace(model=model)
            history, n_epochs = self._train(draft, local, run)
        model.eval()
        draft = draft.replace(history=history, n_epochs_config=n_epochs)
        # the one post-fit pass (fine-tuning ends in it too); a model fitted in closed form stays
        # deterministic: its neighbour reference rows never depend on a random seed
        draft = finish(draft, local, n, seed, owner=owner, comm=comm, hashes=hashes, contamination=self.contamination,
                       fraction=getattr(self, "validation_fraction", None), novelty=bool(self.novelty),
                       knn_seed=0 if self._closed_form and self.random_state is None else seed,
                       latent_gaussian=self._latent_gaussian(model), feature_names=names)
        self._fitted = draft
        return self

    def _checkpointing(self, folder, every, resume, comm, local, n, shape, stats) -> tuple:
        """(Checkpointer or None, TrainState or None) of one fit."""
        if folder is None and resume is None:
            return None, None
        from .checkpoint import Checkpointer, read_checkpoint, rows_digest

        skip = {"verbose", "n_threads", "device"}
        fingerprint = {"class": type(self).__name__, "rows": int(n), "shape": list(shape[1:]),
                       "data_mean": float(np.sum(stats.mean)), "data_m2": float(np.sum(stats.m2)),
                       "rows_sha256": rows_digest(local, n, comm),
                       "data_path": "streamed" if is_source(local) else "in memory",
                       "params": {k: v for k, v in self.get_params().items() if k not in skip}}
        saver = Checkpointer(folder, every, comm, fingerprint) if folder is not None else None
        state = read_checkpoint(resume, comm, fingerprint) if resume is not None else None
        return saver, state

    def _latent_gaussian(self, model):
        return None

    def _validate_params_(self) -> None:
        if self.scaler not in SCALERS:
            raise ConfigError(f"scaler={self.scaler!r} is not known; expected one of {SCALERS}.")
        if getattr(self, "intensity", "auto") not in INTENSITY:
            raise ConfigError(f"intensity={self.intensity!r} is not known; expected one of {INTENSITY}.")
        if self.input_kind not in INPUT_KINDS:
            raise ConfigError(f"input_kind={self.input_kind!r} is not known; expected one of {INPUT_KINDS}.")
        if self.n_threads is not None and not _positive_int(self.n_threads):
            raise ConfigError(f"n_threads must be a positive integer or None (PyTorch's own setting), "
                              f"got {self.n_threads!r}.")
        if self.novelty not in (True, False):
            raise ConfigError(f"novelty must be True or False, got {self.novelty!r}.")
        if self.contamination != "auto" and not (isinstance(self.contamination, (int, float, np.number))
                                                 and 0 < self.contamination <= 0.5):
            raise ConfigError(f"contamination must be 'auto' or a number in (0, 0.5], got {self.contamination!r}.")
        check_score(self.anomaly_score, self._variational, type(self).__name__, allow_auto=True)


for _name, (_doc, _get) in _VIEWS.items():
    setattr(_Base, _name, _view(_name, _doc, _get))
del _name, _doc, _get


def _equal_shares(train_idx: torch.Tensor, n: int, comm) -> torch.Tensor:
    """This rank's training rows, renumbered from its shard's first row, in the split's random order.

    DDP needs every rank to take the same number of optimiser steps (a rank that stepped
    alone would leave the replicas different), so every rank trains on as many rows as
    the smallest shard holds: the few rows above that (of the order of sqrt(n), drawn at
    random by the split) are left out of the gradient steps, and only of them.
    """
    bounds = comm.bounds(n)
    counts = [int(((train_idx >= a) & (train_idx < b)).sum()) for a, b in zip(bounds, bounds[1:])]
    if min(counts) < 1:
        raise DataError(f"X has {n} rows, too few for {comm.world} ranks: the validation split leaves rank "
                        f"{counts.index(min(counts))} no row to train on. Use fewer ranks, more rows, or a smaller "
                        "validation_fraction.")
    start, stop = comm.shard(n)
    return train_idx[(train_idx >= start) & (train_idx < stop)][: min(counts)] - start


class _Run(NamedTuple):
    """One fit's run: the ranks (``comm``), the rows over all ranks, the seed, and (saver, resume state)."""

    comm: object
    n: int
    seed: int
    checkpoint: tuple


class Autoencoder(_Base):
    """Autoencoder for compression, anomaly detection, clustering and generation.

    One class covers the lecture's family; the variants are settings:

    * undercomplete dense (default for tables and images of up to 4,096 values, e.g.
      28 x 28 digits) or convolutional (``arch="conv"``, the default for larger images);
    * denoising: ``noise > 0`` trains on L(x, p(q(x~))) with x~ = x + N(0, noise^2)
      (``noise_type="gaussian"``, scaled units) or x with a fraction ``noise`` of values
      zeroed (``"mask"``), drawn afresh per batch and never applied when scoring;
    * sparse: ``sparsity > 0`` adds ``sparsity * mean_i sum_j |z_ij|`` (Laplace prior);
    * linear: ``linear=True`` removes every non-linearity (the PCA-equivalent AE).

    Parameters
    ----------
    latent_dim : int or None
        Size k of the code. None picks ``min(16, max(2, ceil(d / 4)))`` for d features.
    hidden : tuple of int or None
        Dense encoder widths (the decoder mirrors them). None picks widths between d and k.
    arch : {"auto", "dense", "conv"}
        "auto": dense for tables and for images of at most 4,096 values, conv for larger images.
    channels : tuple of int
        Convolutional encoder channels per stage (each stage halves height and width).
    backbone : str
        Convolutional block family: "plain", "vgg", "resnet", "inception", "dense".
    noise, noise_type, sparsity, linear : see above.
    batch_norm : bool, default False
        Dense networks: BatchNorm1d before each hidden activation (folded into the Linear
        layer before it when exported to hls4ml).
    mask_zeros : bool, default False
        True: an input value that is exactly 0 marks an absent object (zero-padded collider
        events); its reconstruction is set to 0, so only the objects present count in the
        loss and the scores. Use with ``scaler="scale"`` (or "none"), which keep 0 at 0.
    trim : float or "auto", default "auto"
        Robust training: in every batch the ``trim`` share of samples with the largest
        loss is left out of the gradient (a trimmed mean), so that anomalies hidden in
        the training data are not learned. 0 trains on the plain mean. "auto" is 0.1, and
        0 for ``novelty=True`` (clean training data) and for ``linear=True`` (the lecture's
        linear autoencoder, which matches PCA only under the plain mean). On the 17 ODDS tables (contaminated training sets) 0.1
        raised the mean ROC AUC from 0.800 to 0.810; see docs/anomaly.md.
    anomaly_score : {"auto", "mse", "mae", "relative", "latent", "mse+latent", "relative+latent", "knn",
                     "mse+knn", "mse+latent+knn"}
        Default anomaly score of :meth:`decision_function` (see :mod:`aelab.scoring`).
        "auto" resolves at fit (to ``score_``): "relative+latent" for data min-max scaled
        to [0, 1] (images); for other tables "mse+latent+knn" (reconstruction error, the
        Mahalanobis distance of the code and the distance to the 50 nearest training rows,
        each relative to its training mean), or "mse+knn" with ``novelty=True``. Called
        ``score`` before aelab 0.2 (the old name still works, with a FutureWarning).
    contamination : float
        Share of training samples assumed anomalous, used for the threshold set at fit.
    epochs : int or None
        Maximum epochs; None picks the epochs of about 3,000 optimiser steps of 32 rows
        (10 to 200 epochs; with an explicit ``batch_size``, 3,000 steps of that size).
    batch_size : int or "auto", default "auto"
        Rows per optimiser step (per rank when data-parallel). "auto": 32, and 64 for more
        than 5,000 rows, which covers the same epochs in half the steps (on one-class MNIST,
        5,400-6,700 rows per digit: mean ROC AUC 0.9817 against 0.9796 with 32, and fit+score
        of the ten digits in 41 s against PyOD AutoEncoder's 57 s; see docs/anomaly.md).
    lr : float or "auto", default "auto"
        Adam's learning rate. "auto": 1e-3, and 2e-3 when ``batch_size="auto"`` picks 64
        (the linear scaling rule: twice the batch, twice the rate).
    weight_decay : float
        Adam's (L2) weight decay.
    validation_fraction : float
        Held-out share of the training data for early stopping; 0 disables.
    early_stopping : bool or "auto", default "auto"
        Stop when the validation loss stops improving and restore the best weights.
        "auto" is True, and False for ``linear=True`` (see :meth:`_early_stopping`).
    patience : int
        Epochs without improvement before stopping.
    scaler : {"auto", "standard", "minmax", "scale", "pixel", "none"}
        "scale" divides each column by its root mean square (zeros stay zeros); "pixel"
        standardises each pixel with a floor under its spread (see
        :data:`aelab.preprocessing.PIXEL_FLOOR`). "auto": images are min-max scaled to [0, 1]
        as a whole, intensity images (non-negative images that are not 0..255 or 0..1
        pixels, such as jet images) get "pixel"; tables are min-max scaled per column when
        they are uint8 or all in [0, 1], and standardised per column otherwise.
    intensity : {"auto", "none", "sum", "sqrt", "log1p", "sum+sqrt", "sum+log1p"}
        Per-sample steps before the scaler: "sum" divides each sample by its total
        intensity, "sqrt" / "log1p" compress the range. "auto": "sum+sqrt" for intensity
        images, "none" otherwise. Saved with the model and part of the exported ONNX graph.
    novelty : bool, default False
        True states that the training data are clean (normal samples only), as in
        scikit-learn's ``LocalOutlierFactor(novelty=True)``; False (the default) that they
        may hide anomalies. With True, ``trim="auto"`` resolves to 0 and, for tables,
        ``anomaly_score="auto"`` to "mse+knn" (reconstruction plus the distance to the
        nearest training rows). See docs/anomaly.md, "Tables: contaminated or clean".
    input_kind : {"auto", "table", "image"}
        How to read X (see :mod:`aelab.layout`). "auto": 2-D arrays are tables, 4-D arrays
        images; a 3-D array (n, a, b) is greyscale images when its values look like
        pixels (uint8, all in [0, 1], or whole numbers in [0, 255]) or are non-negative on
        a grid of at least 8 x 8 (intensity images, such as jet images), otherwise a table
        of objects such as collider events (n, objects, features), scaled per column.
    random_state : int or None
        Seed for weights, batches, noise and the validation split (deterministic on CPU).
    device : {"auto", "cpu", "cuda"}
        "auto": $AELAB_DEVICE when set, else CUDA when present, else the CPU.
    n_threads : int or None
        CPU threads for PyTorch during this estimator's own calls (fit, transform, scores,
        ...); the caller's setting is restored after each. None keeps PyTorch's setting.
    verbose : bool
        Show a progress bar.

    Examples
    --------
    >>> import numpy as np, aelab
    >>> X = np.random.default_rng(0).normal(size=(200, 8)).astype("float32")
    >>> ae = aelab.Autoencoder(latent_dim=2, epochs=5, random_state=0).fit(X)
    >>> ae.transform(X).shape
    (200, 2)
    """

    @_accepts_renamed
    def __init__(self, latent_dim=None, hidden=None, arch="auto", channels=(32, 64), backbone="plain",
                 noise=0.0, noise_type="gaussian", sparsity=0.0, linear=False, activation="relu",
                 batch_norm=False, mask_zeros=False, trim="auto", anomaly_score="auto", contamination=0.1, epochs=None, batch_size="auto", lr="auto",
                 weight_decay=0.0, validation_fraction=0.1, early_stopping="auto", patience=10, scaler="auto",
                 intensity="auto", input_kind="auto", novelty=False, random_state=None, device="auto", n_threads=None,
                 verbose=False):
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.arch = arch
        self.channels = channels
        self.backbone = backbone
        self.noise = noise
        self.noise_type = noise_type
        self.sparsity = sparsity
        self.linear = linear
        self.activation = activation
        self.batch_norm = batch_norm
        self.mask_zeros = mask_zeros
        self.trim = trim
        self.anomaly_score = anomaly_score
        self.contamination = contamination
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.early_stopping = early_stopping
        self.patience = patience
        self.scaler = scaler
        self.intensity = intensity
        self.input_kind = input_kind
        self.novelty = novelty
        self.random_state = random_state
        self.device = device
        self.n_threads = n_threads
        self.verbose = verbose

    # ------------------------------------------------------------------ settings
    def _trim(self) -> float:
        """``trim="auto"``: 0.1 (robust training), 0 for a linear model (so that it matches PCA) and for
        training data stated to be clean (``novelty=True``)."""
        if self.trim == "auto":
            return 0.0 if self.linear or self.novelty else 0.1
        return float(self.trim)

    def _validate_params_(self) -> None:
        super()._validate_params_()
        if self.arch not in ("auto", "dense", "conv"):
            raise ConfigError(f"arch={self.arch!r} is not known; expected 'auto', 'dense' or 'conv'.")
        if self.noise < 0 or (self.noise_type == "mask" and self.noise >= 1):
            raise ConfigError(f"noise must be >= 0 (and < 1 for noise_type='mask'), got {self.noise!r}.")
        if self.noise_type not in NOISE_TYPES:
            raise ConfigError(f"noise_type={self.noise_type!r} is not known; expected one of {NOISE_TYPES}.")
        if self.sparsity < 0:
            raise ConfigError(f"sparsity must be >= 0, got {self.sparsity!r}.")
        for name in ("batch_norm", "mask_zeros"):
            if getattr(self, name) not in (True, False):
                raise ConfigError(f"{name} must be True or False, got {getattr(self, name)!r}.")
        if self.early_stopping not in ("auto", True, False):
            raise ConfigError(f"early_stopping must be True, False or 'auto', got {self.early_stopping!r}.")
        if self.trim != "auto" and (not isinstance(self.trim, (int, float, np.number)) or isinstance(self.trim, bool)
                                    or not (0 <= self.trim < 1)):
            raise ConfigError(f"trim must be 'auto' or in [0, 1) (the share of each batch left out of the loss), "
                              f"got {self.trim!r}. Use 0 to train on every sample.")
        if not (0 <= self.validation_fraction < 1):
            raise ConfigError(f"validation_fraction must be in [0, 1), got {self.validation_fraction!r}.")
        if self.batch_size != "auto" and not _positive_int(self.batch_size):
            raise ConfigError(f"batch_size must be a positive integer or 'auto', got {self.batch_size!r}.")
        if not _positive_int(self.patience):
            raise ConfigError(f"patience must be a positive integer, got {self.patience!r}.")
        if self.epochs is not None and (not isinstance(self.epochs, (int, np.integer)) or self.epochs < 1):
            raise ConfigError(f"epochs must be a positive integer or None, got {self.epochs!r}.")
        if self.lr != "auto" and (not isinstance(self.lr, (int, float, np.number)) or isinstance(self.lr, bool)
                                  or not self.lr > 0):
            raise ConfigError(f"lr must be 'auto' or a number > 0, got {self.lr!r}.")
        if self.latent_dim is not None and (not isinstance(self.latent_dim, (int, np.integer)) or self.latent_dim < 1):
            raise ConfigError(f"latent_dim must be a positive integer or None, got {self.latent_dim!r}.")

    def _build(self, layout: Layout, scaler_kind: str) -> ModelConfig:
        arch = self.arch if self.arch != "auto" else _auto_arch(layout.n_features, layout.image)
        if arch == "conv" and not layout.image:
            raise DataError(f"arch='conv' needs images (n, h, w) or (n, c, h, w); got per-sample shape "
                            f"{layout.input_shape}, read as a table. Use arch='dense' for tables, or "
                            "input_kind='image' if these are images.")
        d = layout.n_features
        k = int(self.latent_dim) if self.latent_dim is not None else _auto_latent(d)
        shape = layout.image_shape if arch == "conv" else (d,)
        hidden = tuple(self.hidden) if self.hidden is not None else _auto_hidden(d, k)
        output = "sigmoid" if scaler_kind == "minmax" and not self.linear else "identity"
        return ModelConfig(kind="autoencoder", input_shape=shape, latent_dim=k, arch=arch, hidden=hidden,
                           channels=tuple(self.channels), backbone=self.backbone, linear=bool(self.linear),
                           variational=self._variational, output=output, activation=self.activation,
                           batch_norm=bool(self.batch_norm), mask_zeros=bool(self.mask_zeros))

    def _train_config(self, n_train: int, n_rows: int) -> TrainConfig:
        """Resolve the "auto" training settings for ``n_train`` training rows (per rank) of ``n_rows``.

        Gradients are clipped (global norm 10) for the VAE only: its ELBO sums over features,
        and on the ODDS tables its gradient norms reached 150 and were clipped in up to 99%
        of steps; the autoencoders' mean squared error stayed below 1.8 on 15 of 16 tables
        (one step of one table reached 15.7), where clipping costs ~4% of a step and
        changes nothing.
        """
        auto_batch = self.batch_size == "auto"
        batch = (64 if n_rows > WIDE_BATCH_ROWS else 32) if auto_batch else int(self.batch_size)
        lr = (2e-3 if batch == 64 and auto_batch else 1e-3) if self.lr == "auto" else float(self.lr)
        epochs = self.epochs
        if epochs is None:
            steps_per_epoch = max(1, math.ceil(n_train / (32 if auto_batch else batch)))
            epochs = int(np.clip(math.ceil(3000 / steps_per_epoch), 10, 200))
        return TrainConfig(epochs=int(epochs), batch_size=batch, lr=lr,
                           weight_decay=float(self.weight_decay), validation_fraction=float(self.validation_fraction),
                           early_stopping=self._early_stopping(), patience=int(self.patience),
                           grad_clip=10.0 if self._variational else None)

    def _early_stopping(self) -> bool:
        """``early_stopping="auto"``: on, but off for a linear model.

        A linear autoencoder has one optimum, the principal subspace (nothing to
        regularise); where the eigenvalues of the data are close it approaches it slowly,
        and a patience rule stops it early: on scikit-learn's digits (latent 8, 300 epochs)
        the subspace was 10.2 degrees from PCA's with early stopping (28 epochs), 8.1 without.
        """
        if self.early_stopping == "auto":
            return not self.linear
        return bool(self.early_stopping)

    def _losses(self, model, recon_kind: str, forward=None):
        """(training loss of a batch, deterministic per-sample evaluation loss).

        The training loss draws the denoising corruption and the VAE's z, and trims; the
        evaluation loss (validation, early stopping, ``history_["val_loss"]``) does none of
        these: the same weights always give the same value. ``forward`` is the module the
        training loss runs (DDP across ranks), the evaluation loss runs ``model`` itself.
        """
        forward = forward if forward is not None else model
        noise, noise_type, sparsity, trim = float(self.noise), self.noise_type, float(self.sparsity), self._trim()
        beta = float(getattr(self, "beta", 1.0))
        variational = self._variational

        def per_sample(out, xb):
            if variational:
                loss = losses.elbo(out.x_hat, xb, out.mu, out.logvar, beta=beta, kind=recon_kind)
            else:
                loss = losses.reconstruction(out.x_hat, xb, "mse")
            if sparsity > 0:
                loss = loss + sparsity * losses.sparsity(out.z)
            return loss

        def train_loss(xb):
            out = forward(corrupt(xb, noise, noise_type), sample=variational)
            if not variational and sparsity <= 0:
                return losses.trimmed_mse(out.x_hat, xb, trim)  # one autograd node, trim or not
            return losses.trimmed_mean(per_sample(out, xb), trim)

        def eval_loss(xb):
            return per_sample(model(xb, sample=False), xb)

        return train_loss, eval_loss

    def _train(self, draft: Fitted, data, run: "_Run"):
        """Train on ``data``, this rank's rows of the run's ``run.n`` (all of them in one process)."""
        dev, model, comm, seed = draft.device, draft.model, run.comm, run.seed
        wrapped = comm.wrap(model, dev)
        train_loss, eval_loss = self._losses(model, draft.recon_kind, forward=wrapped)
        start, stop = comm.shard(run.n)
        gen = torch.Generator(device="cpu").manual_seed(seed)
        val_idx, train_idx = validation_split(run.n, float(self.validation_fraction), gen)
        n_val = len(val_idx)
        cfg = self._train_config(math.ceil(len(train_idx) / comm.world), run.n)
        if comm.parallel:
            train_idx = _equal_shares(train_idx, run.n, comm)
            val_idx = val_idx[(val_idx >= start) & (val_idx < stop)] - start
        n_local = stop - start
        if is_source(data):
            rng = np.random.default_rng(seed)
            generators = {"numpy": rng}
            val_rows = np.zeros(n_local, dtype=bool)
            val_rows[val_idx.numpy()] = True
            train_rows = None
            if n_val or comm.parallel:
                train_rows = np.zeros(n_local, dtype=bool)
                train_rows[train_idx.numpy()] = True

            def net(block):
                return torch.from_numpy(draft.to_net(check_array(block, name="a batch of X", dtype=None))).to(dev)

            def batches(epoch):
                for b in data.iter_shuffled_batches(cfg.batch_size, rng, rows=train_rows):
                    yield net(b)

            def stream_val_blocks():
                for chunk in data.iter_masked_chunks(val_rows):
                    for i in range(0, len(chunk), EVAL_ROWS):
                        yield net(chunk[i : i + EVAL_ROWS])

            # validation rows that fit in VAL_CACHE_BYTES are read once and kept (in the network's
            # float32 layout); larger ones are streamed again each epoch
            if len(val_idx) * 4 * draft.layout.n_features <= VAL_CACHE_BYTES:
                cached = list(stream_val_blocks()) if len(val_idx) else []

                def val_blocks():
                    return iter(cached)
            else:
                val_blocks = stream_val_blocks
        else:
            generators = {"batches": gen}
            Xn = torch.from_numpy(draft.to_net(data)).to(dev)
            Xt = Xn[train_idx.to(dev)] if n_val or comm.parallel else Xn
            Xv = Xn[val_idx.to(dev)]
            del Xn  # with a validation split Xt and Xv are copies: keep one copy of the data

            def batches(epoch):
                return permuted_batches(Xt, cfg.batch_size, gen)

            def val_blocks():
                return (Xv[i : i + EVAL_ROWS] for i in range(0, len(Xv), EVAL_ROWS))

        def val_fn():
            total = torch.zeros((), dtype=torch.float64, device=dev)
            for xb in val_blocks():
                total += eval_loss(xb).double().sum()
            return float(comm.sum(float(total))) / n_val

        saver, resume = run.checkpoint
        history = train(model, train_loss, batches, cfg, dev, val_fn if n_val else None, self.verbose,
                        comm=comm, wrapped=wrapped, generators=generators, checkpoint=saver, resume=resume)
        return history, cfg.epochs


# "auto" arch: images up to this many values (64 x 64 grey, 36 x 36 RGB) get the dense network
_DENSE_MAX_FEATURES = 4096


def _auto_arch(d: int, images: bool) -> str:
    """Dense for tables and small images, convolutional for larger images.

    On one-class MNIST (28 x 28) the dense network is several times faster on CPU than the
    plain conv backbone, and its AUCs are at least as good (docs/anomaly.md); a dense first
    layer on big images would be too large, so those keep the conv network.
    """
    return "conv" if images and d > _DENSE_MAX_FEATURES else "dense"


def _auto_latent(d: int) -> int:
    """Default code size: a quarter of the features, between 2 (or d) and 16."""
    return min(d, 16, max(2, math.ceil(d / 4)))


def _auto_hidden(d: int, k: int) -> tuple[int, ...]:
    # wide enough that ReLU units do not die in narrow layers (tested on small tables)
    h1 = min(256, max(64, 2 * d, 4 * k))
    h2 = max(32, 2 * k, h1 // 4)
    return (h1, h2)


class VAE(Autoencoder):
    """Variational autoencoder with a ``beta`` weight on the KL term (beta-VAE).

    Loss per sample: reconstruction NLL (Bernoulli for data scaled to [0, 1], Gaussian
    otherwise) + ``beta`` * KL( q(z|x) || N(0, I) ). The encoder's logvar is clamped to a
    numerically safe range. Training samples z with the reparameterisation trick;
    :meth:`transform`, every score and the validation loss use z = mu, so results are
    deterministic. Scores: those of :class:`Autoencoder` ("auto" by default) and the
    latent "mu_norm", "kl", "elbo" (see :mod:`aelab.scoring` and docs/anomaly.md for when
    each works). Other parameters as in :class:`Autoencoder`.
    """

    _variational = True

    @_accepts_renamed
    def __init__(self, latent_dim=None, beta=1.0, hidden=None, arch="auto", channels=(32, 64), backbone="plain",
                 noise=0.0, noise_type="gaussian", sparsity=0.0, linear=False, activation="relu",
                 batch_norm=False, mask_zeros=False, trim="auto", anomaly_score="auto", contamination=0.1, epochs=None, batch_size="auto", lr="auto",
                 weight_decay=0.0, validation_fraction=0.1, early_stopping="auto", patience=10, scaler="auto",
                 intensity="auto", input_kind="auto", novelty=False, random_state=None, device="auto", n_threads=None,
                 verbose=False):
        super().__init__(latent_dim=latent_dim, hidden=hidden, arch=arch, channels=channels, backbone=backbone,
                         noise=noise, noise_type=noise_type, sparsity=sparsity, linear=linear,
                         activation=activation, batch_norm=batch_norm, mask_zeros=mask_zeros, trim=trim, anomaly_score=anomaly_score, contamination=contamination,
                         epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                         validation_fraction=validation_fraction, early_stopping=early_stopping,
                         patience=patience, scaler=scaler, intensity=intensity, input_kind=input_kind, novelty=novelty,
                         random_state=random_state,
                         device=device, n_threads=n_threads, verbose=verbose)
        self.beta = beta

    def _validate_params_(self) -> None:
        super()._validate_params_()
        if not self.beta >= 0:
            raise ConfigError(f"beta must be >= 0, got {self.beta!r}.")


class PCA(_Base):
    """Principal component analysis with the autoencoders' interface (closed form).

    Same layout rule, preprocessing, scores, thresholds and persistence as
    :class:`Autoencoder`; ``transform`` gives the k principal coordinates, ``sample``
    draws them from N(0, diag(explained variance)). The components come from the
    covariance accumulated chunk by chunk (float64, Chan's merge), so a streamed source
    gives the same model as the same rows in memory and never has to fit in memory.
    """

    _closed_form = True  # nothing in the fit is random

    @_accepts_renamed
    def __init__(self, n_components=None, anomaly_score="auto", contamination=0.1, scaler="auto",
                 intensity="auto", input_kind="auto", novelty=False, random_state=None, device="auto", n_threads=None):
        self.n_components = n_components
        self.anomaly_score = anomaly_score
        self.contamination = contamination
        self.scaler = scaler
        self.intensity = intensity
        self.input_kind = input_kind
        self.novelty = novelty
        self.random_state = random_state
        self.device = device
        self.n_threads = n_threads

    def _validate_params_(self) -> None:
        super()._validate_params_()
        if self.n_components is not None and (
                not isinstance(self.n_components, (int, np.integer)) or self.n_components < 1):
            raise ConfigError(f"n_components must be a positive integer or None, got {self.n_components!r}.")

    def _build(self, layout: Layout, scaler_kind: str) -> ModelConfig:
        d = layout.n_features
        k = _auto_latent(d) if self.n_components is None else int(self.n_components)
        if k > d:
            raise ConfigError(f"n_components={k} exceeds the number of features ({d}); "
                              f"choose n_components <= {d}.")
        return ModelConfig(kind="pca", input_shape=(d,), latent_dim=k, arch="dense",
                           hidden=(), linear=True, output="identity")

    def _train(self, draft: Fitted, data, run: "_Run"):
        n = len(data)
        if draft.model_cfg.latent_dim > run.n:
            raise ConfigError(f"n_components={draft.model_cfg.latent_dim} exceeds the number of samples "
                              f"({run.n}); pass more samples or a smaller n_components.")
        moments = RunningStats(covariance=True)
        blocks = data.iter_chunks() if is_source(data) else (data[i : i + EVAL_ROWS] for i in range(0, n, EVAL_ROWS))
        for block in blocks:
            moments.update(draft.to_net(check_array(block, name="a chunk of X", dtype=None)))
        moments = run.comm.merge(moments)
        draft.model.fit_moments(moments.mean, moments.m2, moments.n)
        return {"loss": [], "val_loss": []}, None

    def _latent_gaussian(self, model):
        # the principal coordinates are centred, with the explained variances as variances
        def gaussian():
            var = model.explained_variance.cpu().numpy().astype(np.float64)
            return np.zeros(len(var)), np.diag(var)

        return gaussian

    @property
    def explained_variance_(self) -> np.ndarray:
        return self._state().model.explained_variance.cpu().numpy()

    @property
    def components_(self) -> np.ndarray:
        return self._state().model.components.cpu().numpy()


def load(path, device: str = "auto"):
    """Load a model folder written by ``est.save(path)``; scores are identical to the saved model's.

    ``device`` places the network ("auto", "cpu" or "cuda"). Raises
    :class:`~aelab.exceptions.PersistenceError` for anything that is not a valid model folder
    (including files replaced by pickle payloads, which are never executed).
    """
    from .exceptions import PersistenceError
    from .persistence import read

    classes = {"Autoencoder": Autoencoder, "VAE": VAE, "PCA": PCA}
    cls_name, params, state = read(path, device, list(classes))
    cls = classes[cls_name]
    params = {RENAMED_PARAMS.get(k, k): v for k, v in params.items()}
    for k in ("hidden", "channels"):
        if isinstance(params.get(k), list):
            params[k] = tuple(params[k])
    try:
        fitted = state(cls(**params).anomaly_score)
        return cls.from_fitted(fitted, **params)
    except PersistenceError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise PersistenceError(f"the model folder {str(path)!r} is inconsistent or from an incompatible "
                               f"version: {type(exc).__name__}: {exc}") from None
