"""The estimators: :class:`Autoencoder`, :class:`VAE` and :class:`PCA`.

Parameters and orchestration only: validation -> layout -> scaling -> network ->
training loop -> scores and threshold, each step a call into its own module. They
follow scikit-learn's contract (``__init__`` only stores parameters, learned state ends
in ``_``, ``fit`` returns ``self``) and PyOD's anomaly vocabulary (``decision_scores_``,
``threshold_``, ``predict`` giving 0 for normal and 1 for anomalous).

Everything ``fit`` learns is one :class:`~aelab.fitted.Fitted`, built in local variables
and assigned last: a fit that fails leaves the estimator exactly as it was. The public
fitted attributes are read-only views of it. The steps live in their modules: the row survey
and post-fit pass in :mod:`aelab.fitting`, the training data pipelines in :mod:`aelab.pipeline`,
the "auto" sizes in :mod:`aelab.defaults`, what differs between AE, VAE and PCA in
:mod:`aelab.kinds`, and the fitted side (scores, flags, thresholds, exports) in :mod:`aelab.fitted_api`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._columns import feature_names
from ._params import ParamsBase, accepts_renamed, in_threads, positive_int
from ._validation import is_source
from .config import ModelConfig, TrainConfig
from .defaults import WIDE_BATCH_ROWS, auto_arch, auto_hidden, auto_latent, auto_training  # noqa: F401
from .device import resolve_device
from .exceptions import ConfigError, DataError
from .fitted import Fitted
from .fitted_api import FittedAPI
from .fitting import checkpointing, survey
from .postfit import finish
from .kinds import AUTOENCODER, PRINCIPAL, VARIATIONAL
from .layout import INPUT_KINDS, Layout, intensity_images, resolve_layout
from .models import build_model
from .pipeline import VAL_CACHE_BYTES, Run, fit_moments, train_network  # noqa: F401 (VAL_CACHE_BYTES re-exported)
from .preprocessing import INTENSITY, NOISE_TYPES, SCALERS, Scaler, resolve_intensity, resolve_scaler
from .scoring import resolve_score

__all__ = ["Autoencoder", "VAE", "PCA", "load"]


#: Parameters renamed in 0.2: old name -> new name (the old one still works, with a FutureWarning).
RENAMED_PARAMS = {"score": "anomaly_score"}


class _Base(FittedAPI, ParamsBase):
    """Shared machinery: fit and the common parameters. Subclasses define ``__init__`` (parameters only),
    ``_build`` and ``_train``, and name their model kind (``_kind``, :mod:`aelab.kinds`)."""

    _kind = AUTOENCODER
    _renamed_params = RENAMED_PARAMS

    @in_threads
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
        rows = survey(X, comm)
        n, shape, local, stats = rows.n, rows.shape, rows.local, rows.stats
        seed = comm.broadcast(int(np.random.default_rng(self.random_state).integers(2**31 - 1))
                              if not isinstance(self.random_state, (int, np.integer)) else int(self.random_state))
        device = comm.device(resolve_device(self.device))
        layout = resolve_layout(self.input_kind, shape, stats)
        glow = intensity_images(layout, stats)  # non-negative images that are not pixels (jet images)
        kind, per_feature = resolve_scaler(self.scaler, layout.image, stats, glow)
        scaler = Scaler(kind, per_feature, resolve_intensity(self.intensity, glow)).fit_data(local, stats, comm)
        model_cfg = self._build(layout, kind)
        recon_kind = self._kind.recon_kind(model_cfg.output)
        draft = Fitted(layout=layout, scaler=scaler, model_cfg=model_cfg, model=None, device=device,
                       recon_kind=recon_kind,
                       score=resolve_score(self.anomaly_score, kind, not layout.image, bool(self.novelty), glow),
                       latent_mean=None, latent_cov=None, recon_means=None, decision_scores=None,
                       threshold=math.nan, threshold_rule={},
                       feature_names=names if is_source(X) else None)  # a source keeps its names
        run = Run(comm, n, seed, checkpointing(owner, self.get_params(), checkpoint_dir, checkpoint_every, resume,
                                               comm, rows))
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
        self._fitted = finish(draft, rows.local, rows.n, seed, owner=owner, comm=comm, hashes=rows.hashes,
                              contamination=self.contamination, fraction=getattr(self, "validation_fraction", None),
                              novelty=bool(self.novelty),
                              knn_seed=0 if self._kind.closed_form and self.random_state is None else seed,
                              latent_gaussian=self._kind.latent_gaussian(model), feature_names=names)
        return self

    def _validate_params_(self) -> None:
        if self.scaler not in SCALERS:
            raise ConfigError(f"scaler={self.scaler!r} is not known; expected one of {SCALERS}.")
        if getattr(self, "intensity", "auto") not in INTENSITY:
            raise ConfigError(f"intensity={self.intensity!r} is not known; expected one of {INTENSITY}.")
        if self.input_kind not in INPUT_KINDS:
            raise ConfigError(f"input_kind={self.input_kind!r} is not known; expected one of {INPUT_KINDS}.")
        if self.n_threads is not None and not positive_int(self.n_threads):
            raise ConfigError(f"n_threads must be a positive integer or None (PyTorch's own setting), "
                              f"got {self.n_threads!r}.")
        if self.novelty not in (True, False):
            raise ConfigError(f"novelty must be True or False, got {self.novelty!r}.")
        if self.contamination != "auto" and not (isinstance(self.contamination, (int, float, np.number))
                                                 and 0 < self.contamination <= 0.5):
            raise ConfigError(f"contamination must be 'auto' or a number in (0, 0.5], got {self.contamination!r}.")
        self._kind.check_score(self.anomaly_score, type(self).__name__, allow_auto=True)


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
                     "mse+knn", "mse+latent+knn", "isolation", "knn+isolation", ...}
        Default anomaly score of :meth:`decision_function` (:mod:`aelab.scoring`, :data:`aelab.heads.HEADS`).
        "auto" resolves at fit (to ``score_``): "relative+latent" for data min-max scaled
        to [0, 1] (images); for other tables "knn" (the distance to the nearest training rows,
        averaged over 8 small bags of them), or with ``novelty=True`` "knn+isolation" (the mean
        distance to the 5 nearest of up to 4,096 rows plus an isolation forest's score of the
        row, each relative to its training mean). On tables neither uses the network: leave one
        data set out chose them over every sum with the reconstruction and code terms
        (docs/anomaly.md); those stay available by name. Called
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
        intensity, "sqrt" / "log1p" compress the range. "auto": "sqrt" for intensity
        images (the default score reads each image's own intensities back), "none" otherwise.
        Saved with the model and part of the exported ONNX graph.
    novelty : bool, default False
        True states that the training data are clean (normal samples only), as in
        scikit-learn's ``LocalOutlierFactor(novelty=True)``; False (the default) that they
        may hide anomalies. With True, ``trim="auto"`` resolves to 0 and, for tables,
        ``anomaly_score="auto"`` to "knn+isolation" with the 5 nearest of up to 4,096 training
        rows (not 8 bags of 16). See docs/anomaly.md, "Tables: contaminated or clean".
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

    @accepts_renamed
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
        if self.batch_size != "auto" and not positive_int(self.batch_size):
            raise ConfigError(f"batch_size must be a positive integer or 'auto', got {self.batch_size!r}.")
        if not positive_int(self.patience):
            raise ConfigError(f"patience must be a positive integer, got {self.patience!r}.")
        if self.epochs is not None and (not isinstance(self.epochs, (int, np.integer)) or self.epochs < 1):
            raise ConfigError(f"epochs must be a positive integer or None, got {self.epochs!r}.")
        if self.lr != "auto" and (not isinstance(self.lr, (int, float, np.number)) or isinstance(self.lr, bool)
                                  or not self.lr > 0):
            raise ConfigError(f"lr must be 'auto' or a number > 0, got {self.lr!r}.")
        if self.latent_dim is not None and (not isinstance(self.latent_dim, (int, np.integer)) or self.latent_dim < 1):
            raise ConfigError(f"latent_dim must be a positive integer or None, got {self.latent_dim!r}.")

    def _build(self, layout: Layout, scaler_kind: str) -> ModelConfig:
        arch = self.arch if self.arch != "auto" else auto_arch(layout.n_features, layout.image)
        if arch == "conv" and not layout.image:
            raise DataError(f"arch='conv' needs images (n, h, w) or (n, c, h, w); got per-sample shape "
                            f"{layout.input_shape}, read as a table. Use arch='dense' for tables, or "
                            "input_kind='image' if these are images.")
        d = layout.n_features
        k = int(self.latent_dim) if self.latent_dim is not None else auto_latent(d)
        shape = layout.image_shape if arch == "conv" else (d,)
        hidden = tuple(self.hidden) if self.hidden is not None else auto_hidden(d, k)
        output = "sigmoid" if scaler_kind == "minmax" and not self.linear else "identity"
        return ModelConfig(kind="autoencoder", input_shape=shape, latent_dim=k, arch=arch, hidden=hidden,
                           channels=tuple(self.channels), backbone=self.backbone, linear=bool(self.linear),
                           variational=self._kind.variational, output=output, activation=self.activation,
                           batch_norm=bool(self.batch_norm), mask_zeros=bool(self.mask_zeros))

    def _train_config(self, n_train: int, n_rows: int) -> TrainConfig:
        """Resolve the "auto" training settings for ``n_train`` training rows (per rank) of ``n_rows``
        (:func:`aelab.defaults.auto_training`); the gradient clip is the model kind's."""
        batch, lr, epochs = auto_training(self.batch_size, self.lr, self.epochs, n_train, n_rows)
        return TrainConfig(epochs=int(epochs), batch_size=batch, lr=lr,
                           weight_decay=float(self.weight_decay), validation_fraction=float(self.validation_fraction),
                           early_stopping=self._early_stopping(), patience=int(self.patience),
                           grad_clip=self._kind.grad_clip)

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

    def _kl_weight(self) -> float:
        """The weight of the KL term (the VAE's ``beta``); 1 for the other kinds, which have none."""
        return 1.0

    def _losses(self, model, recon_kind: str, forward=None):
        """(training loss of a batch, deterministic per-sample evaluation loss); see :meth:`aelab.kinds.ModelKind.losses`."""
        return self._kind.losses(model, forward, recon_kind, noise=float(self.noise), noise_type=self.noise_type,
                                 sparsity=float(self.sparsity), trim=self._trim(), beta=self._kl_weight())

    def _train(self, draft: Fitted, data, run: Run):
        """Train on ``data``, this rank's rows of the run's ``run.n`` (all of them in one process)."""
        return train_network(draft, data, run, self._train_config, self._losses, float(self.validation_fraction),
                             self.verbose)


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

    _kind = VARIATIONAL

    @accepts_renamed
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

    def _kl_weight(self) -> float:
        return float(self.beta)


class PCA(_Base):
    """Principal component analysis with the autoencoders' interface (closed form).

    Same layout rule, preprocessing, scores, thresholds and persistence as
    :class:`Autoencoder`; ``transform`` gives the k principal coordinates, ``sample``
    draws them from N(0, diag(explained variance)). The components come from the
    covariance accumulated chunk by chunk (float64, Chan's merge), so a streamed source
    gives the same model as the same rows in memory and never has to fit in memory.
    """

    _kind = PRINCIPAL  # fitted in closed form: nothing in the fit is random

    @accepts_renamed
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
        k = auto_latent(d) if self.n_components is None else int(self.n_components)
        if k > d:
            raise ConfigError(f"n_components={k} exceeds the number of features ({d}); "
                              f"choose n_components <= {d}.")
        return ModelConfig(kind="pca", input_shape=(d,), latent_dim=k, arch="dense",
                           hidden=(), linear=True, output="identity")

    def _train(self, draft: Fitted, data, run: Run):
        if draft.model_cfg.latent_dim > run.n:
            raise ConfigError(f"n_components={draft.model_cfg.latent_dim} exceeds the number of samples "
                              f"({run.n}); pass more samples or a smaller n_components.")
        fit_moments(draft, data, run.comm)
        return {"loss": [], "val_loss": []}, None

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
