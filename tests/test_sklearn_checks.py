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
}
# check_methods_subset_invariance used to be listed: the network's float32 products give a row scored in a batch of
# 20 and alone scores ~1e-6 apart. The table default ("knn+isolation") reads no network, and the check's other
# methods (transform, predict) agree within its 1e-7, so every estimator passes it now.


def _expected(est):
    return dict(EXPECTED_FAILURES)


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
