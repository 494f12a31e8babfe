"""The neighbour distance of the "knn" scores: the fast path (one matrix product ranks the reference rows,
the k selected distances recomputed from direct differences) against direct differences in float64.

Tolerance: 1e-5 relative where the data are centred near the origin (float32 differences, summed in
float64); 2e-4 relative 10^4 away from the origin (the inputs themselves are float32 there: a difference
of two values near 1e4 carries an absolute error of about 1e-3, on distances of about 4).
"""

import numpy as np
import pytest
import torch

from aelab.heads import Knn, knn_distance


def direct(X, R, k, exclude=None):
    """Mean of the k smallest Euclidean distances, float64, by brute force (a row's own zero left out)."""
    X, R = np.asarray(X, np.float64), np.asarray(R, np.float64)
    D = np.sqrt(((X[:, None, :] - R[None]) ** 2).sum(-1))
    out = []
    for i, d in enumerate(D):
        d = np.sort(d)
        if exclude is not None and exclude[i]:
            d = d[1:]
        out.append(d[: min(k, len(d))].mean())
    return np.array(out)


@pytest.mark.parametrize("k", [1, 2, 5])
def test_fast_equals_direct_on_random_data(k):
    rng = np.random.default_rng(0)
    R = rng.normal(size=(128, 10)).astype(np.float32)
    X = rng.normal(size=(300, 10)).astype(np.float32) * 1.5
    got = knn_distance(torch.from_numpy(X), torch.from_numpy(R), k).numpy()
    np.testing.assert_allclose(got, direct(X, R, k), rtol=1e-5)


def test_duplicated_rows_and_ties():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(20, 4)).astype(np.float32)
    R = np.concatenate([base, base, base[:5]])  # every row twice, five three times: ties at every rank
    X = np.concatenate([base[:10], rng.normal(size=(10, 4)).astype(np.float32)])
    for k in (1, 2, 3, 4):
        got = knn_distance(torch.from_numpy(X), torch.from_numpy(R), k).numpy()
        np.testing.assert_allclose(got, direct(X, R, k), rtol=1e-5, atol=1e-6)
    # rows that are reference rows leave one copy of themselves out, and only that one
    own = np.r_[np.ones(10, bool), np.zeros(10, bool)]
    got = knn_distance(torch.from_numpy(X), torch.from_numpy(R), 2, exclude_self=torch.from_numpy(own)).numpy()
    np.testing.assert_allclose(got, direct(X, R, 2, own), rtol=1e-5, atol=1e-6)


def test_far_from_the_origin():
    rng = np.random.default_rng(2)
    R = (1e4 + rng.normal(size=(128, 10))).astype(np.float32)
    X = (1e4 + rng.normal(size=(200, 10))).astype(np.float32)
    got = knn_distance(torch.from_numpy(X), torch.from_numpy(R), 2).numpy()
    want = direct(X, R, 2)  # from the same float32 inputs
    assert want.min() > 1.0  # distances of order sqrt(2 * 10), not lost digits
    np.testing.assert_allclose(got, want, rtol=2e-4)


def test_k_larger_than_the_reference_averages_every_row():
    rng = np.random.default_rng(3)
    R = rng.normal(size=(20, 6)).astype(np.float32)
    X = rng.normal(size=(50, 6)).astype(np.float32)
    got = knn_distance(torch.from_numpy(X), torch.from_numpy(R), 50).numpy()
    np.testing.assert_allclose(got, direct(X, R, 50), rtol=1e-5)
    np.testing.assert_allclose(got, direct(X, R, 20), rtol=1e-5)


def test_the_head_is_the_same_whatever_the_batch():
    rng = np.random.default_rng(4)
    head = Knn(rng.normal(size=(128, 8)).astype(np.float32), 2)
    X = torch.from_numpy(rng.normal(size=(1000, 8)).astype(np.float32))
    whole = head(X, None)
    parts = torch.cat([head(X[i : i + 37], None) for i in range(0, 1000, 37)])
    assert torch.equal(whole, parts)
