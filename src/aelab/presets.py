"""Published recipes as configured estimators: settings of :class:`~aelab.Autoencoder`, not new classes.

* :func:`adc2021`: the dense autoencoder of the CMS level-1 trigger studies (ADC2021,
  AXOL1TL): 57 inputs (MET, 4 electrons, 4 muons, 10 jets, each pT, eta, phi, as
  :func:`aelab.datasets.load_adc2021` returns them), encoder 32-16-3 and a mirrored
  decoder, batch norm and leaky ReLU, trained on the mean squared error of the objects
  that are present only (``mask_zeros=True``: zero padding adds no error), scored by the
  same error, the score the firmware computes.
"""

from __future__ import annotations

from .estimators import Autoencoder

__all__ = ["adc2021", "ADC2021_PARAMS"]

#: The settings of :func:`adc2021`.
ADC2021_PARAMS = dict(
    arch="dense", hidden=(32, 16), latent_dim=3, activation="leaky_relu", batch_norm=True,
    mask_zeros=True,    # absent objects (all-zero rows of the event) are not reconstructed
    scaler="scale",     # each column divided by its root mean square: zero padding stays 0
    anomaly_score="mse", novelty=True,  # background-only training data; no trimming, no neighbour term
    batch_size=1024, lr=3e-3, validation_fraction=0.1,
)


def adc2021(**overrides) -> Autoencoder:
    """The ADC2021 / AXOL1TL dense autoencoder (57-32-16-3-16-32-57) as an :class:`~aelab.Autoencoder`.

    ``overrides`` replace any of :data:`ADC2021_PARAMS` or set other parameters
    (``epochs``, ``random_state``, ...). Fit it on background events from
    ``aelab.datasets.load_adc2021(path)``; the default score ("mse") is the mean squared
    error over the objects that are present.

    Examples
    --------
    >>> import aelab
    >>> ae = aelab.presets.adc2021(epochs=2, random_state=0)
    >>> ae.hidden, ae.latent_dim, ae.batch_norm
    ((32, 16), 3, True)
    """
    return Autoencoder(**{**ADC2021_PARAMS, **overrides})
