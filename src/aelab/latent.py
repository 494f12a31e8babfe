"""Tasks in the latent space: encoding files, clustering, interpolation, the 2-D manifold.

These are the library functions behind the ``encode``, ``score`` and ``cluster``
commands and the tutorial's generation section.
"""

from __future__ import annotations

import numpy as np

from ._validation import check_array, check_is_fitted, is_source
from .exceptions import ConfigError, DataError
from .kinds import kind_of


def _stream_to_file(est, source, out_path, fn, trailing_shape, dtype) -> None:
    from .io import write_rows

    from ._columns import NamedArray, check_feature_names
    from ._validation import iter_checked_chunks

    check_feature_names(source, est.fitted_.feature_names, type(est).__name__)  # once, not per chunk
    names = source.columns if est.fitted_.feature_names is not None else None
    with write_rows(out_path, len(source), trailing_shape, dtype) as w:
        for chunk in iter_checked_chunks(source):  # a bad value is named by its row in the whole file
            w.write(np.asarray(fn(chunk if names is None else NamedArray(chunk, names)), dtype=dtype))


def score_to_file(est, X, out_path, score: str | None = None) -> np.ndarray | None:
    """Write one anomaly score per row of ``X`` to ``out_path`` (npy, csv or parquet by extension).

    A chunked source (``aelab.io.open_array``) is scored chunk by chunk straight to the file
    (.npy or .csv), so memory stays bounded; an array is scored in memory and the scores
    are also returned. The file is written atomically.
    """
    check_is_fitted(est)
    if is_source(X):
        _stream_to_file(est, X, out_path, lambda c: est.decision_function(c, score=score), (), np.float64)
        return None
    from .io import write_array

    s = est.decision_function(X, score=score)
    write_array(out_path, s)
    return s


def encode_to_file(est, X, out_path) -> np.ndarray | None:
    """Write the latent codes of ``X`` to ``out_path`` (streamed for chunked sources)."""
    check_is_fitted(est)
    if is_source(X):
        _stream_to_file(est, X, out_path, est.transform, (est.model_cfg_.latent_dim,), np.float32)
        return None
    from .io import write_array

    Z = est.transform(X)
    write_array(out_path, Z)
    return Z


def cluster(est, X, k: int, labels=None, random_state=0) -> dict:
    """k-means with ``k`` clusters on the latent codes of ``X``.

    Returns ``{"labels": cluster index per sample, "inertia": ...}`` plus the adjusted Rand
    index and normalised mutual information against ``labels`` when given.
    """
    from sklearn.cluster import KMeans

    if not isinstance(k, (int, np.integer)) or k < 2:
        raise ConfigError(f"k must be an integer >= 2, got {k!r}.")
    Z = est.transform(X) if est is not None else check_array(X).reshape(len(X), -1)
    if Z.shape[0] < k:
        raise DataError(f"cannot form {k} clusters from {Z.shape[0]} samples; pass more data or a smaller k.")
    km = KMeans(n_clusters=k, n_init=10, random_state=random_state).fit(Z)
    out = {"labels": km.labels_, "inertia": float(km.inertia_)}
    if labels is not None:
        from .metrics import clustering_scores

        labels = np.asarray(labels).ravel()
        if labels.shape[0] != Z.shape[0]:
            raise DataError(f"labels has {labels.shape[0]} entries but the data has {Z.shape[0]} samples.")
        out.update(clustering_scores(labels, km.labels_))
    return out


def interpolate(est, x_a, x_b, steps: int = 8) -> np.ndarray:
    """Decode ``steps`` points on the straight line between the codes of ``x_a`` and ``x_b``."""
    check_is_fitted(est)
    if steps < 2:
        raise ConfigError(f"steps must be >= 2, got {steps!r}.")
    xa = np.asarray(x_a)[None]
    xb = np.asarray(x_b)[None]
    za, zb = est.transform(xa)[0], est.transform(xb)[0]
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
    return est.inverse_transform((1 - t) * za + t * zb)


def manifold(est, n: int = 15, span: float | None = None) -> np.ndarray:
    """Decode an ``n`` x ``n`` grid over a 2-D latent space; shape (n, n, *input_shape).

    For a VAE the grid runs over the prior's quantiles (5% to 95%, via the inverse normal
    CDF, as in Kingma & Welling's figure); otherwise over ``span`` standard deviations
    (default 2) around the mean of the training codes.
    """
    from scipy.stats import norm

    check_is_fitted(est)
    if est.model_cfg_.latent_dim != 2:
        raise ConfigError(f"the manifold plot needs latent_dim=2, but this model has {est.model_cfg_.latent_dim}.")
    if kind_of(est.model_cfg_).variational and span is None:
        axes = [norm.ppf(np.linspace(0.05, 0.95, n))] * 2
    else:
        sd = np.sqrt(np.diag(est.latent_cov_))
        axes = [est.latent_mean_[i] + (span or 2.0) * sd[i] * np.linspace(-1, 1, n) for i in range(2)]
    g0, g1 = np.meshgrid(axes[0], axes[1][::-1])
    Z = np.stack([g0.ravel(), g1.ravel()], axis=1).astype(np.float32)
    out = est.inverse_transform(Z)
    return out.reshape(n, n, *out.shape[1:])
