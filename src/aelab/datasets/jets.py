"""A small synthetic stand-in for Lund-plane jet images, for tests, examples and docs.

:func:`make_jet_images` draws two families of (n, size, size) images of transverse
momenta in the layout of the primary Lund plane (column: ln(1/Delta), wide angles on the
left; row: ln(kt), hard emissions at the top; each pixel holds the pT of the harder
branch after the emission, 0 where nothing was emitted):

* ``"qcd"``: many soft emissions (momentum fractions z of 1-10%) anywhere below the
  kinematic limit, now and then a semi-hard one at wide angle; many lit pixels and a
  large total intensity: the *complex* family;
* ``"top"``: one or two hard splittings (z of 20-50%) at wide angle and high kt, the
  cartoon of t -> bW -> bqq, then fewer soft emissions; fewer lit pixels and less total
  intensity after the hard splits: the *simple* family.

It is a cartoon with the property that matters for anomaly detection, not a
simulation: the two families differ in where the emissions are, and also in how many
there are and how bright the image is, so a score that follows intensity or complexity
flags one direction and misses the other. No download, no randomness outside
``random_state``.
"""

from __future__ import annotations

import numpy as np

from ..exceptions import ConfigError

__all__ = ["JET_KINDS", "make_jet_images"]

JET_KINDS = ("qcd", "top")


def make_jet_images(n: int, kind: str = "qcd", size: int = 24, random_state=None, pt: float = 600.0) -> np.ndarray:
    """``n`` images (n, size, size) float32 of the family ``kind`` ("qcd" or "top"), jet pT about ``pt``."""
    if kind not in JET_KINDS:
        raise ConfigError(f"kind={kind!r} is not known; expected one of {JET_KINDS}.")
    if not isinstance(size, (int, np.integer)) or size < 8:
        raise ConfigError(f"size must be an integer >= 8, got {size!r}.")
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"n must be a positive integer, got {n!r}.")
    rng = np.random.default_rng(random_state)
    X = np.zeros((n, size, size), np.float32)
    s = size
    for i in range(n):
        p = pt * rng.uniform(0.9, 1.1)
        if kind == "top":
            hard = [(rng.uniform(0, 0.3 * s), rng.uniform(0.1 * s, 0.4 * s))]
            if rng.random() < 0.7:  # the W's own decay, at a smaller angle
                hard.append((rng.uniform(0.15 * s, 0.5 * s), rng.uniform(0.2 * s, 0.5 * s)))
            zs = [rng.uniform(0.2, 0.5) for _ in hard]
            n_soft = rng.poisson(3)
        else:
            hard = [(rng.uniform(0, 0.5 * s), rng.uniform(0.1 * s, 0.5 * s))] if rng.random() < 0.4 else []
            zs = [rng.uniform(0.05, 0.2) for _ in hard]  # now and then a semi-hard wide-angle emission
            n_soft = 4 + rng.poisson(6)
        for (c, r), z in zip(hard, zs):
            p *= 1 - z
            X[i, int(r), int(c)] = max(X[i, int(r), int(c)], p)
        for _ in range(n_soft):  # soft emissions anywhere below the kinematic limit (kt falls with the angle)
            c = rng.uniform(0, s)
            r = rng.uniform(min(0.3 * s + 0.5 * c, s - 1), s)
            p *= 1 - rng.uniform(0.01, 0.1)
            X[i, int(r), int(c)] = max(X[i, int(r), int(c)], p)
    return X
