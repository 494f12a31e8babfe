"""What a fitted estimator answers: codes, reconstructions, scores, flags, p-values, thresholds, new
samples, and its model folder and exports.

:class:`FittedAPI` is the read side of :class:`aelab.estimators.Autoencoder`, :class:`~aelab.estimators.VAE`
and :class:`~aelab.estimators.PCA`: every method reads the one :class:`~aelab.fitted.Fitted` that
``fit`` assigned (or replaces it whole: ``set_threshold``, ``calibrate``), and the public fitted
attributes (``model_``, ``threshold_``, ...) are read-only views of it. What differs between
the model kinds is asked of the estimator's kind (:mod:`aelab.kinds`). Fitting itself, the
parameters and their validation are in :mod:`aelab.estimators`.
"""

from __future__ import annotations

import numpy as np
import torch

from . import conformal
from ._params import in_threads
from ._validation import check_is_fitted
from .exceptions import ConfigError, NotFittedError
from .fitted import EVAL_ROWS, Fitted, check_latent
from .kinds import AUTOENCODER, ModelKind

__all__ = ["FittedAPI"]


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



class FittedAPI:
    """The methods of a fitted estimator; the estimator class names its model kind (``_kind``)."""

    _kind: ModelKind = AUTOENCODER

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
    @in_threads
    def transform(self, X) -> np.ndarray:
        """Latent codes, shape (n, latent_dim); for the VAE, the posterior mean mu."""
        f = self._state()
        return f.map(X, lambda x: f.model.encode(x)[0], type(self).__name__, np.float32)

    @in_threads
    def inverse_transform(self, Z) -> np.ndarray:
        """Decode codes ``Z`` (n, latent_dim) to data in the input's shape and units."""
        f = self._state()
        Z = check_latent(Z, f.model_cfg.latent_dim)
        with torch.no_grad():
            out = [f.model.decode(torch.from_numpy(Z[i : i + EVAL_ROWS]).to(f.device)).cpu().numpy()
                   for i in range(0, Z.shape[0], EVAL_ROWS)]
        return f.from_net(np.concatenate(out))

    @in_threads
    def reconstruct(self, X) -> np.ndarray:
        """``inverse_transform(transform(X))``: reconstructions in the input's shape and units."""
        f = self._state()
        return f.from_net(f.map(X, lambda x: f.model(x).x_hat, type(self).__name__))

    @in_threads
    def decision_function(self, X, score: str | None = None) -> np.ndarray:
        """Anomaly score per sample; HIGHER means MORE ANOMALOUS.

        ``score`` overrides the estimator's default (``score_``); see :mod:`aelab.scoring`.
        """
        f = self._state()
        score = score or f.score
        self._kind.check_score(score, type(self).__name__)
        return f.scores(X, score, type(self).__name__)

    def score_samples(self, X) -> np.ndarray:
        """scikit-learn convention (higher = more normal): ``-decision_function(X)``."""
        return -self.decision_function(X)

    @in_threads
    def score(self, X, y=None) -> float:
        """Goodness of fit on ``X``, higher is better (scikit-learn's model-selection convention).

        The negative mean reconstruction error in the scaled units the network sees
        (``-mean(decision_function(X, score="mse"))``); for the VAE the mean ELBO
        (``-mean(decision_function(X, score="elbo"))``), a lower bound on the
        log-likelihood. ``GridSearchCV`` and ``cross_validate`` use it when no ``scoring``
        is given. ``y`` is ignored.
        """
        return -float(np.mean(self.decision_function(X, score=self._kind.fit_score)))

    @in_threads
    def feature_errors(self, X) -> np.ndarray:
        """Per-feature (per-pixel) squared reconstruction error in scaled units, in X's shape.

        Rows sum (divided by the number of features) to the "mse" score, so a large entry
        shows *which* inputs make a sample anomalous.
        """
        from .scoring import feature_errors_batch

        f = self._state()
        return f.layout.from_net(f.map(X, lambda x: feature_errors_batch(f.model, x), type(self).__name__))

    @in_threads
    def explain(self, X, method: str = "auto", background=None, **kwargs):
        """Why each row scores as it does: contributions per feature (pixel, object and feature) in X's
        shape that add up to the score; ``method``: "auto", "error" or "shapley". Returns an
        :class:`aelab.explain.Explanation`; see :func:`aelab.explain.explain`."""
        from .explain import explain

        return explain(self, X, method, background, **kwargs)

    @in_threads
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

    @in_threads
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

    @in_threads
    def sample(self, n: int, random_state=None) -> np.ndarray:
        """Draw ``n`` new examples: decode codes from the prior (VAE) or a Gaussian fitted to training codes."""
        f = self._state()
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ConfigError(f"n must be a positive integer, got {n!r}.")
        Z = self._kind.draw_codes(f, np.random.default_rng(random_state), n)
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


for _name, (_doc, _get) in _VIEWS.items():
    setattr(FittedAPI, _name, _view(_name, _doc, _get))
del _name, _doc, _get
