"""scikit-learn's own estimator checks, run on every estimator.

Each check passes, or is listed in EXPECTED_FAILURES with the deliberate reason
(docs/sklearn.md repeats the list).
"""

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

import aelab

ESTIMATORS = [aelab.Autoencoder(epochs=2, random_state=0), aelab.VAE(epochs=2, random_state=0),
              aelab.PCA(n_components=1, random_state=0)]

EXPECTED_FAILURES = {
    "check_estimators_unfitted": (
        "aelab.exceptions.NotFittedError subclasses ValueError and AttributeError, as scikit-learn's does, "
        "but not scikit-learn's class itself: that would make `import aelab` import scikit-learn "
        "(1.4 s and 170 MB on every command-line call)."),
    "check_methods_subset_invariance": (
        "scores of a row computed in a batch of 20 and alone differ by about 1e-6 relative (float32 "
        "matrix products are blocked differently for different batch sizes); the check demands 1e-7."),
}


def _expected(est):
    # PCA (one small product per row) happens to give the same scores for every batch size
    skip = {"check_methods_subset_invariance"} if isinstance(est, aelab.PCA) else set()
    return {k: v for k, v in EXPECTED_FAILURES.items() if k not in skip}


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
