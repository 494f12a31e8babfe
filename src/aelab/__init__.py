"""aelab: autoencoders for unsupervised learning and anomaly detection, on PyTorch."""

import logging

from ._version import __version__

from . import exceptions  # noqa: E402
from .estimators import PCA, VAE, Autoencoder  # noqa: E402
from .estimators import load  # noqa: E402

logging.getLogger("aelab").addHandler(logging.NullHandler())


def __getattr__(name):  # lazy subpackages: `import aelab` imports only torch and numpy
    import importlib

    if name in {"datasets", "io", "metrics", "divergences", "thresholds", "nn", "plots", "report",
                "latent", "losses", "scoring", "preprocessing", "tutorial", "models", "config", "training", "layout", "fitted",
                "presets", "export"}:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'aelab' has no attribute {name!r}")


__all__ = ["Autoencoder", "VAE", "PCA", "load", "exceptions", "__version__"]
