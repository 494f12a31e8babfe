"""The table defaults: the bagged neighbour distance ("knn" when the training rows may hold anomalies,
aelab.neighbours) and, for clean tables, "knn+isolation": that distance plus the isolation forest on the inputs
("isolation"), each over its training mean (here fitted with the bags, to test both parts at once).

Checked against numpy and scikit-learn by hand: the bagged distance is the mean of the bags' own k-NN
distances, a reference row skips itself only in the bags that hold it, the bags are the successive draws of
the fit's seed (the same from an array and from a streamed source), the "isolation" head is scikit-learn's
IsolationForest on the scaled rows (to 1e-12), and the default is the sum of the two terms over their means.
"""

import numpy as np
import pytest
import torch

import aelab
from aelab.fitted import input_forest_state, reference_rows
from aelab.forest import fit_forest
from aelab.heads import Forest, Knn
from aelab.neighbours import knn_distance, knn_indices, _knn_tables


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(4)
    A = rng.normal(size=(6, 3))
    X = (rng.normal(size=(700, 3)) @ A.T + 0.1 * rng.normal(size=(700, 6))).astype(np.float32)
    X[:10] += 3.0 * rng.normal(size=(10, 6)).astype(np.float32)  # ten rows off the plane, among the training rows
    return X


@pytest.fixture(scope="module")
def model(table):
    return aelab.Autoencoder(anomaly_score="knn+isolation", epochs=3, random_state=0).fit(table)


def _hand_knn(Q, R, k, skip_zero=None):
    d = np.sqrt(((Q[:, None, :].astype(np.float64) - R[None].astype(np.float64)) ** 2).sum(-1))
    d = np.sort(d, axis=1)
    out = d[:, :k].mean(1)
    if skip_zero is not None:  # rows whose nearest is themselves (distance 0) skip it
        own = skip_zero & (d[:, 0] == 0)
        out[own] = d[own, 1 : k + 1].mean(1)
    return out


def test_the_bagged_distance_is_the_mean_of_the_bags_distances():
    rng = np.random.default_rng(0)
    R = rng.normal(size=(4 * 30, 5)).astype(np.float32)
    Q = rng.normal(size=(50, 5)).astype(np.float32)
    for k in (1, 3):  # k = 1 (the default's, in sets of 1,000 rows or more) takes a minimum, not a top-k
        got = knn_distance(torch.from_numpy(Q), torch.from_numpy(R), k, bags=4).numpy()
        want = np.mean([_hand_knn(Q, R[b * 30 : (b + 1) * 30], k) for b in range(4)], axis=0)
        np.testing.assert_allclose(got, want, rtol=1e-5)
    got = knn_distance(torch.from_numpy(Q), torch.from_numpy(R), 3, bags=4).numpy()
    # one bag is the plain k-NN distance, and differs from the bagged one
    one = knn_distance(torch.from_numpy(Q), torch.from_numpy(R), 3).numpy()
    np.testing.assert_allclose(one, _hand_knn(Q, R, 3), rtol=1e-5)
    assert np.abs(one - got).max() > 1e-3
    # the head computes the same, and its indices are the k nearest of every bag
    head = Knn(torch.from_numpy(R), 3, bags=4)
    np.testing.assert_allclose(head(torch.from_numpy(Q), None).numpy(), got, rtol=1e-12)
    centre, _, ref_t, ref_sq = _knn_tables(torch.from_numpy(R))
    idx = knn_indices(torch.from_numpy(Q) - centre, ref_t, ref_sq, 3, 4).numpy()
    assert idx.shape == (50, 12) and all(((idx[:, 3 * b : 3 * b + 3] // 30) == b).all() for b in range(4))


def test_a_reference_row_skips_itself_only_in_the_bags_that_hold_it():
    rng = np.random.default_rng(1)
    pool = rng.normal(size=(60, 4)).astype(np.float32)
    bags = [np.sort(rng.permutation(60)[:20]) for _ in range(3)]  # overlapping draws, as the fit draws them
    R = np.concatenate([pool[b] for b in bags])
    mask = torch.ones(60, dtype=torch.bool)
    got = knn_distance(torch.from_numpy(pool), torch.from_numpy(R), 2, exclude_self=mask, bags=3).numpy()
    want = np.mean([_hand_knn(pool, pool[b], 2, skip_zero=np.isin(np.arange(60), b)) for b in bags], axis=0)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_the_bags_are_the_seeds_successive_draws_from_an_array_or_a_source(table, tmp_path):
    n = len(table)
    ref, mask = reference_rows(table, lambda a: np.asarray(a, np.float32), n, 7, 100, bags=3)
    rng = np.random.default_rng(7)
    draws = [np.sort(rng.permutation(n)[:100]) for _ in range(3)]
    np.testing.assert_array_equal(ref, np.concatenate([table[d] for d in draws]))
    np.testing.assert_array_equal(np.flatnonzero(mask), np.unique(np.concatenate(draws)))
    # one bag: the draw of before (the same rows as the first bag)
    one, _ = reference_rows(table, lambda a: np.asarray(a, np.float32), n, 7, 100)
    np.testing.assert_array_equal(one, ref[:100])
    np.save(tmp_path / "x.npy", table)
    src = aelab.io.open_array(tmp_path / "x.npy", chunk_rows=64)
    again, mask2 = reference_rows(src, lambda a: np.asarray(a, np.float32), n, 7, 100, bags=3)
    np.testing.assert_array_equal(again, ref)
    np.testing.assert_array_equal(mask2, mask)


def test_isolation_is_scikit_learns_isolation_forest_on_the_scaled_rows(model, table):
    from sklearn.ensemble import IsolationForest

    f = model.fitted_
    Xn = f.to_net(table).reshape(len(table), -1)
    rng = np.random.default_rng(2)
    Q = (table[:40] + rng.normal(size=(40, 6)).astype(np.float32))
    Qn = torch.from_numpy(f.to_net(Q))
    for seed in (0, 3):
        want = -IsolationForest(random_state=seed).fit(Xn).score_samples(Qn.reshape(40, -1).numpy())
        head = Forest(fit_forest(Xn, seed), space="input")
        np.testing.assert_allclose(head(Qn, None).numpy(), want, rtol=1e-12)
    # the fitted model's forest is the one the post-fit pass fits on its training rows with its seed
    again = input_forest_state(f, table, len(table), 0)
    for k in ("feature", "threshold", "left", "right", "value"):
        np.testing.assert_array_equal(again[k], f.input_forest[k])


def test_the_default_is_the_two_terms_over_their_training_means(model, table):
    assert model.score_ == "knn+isolation"
    f = model.fitted_
    rng = np.random.default_rng(3)
    Q = table[100:160] + 0.5 * rng.normal(size=(60, 6)).astype(np.float32)
    knn, iso = model.decision_function(Q, score="knn"), model.decision_function(Q, score="isolation")
    want = knn / f.term_stats["knn"][0] + iso / f.term_stats["isolation"][0]
    np.testing.assert_allclose(model.decision_function(Q), want, rtol=1e-12)
    # the training means are over the training rows (a reference row leaving itself out)
    np.testing.assert_allclose(f.term_stats["isolation"][0], model.decision_function(table, score="isolation").mean(),
                               rtol=1e-9)
    # the ten rows off the plane score above the rest
    s = model.decision_scores_
    assert s[:10].min() > np.quantile(s[10:], 0.9)


def test_small_tables_take_one_bag_and_save_load_keeps_the_bags(table, tmp_path):
    small = aelab.Autoencoder(epochs=2, random_state=0).fit(table[:14])  # fewer rows than a bag holds
    assert small.fitted_.knn_bags == 1 and small.score_ == "knn"
    big = aelab.Autoencoder(epochs=2, random_state=0).fit(table)
    assert big.score_ == "knn" and big.fitted_.knn_bags == 8 and len(big.fitted_.knn_ref) == 8 * 16
    clean = aelab.Autoencoder(epochs=2, random_state=0, novelty=True).fit(table)
    assert clean.score_ == "knn+isolation" and clean.fitted_.knn_bags == 1 and clean.fitted_.input_forest
    big.save(tmp_path / "m")
    back = aelab.load(tmp_path / "m")
    assert back.fitted_.knn_bags == 8
    np.testing.assert_array_equal(back.decision_function(table), big.decision_function(table))
    np.testing.assert_array_equal(back.decision_function(table, score="knn"), big.decision_function(table, score="knn"))


def test_the_isolation_split_weighs_each_split_by_the_rows_it_cut_away():
    """Trees walked by hand in scikit-learn's own structure: a split on feature j that leaves the row with the
    share s of its node's rows adds -log s to feature j; along a path they add up to log(root rows / leaf rows)."""
    from sklearn.ensemble import IsolationForest

    from aelab.forest import forest_split

    rng = np.random.default_rng(5)
    X = rng.normal(size=(200, 4)).astype(np.float32)
    Q = np.concatenate([X[:20], rng.normal(size=(20, 4)).astype(np.float32) * 3])
    t = fit_forest(X, 11, n_trees=3)
    got = forest_split(torch.from_numpy(Q), *(torch.from_numpy(np.asarray(t[k]))
                                               for k in ("feature", "threshold", "left", "right", "share")), t["depth"])
    forest = IsolationForest(n_estimators=3, max_samples=200, random_state=11).fit(X)
    want = np.zeros_like(Q, dtype=np.float64)
    total = np.zeros(len(Q))
    for est, used in zip(forest.estimators_, forest.estimators_features_):
        tr = est.tree_
        for i, q in enumerate(Q):
            node = 0
            while tr.children_left[node] >= 0:
                j = used[tr.feature[node]]
                child = tr.children_left[node] if q[j] <= tr.threshold[node] else tr.children_right[node]
                want[i, j] -= np.log(tr.n_node_samples[child] / tr.n_node_samples[node])
                node = child
            total[i] += np.log(tr.n_node_samples[0] / tr.n_node_samples[node])
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
    np.testing.assert_allclose(got.numpy().sum(1), total, rtol=1e-12)


def test_the_error_split_of_the_default_adds_up_and_names_the_moved_feature(model, table):
    Q = table[200:260].copy()
    Q[:, 4] += 6 * table[:, 4].std()
    e = model.explain(Q, method="error")
    assert e.exact and e.method == "error" and e.score_name == "knn+isolation"
    np.testing.assert_allclose(e.flat.sum(1), model.decision_function(Q), rtol=1e-9)
    assert (e.flat.argmax(1) == 4).mean() >= 0.9
    iso = model.explain(Q, method="error", score="isolation")
    np.testing.assert_allclose(iso.flat.sum(1), model.decision_function(Q, score="isolation"), rtol=1e-9)
    # the forest's own split is a stated rule, not a decomposition: it names the moved feature less sharply
    # (its splits on the other features narrow the row's company too), but far above chance (1 in 6)
    assert (iso.flat >= 0).all() and (iso.flat.argmax(1) == 4).mean() >= 0.75
    # the code-space forest has no such split: the error method says what to use instead
    fused = aelab.Autoencoder(anomaly_score="z:mse+latent+knn+iforest", epochs=2, random_state=0).fit(table)
    with pytest.raises(aelab.exceptions.ConfigError, match="shapley"):
        fused.explain(Q[:3], method="error", score="iforest")


def test_the_onnx_attribution_graph_carries_the_forest_split(model, table, tmp_path):
    """export_onnx(output="attribution") of "knn+isolation" under a real ONNX Runtime session: the same split as
    explain(method="error") (float32 arithmetic in the graph: 1e-5 of the largest contribution), summing to the
    exported score."""
    ort = pytest.importorskip("onnxruntime")
    Q = table[300:337].copy()
    Q[:, 2] += 4 * table[:, 2].std()
    sess = ort.InferenceSession(str(model.export_onnx(tmp_path / "a.onnx", output="attribution")),
                                providers=["CPUExecutionProvider"])
    a = sess.run(None, {sess.get_inputs()[0].name: Q})[0]
    e = model.explain(Q, method="error")
    np.testing.assert_allclose(a, e.contributions, rtol=1e-4, atol=1e-5 * np.abs(e.flat).max())
    score = ort.InferenceSession(str(model.export_onnx(tmp_path / "s.onnx")), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(a.sum(axis=1), score.run(None, {score.get_inputs()[0].name: Q})[0].ravel(), rtol=1e-6)
