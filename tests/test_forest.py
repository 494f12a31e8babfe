"""The isolation forest in the code space ("iforest" head): its tensor tables against scikit-learn's own forest,
its determinism by seed, the save/load round trip, the ONNX graph under a real ONNX Runtime session, a streamed
source, and the error for a model that kept no forest.

Tolerances: the tables reproduce scikit-learn's ``-score_samples`` to 1e-12 (the same comparisons, float64
means); ONNX Runtime to 1e-12 relative: the forest's arithmetic is float64 in the graph too, and every row takes
the same path through every tree (the float32 codes ONNX Runtime computes differ by ~1e-7, and no code of these
rows lies that close to a threshold; a path that differed would move the score by ~1e-3).
"""

import numpy as np
import pytest
import torch

import aelab
from aelab.exceptions import ConfigError
from aelab.forest import TABLES, average_path_length, fit_forest, forest_path, isolation_score


def tables(t):
    return [torch.from_numpy(np.asarray(t[k])) for k in TABLES]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(3, 8))
    X = (rng.normal(size=(400, 3)) @ W + 0.1 * rng.normal(size=(400, 8))).astype(np.float32)
    T = np.concatenate([X[:40], (3 * rng.normal(size=(20, 8))).astype(np.float32)])
    return X, T


@pytest.fixture(scope="module")
def model(data):
    return aelab.Autoencoder(anomaly_score="iforest", epochs=3, random_state=0).fit(data[0])


@pytest.mark.parametrize("n,d", [(1000, 5), (100, 3), (3, 2)])
def test_tables_score_as_scikit_learn_does(n, d):
    from sklearn.ensemble import IsolationForest

    rng = np.random.default_rng(n)
    Z = rng.normal(size=(n, d)).astype(np.float32)
    Q = np.concatenate([Z[:20], (2 * rng.normal(size=(50, d))).astype(np.float32)])
    t = fit_forest(Z, seed=3)
    got = isolation_score(forest_path(torch.from_numpy(Q), *tables(t), t["depth"]), t["c"]).numpy()
    want = -IsolationForest(max_samples=min(256, n), random_state=3).fit(Z).score_samples(Q)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert t["depth"] <= int(np.ceil(np.log2(min(256, n))))


def test_average_path_length_small_cases():
    np.testing.assert_allclose(average_path_length([0, 1, 2, 3]), [0, 0, 1, 2 * (np.log(2) + np.euler_gamma) - 4 / 3])


def test_the_head_scores_outliers_higher_and_lies_in_the_unit_interval(model, data):
    _, T = data
    s = model.decision_function(T)
    assert model.score_ == "iforest"
    assert np.all((s > 0) & (s < 1))
    assert s[40:].mean() > s[:40].mean() + 0.05  # the 20 rows off the training subspace isolate sooner


def test_forest_is_the_same_for_the_same_seed_and_differs_for_another(model, data):
    X, T = data
    again = aelab.Autoencoder(anomaly_score="iforest", epochs=3, random_state=0).fit(X)
    other = aelab.Autoencoder(anomaly_score="iforest", epochs=3, random_state=1).fit(X)
    f, g, h = model.fitted_.forest, again.fitted_.forest, other.fitted_.forest
    for k in TABLES:
        np.testing.assert_array_equal(f[k], g[k])
    assert (f["depth"], f["c"]) == (g["depth"], g["c"])
    np.testing.assert_array_equal(model.decision_function(T), again.decision_function(T))
    assert any(f[k].shape != h[k].shape or not np.array_equal(f[k], h[k]) for k in TABLES)


def test_save_load_round_trip_keeps_the_forest(model, data, tmp_path):
    _, T = data
    model.save(tmp_path / "m")
    back = aelab.load(tmp_path / "m")
    for k in TABLES:
        np.testing.assert_array_equal(back.fitted_.forest[k], model.fitted_.forest[k])
        assert back.fitted_.forest[k].dtype == model.fitted_.forest[k].dtype
    np.testing.assert_array_equal(back.decision_function(T), model.decision_function(T))
    np.testing.assert_array_equal(back.decision_scores_, model.decision_scores_)


def test_onnx_graph_under_onnxruntime_matches_torch(model, data, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    _, T = data
    path = tmp_path / "m.onnx"
    model.export_onnx(path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: T})[0].reshape(-1)
    np.testing.assert_allclose(got, model.decision_function(T), rtol=1e-12)
    # any batch size: the loop's node table is (rows, trees) for every batch
    one = sess.run(None, {sess.get_inputs()[0].name: T[:1]})[0].reshape(-1)
    np.testing.assert_allclose(one, got[:1], rtol=1e-12)


def test_a_streamed_source_gives_the_same_forest_as_the_array(model, data, tmp_path, monkeypatch):
    """The same rows are drawn and encoded from a source as from the array (the network given)."""
    from aelab.fitted import forest_state

    X, _ = data
    np.save(tmp_path / "X.npy", X)
    src = aelab.io.open_array(tmp_path / "X.npy")
    for seed in (0, 5):
        a = forest_state(model.fitted_, X, len(X), seed)
        b = forest_state(model.fitted_, src, len(X), seed)
        for k in TABLES:
            np.testing.assert_array_equal(a[k], b[k])
    # with fewer forest rows than training rows, the draw depends on the seed, and is the same from the source
    monkeypatch.setattr("aelab.forest.FOREST_ROWS", 100)
    c, d = forest_state(model.fitted_, src, len(X), 0), forest_state(model.fitted_, X, len(X), 0)
    e = forest_state(model.fitted_, X, len(X), 1)
    np.testing.assert_array_equal(c["threshold"], d["threshold"])
    assert c["threshold"].shape != e["threshold"].shape or not np.array_equal(c["threshold"], e["threshold"])


def test_a_model_without_the_forest_says_how_to_get_one(data):
    X, T = data
    plain = aelab.Autoencoder(anomaly_score="mse", epochs=1, random_state=0).fit(X)
    with pytest.raises(ConfigError, match="isolation forest .* anomaly_score='iforest'"):
        plain.decision_function(T, score="iforest")


# ---------------------------------------------------------------- standardised fusions (aelab.heads.register_fusion)
@pytest.fixture(scope="module")
def fused(data):
    return aelab.Autoencoder(anomaly_score="z:mse+latent+knn+iforest", epochs=3, random_state=0).fit(data[0])


def test_a_fusion_is_the_sum_of_its_terms_over_their_training_spread(fused, data):
    X, T = data
    f = fused.fitted_
    assert set(f.term_stats) == {"mse", "latent", "knn", "iforest"}
    want = sum(fused.decision_function(T, score=t) / f.term_stats[t][1] for t in f.term_stats)
    np.testing.assert_allclose(fused.decision_function(T), want, rtol=1e-12)
    # the statistics are those of the training rows (a reference row's own neighbour distance left out)
    for t in ("mse", "latent", "iforest"):
        v = fused.decision_function(X, score=t)
        np.testing.assert_allclose(f.term_stats[t][:2], (v.mean(), v.std()), rtol=1e-9)
        np.testing.assert_allclose(f.term_stats[t][2], np.sort(v), rtol=1e-9)
    assert f.term_stats["knn"][0] > 0 and np.isclose(f.term_stats["knn"][0], f.knn_mean, rtol=0.2)


def test_a_fusion_round_trips_and_exports(fused, data, tmp_path):
    _, T = data
    fused.save(tmp_path / "m")
    back = aelab.load(tmp_path / "m")
    assert back.fitted_.term_stats.keys() == fused.fitted_.term_stats.keys()
    for t, v in fused.fitted_.term_stats.items():
        assert back.fitted_.term_stats[t][:2] == v[:2]
        np.testing.assert_array_equal(back.fitted_.term_stats[t][2], v[2])
    np.testing.assert_array_equal(back.decision_function(T), fused.decision_function(T))
    pytest.importorskip("onnxruntime")
    from aelab.export.onnx import onnx_scores

    np.testing.assert_allclose(onnx_scores(back, T), fused.decision_function(T), rtol=1e-5)


def test_a_fusion_without_its_statistics_is_refused(model, data):
    with pytest.raises(ConfigError, match="training statistics of its terms"):
        model.decision_function(data[1], score="z:mse+latent+knn+iforest")


def test_a_rank_fusion_sums_the_training_cdfs_and_exports(fused, data, monkeypatch, tmp_path):
    """A rank fusion registered on the spot scores from the fit of another fusion (every term's statistics are
    kept): the sum of the shares of training values at or below each term, the same in the ONNX graph."""
    from aelab.heads import HEADS, register_fusion

    monkeypatch.setitem(HEADS, "r:test", None)  # removed again on exit
    register_fusion("r:test", ("mse", "knn", "iforest"), rule="rank")
    X, T = data
    f = fused.fitted_
    want = sum(np.searchsorted(f.term_stats[t][2], fused.decision_function(T, score=t), side="right") / len(X)
               for t in ("mse", "knn", "iforest"))
    got = fused.decision_function(T, score="r:test")
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got.min() >= 0 and got.max() <= 3 and got[40:].mean() > got[:40].mean()
    pytest.importorskip("onnxruntime")
    from aelab.export.onnx import onnx_scores

    onnx = onnx_scores(fused, T, "r:test")
    # rows that are training rows tie with their own stored values, which the float32 graph's terms (within ~1e-7)
    # may fall either side of: one count per term at most; fresh rows lie nowhere near a stored value
    assert np.abs(onnx[:40] - got[:40]).max() <= 3 / len(X) + 1e-12
    np.testing.assert_allclose(onnx[40:], got[40:], atol=1e-12)
    # the Shapley sampler scores its path points with the head's own formula (the neighbour term swapped in)
    from aelab.shapley import _PointScorer

    points = f.to_net(T[40:]).reshape(len(T) - 40, -1)
    np.testing.assert_allclose(_PointScorer(f, "r:test", f.score_stats())(points), got[40:], atol=1e-12)


def test_explain_error_method_refuses_the_forest_and_shapley_explains_it(fused, data):
    X, T = data
    with pytest.raises(ConfigError, match="no exact per-input split.*method='shapley'"):
        fused.explain(T[:3], method="error")
    e = fused.explain(T[-3:], method="shapley", background=X[:50])
    np.testing.assert_allclose(e.score, fused.decision_function(T[-3:]), rtol=1e-12)
    np.testing.assert_allclose(e.contributions.reshape(3, -1).sum(1) + e.base_value, e.score, rtol=1e-6)


@pytest.mark.slow
def test_two_ranks_fit_the_forest_and_fusion_one_process_fits(data, tmp_path):
    """Data-parallel (2 ranks, a streamed source), PCA (closed form, so the codes agree to rounding): the forest
    is fitted on the same drawn rows, the fusion's statistics are gathered over the ranks."""
    import aelab.distributed as D

    X, T = data
    np.save(tmp_path / "x.npy", X)
    params = dict(n_components=3, anomaly_score="z:mse+latent+knn+iforest", random_state=0)
    one = aelab.PCA(**params).fit(X)
    two = D.fit(aelab.PCA(**params), aelab.io.open_array(tmp_path / "x.npy", chunk_rows=64), nproc=2, threads=1)
    f, g = one.fitted_, two.fitted_
    for k in ("feature", "left", "right"):
        np.testing.assert_array_equal(g.forest[k], f.forest[k])
    np.testing.assert_allclose(g.forest["threshold"], f.forest["threshold"], rtol=1e-5, atol=1e-6)
    for t, v in f.term_stats.items():
        np.testing.assert_allclose(g.term_stats[t][:2], v[:2], rtol=1e-5)
        np.testing.assert_allclose(g.term_stats[t][2], v[2], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(two.decision_function(T), one.decision_function(T), rtol=1e-4)
