"""One fitted state and one layout rule: the same data gives the same, right model on every path.

Each test here failed on the main of 2026-12-03 (issue 14) for the reason its docstring names.
"""

import logging

import numpy as np
import pytest
import torch

import aelab
from aelab.exceptions import ConfigError, DataError, NotFittedError, TrainingError
from aelab.metrics import roc_auc
from aelab.training import validation_split


def _events(rng, n, eta_scale):
    """Collider-style events (n, 19, 3) of (pT, eta, phi), as load_lhco / ADC2021 lay them out."""
    pt = rng.exponential(30.0, size=(n, 19)) + 5
    eta = rng.normal(0, 1.0, size=(n, 19)) * eta_scale
    phi = rng.uniform(-np.pi, np.pi, size=(n, 19))
    return np.stack([pt, eta, phi], -1).astype(np.float32)


# ---------------------------------------------------------------------- the layout rule
def test_collider_events_are_tables_of_objects(caplog):
    """Was: (n, 19, 3) read as greyscale images (one global min-max, sigmoid): AUROC at chance."""
    rng = np.random.default_rng(0)
    X_train = _events(rng, 2000, 1.0)
    X_test = np.concatenate([_events(rng, 500, 1.0), _events(rng, 500, 2.0)])  # anomalies differ in eta only
    y = np.r_[np.zeros(500), np.ones(500)]
    with caplog.at_level(logging.INFO, logger="aelab"):
        ae3 = aelab.Autoencoder(epochs=30, random_state=0).fit(X_train)
    assert "table of objects" in caplog.text and "(2000, 19, 3)" in caplog.text
    assert ae3.input_kind_ == "table" and ae3.scaler_.kind == "standard" and ae3.scaler_.offset.size == 57
    assert ae3.model_cfg_.output == "identity" and ae3.score_ == "knn" and ae3.model_cfg_.arch == "dense"
    auc3 = roc_auc(y, ae3.decision_function(X_test))
    ae2 = aelab.Autoencoder(epochs=30, random_state=0).fit(X_train.reshape(2000, 57))
    auc2 = roc_auc(y, ae2.decision_function(X_test.reshape(1000, 57)))
    assert auc3 >= 0.9 and auc2 >= 0.9 and abs(auc3 - auc2) <= 0.02, (auc3, auc2)
    assert ae3.reconstruct(X_test[:4]).shape == (4, 19, 3)
    # the rule can be overruled, and then the images' treatment applies
    img = aelab.Autoencoder(epochs=1, random_state=0, input_kind="image").fit(X_train[:200])
    assert img.input_kind_ == "image" and img.scaler_.kind == "minmax" and img.scaler_.offset.size == 1


@pytest.mark.parametrize("as_float", [False, True])
def test_greyscale_images_stay_images_uint8_or_floats_in_unit_range(digits, as_float):
    X = digits[0][:300]
    X = X / np.float32(255) if as_float else X  # MNIST divided by 255: the commonest input there is
    est = aelab.Autoencoder(epochs=1, random_state=0).fit(X)
    assert est.input_kind_ == "image" and est.scaler_.kind == "minmax" and est.scaler_.offset.size == 1
    assert est.model_cfg_.output == "sigmoid" and est.score_ == "relative+latent"
    # whole numbers in [0, 255] (uint8 pixels cast to float) are pixels too
    assert aelab.Autoencoder(epochs=1, random_state=0).fit(X.astype(np.float64)).input_kind_ == "image"


def test_layout_rule_table_image_and_errors():
    from aelab.layout import resolve_layout
    from aelab.preprocessing import RunningStats

    def kind(X, input_kind="auto"):
        return resolve_layout(input_kind, X.shape, RunningStats.of(X)).kind

    rng = np.random.default_rng(0)
    assert kind(rng.normal(size=(5, 4))) == "table"
    assert kind(rng.uniform(size=(5, 8, 8))) == "image"
    assert kind(rng.integers(0, 17, size=(5, 8, 8)).astype(np.float64)) == "image"  # sklearn's digits as images
    assert kind(rng.normal(size=(5, 700, 3))) == "table"  # LHCO events (n, particles, (pT, eta, phi))
    assert kind(rng.uniform(size=(5, 3, 8, 8))) == "image"
    assert kind(rng.normal(size=(5, 8, 8)), "image") == "image"
    assert kind(rng.uniform(size=(5, 8, 8)), "table") == "table"
    with pytest.raises(DataError, match="input_kind='image' needs images"):
        kind(rng.normal(size=(5, 4)), "image")
    with pytest.raises(ConfigError, match="input_kind='grid'"):
        aelab.Autoencoder(input_kind="grid").fit(rng.normal(size=(5, 4)))


def test_uint8_tables_are_min_max_scaled_per_column_as_documented(digits):
    """Was: the cast to float32 came before the rule looked at the dtype, so uint8 tables were standardised."""
    X = digits[0][:300].reshape(300, 784)
    est = aelab.Autoencoder(epochs=1, random_state=0).fit(X)
    assert est.input_kind_ == "table" and est.scaler_.kind == "minmax" and est.scaler_.offset.size == 784
    assert est.model_cfg_.output == "sigmoid"


# ---------------------------------------------------------------------- streamed = in memory
def test_streamed_fit_takes_the_same_decisions_and_model_as_in_memory(tmp_path):
    """Was: scaler, output and score decided from the first 10,000 rows; no validation split when streamed."""
    rng = np.random.default_rng(0)
    W = rng.normal(size=(3, 8))
    n = 12_000
    X = (rng.normal(size=(n, 3)) @ W + 0.1 * rng.normal(size=(n, 8))).astype(np.float32)
    X = (X - X.min()) / (X.max() - X.min())      # all in [0, 1] ...
    X[10_000:] *= 3                               # ... except the rows after the first 10,000
    X_out = rng.uniform(0, 3, size=(400, 8)).astype(np.float32)
    y = np.r_[np.zeros(1000), np.ones(400)]
    np.save(tmp_path / "x.npy", X)
    kw = dict(epochs=4, batch_size=128, random_state=0)
    mem = aelab.Autoencoder(**kw).fit(X)
    with aelab.io.open_array(tmp_path / "x.npy", chunk_rows=1000) as src:
        streamed = aelab.Autoencoder(**kw).fit(src)
    for est in (mem, streamed):
        assert est.scaler_.kind == "standard" and est.model_cfg_.output == "identity" and est.score_ == "knn"
        assert len(est.history_["val_loss"]) == len(est.history_["loss"]) == 4
    np.testing.assert_allclose(streamed.scaler_.offset, mem.scaler_.offset, rtol=1e-6)
    np.testing.assert_allclose(streamed.scaler_.scale, mem.scaler_.scale, rtol=1e-6)
    X_test = np.concatenate([X[-1000:], X_out])
    auc_mem, auc_str = (roc_auc(y, e.decision_function(X_test)) for e in (mem, streamed))
    assert abs(auc_mem - auc_str) <= 0.01, (auc_mem, auc_str)
    # the validation rows are the same rows on both paths: a streamed epoch never trains on them
    val_idx, _ = validation_split(n, 0.1, torch.Generator().manual_seed(0))
    for est in (mem, streamed):
        assert min(est.history_["val_loss"]) == pytest.approx(
            est.decision_function(X[val_idx.numpy()], score="mse").mean(), rel=1e-5)


def test_streamed_pca_equals_in_memory_pca(tmp_path):
    """Was: streamed PCA concatenated the whole source in memory."""
    rng = np.random.default_rng(1)
    X = (rng.normal(size=(5000, 4)) @ rng.normal(size=(4, 12)) + 100.0).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    mem = aelab.PCA(n_components=3, random_state=0).fit(X)  # the seed picks the 4,096 neighbour reference rows
    with aelab.io.open_array(tmp_path / "x.npy", chunk_rows=700) as src:
        streamed = aelab.PCA(n_components=3, random_state=0).fit(src)
    np.testing.assert_allclose(streamed.decision_function(X), mem.decision_function(X), rtol=1e-5)
    np.testing.assert_allclose(streamed.decision_scores_, mem.decision_scores_, rtol=1e-5)


# ---------------------------------------------------------------------- transactional fit
def test_a_failed_refit_leaves_the_previous_model(blobs, tmp_path):
    """Was: the new scaler and network sat with the old threshold and statistics: NaN scores, no error."""
    X, X_out = blobs
    est = aelab.Autoencoder(epochs=3, random_state=0).fit(X)
    before = (est.decision_function(X_out), est.threshold_, est.fitted_)
    bad = np.full((64, 8), 1e19, np.float32)
    bad[::2] *= -1
    with pytest.raises(TrainingError, match="learning rate"):
        est.set_params(scaler="none").fit(bad)
    assert est.fitted_ is before[2] and est.threshold_ == before[1]
    np.testing.assert_array_equal(est.decision_function(X_out), before[0])
    est.save(tmp_path / "m")
    np.testing.assert_array_equal(aelab.load(tmp_path / "m").decision_function(X_out), before[0])


def test_a_failed_first_fit_leaves_the_estimator_unfitted(blobs):
    X, _ = blobs
    bad = np.full((64, 8), 1e19, np.float32)
    bad[::2] *= -1
    est = aelab.Autoencoder(scaler="none", epochs=2, random_state=0)
    with pytest.raises(TrainingError):
        est.fit(bad)
    with pytest.raises(NotFittedError, match="not fitted"):
        est.transform(X)
    with pytest.raises(NotFittedError, match="not fitted"):
        est.decision_function(X)
    pca = aelab.PCA(n_components=5)
    with pytest.raises(ConfigError, match="exceeds the number of samples"):
        pca.fit(X[:3])
    with pytest.raises(NotFittedError):
        pca.transform(X)
    assert not hasattr(pca, "model_") and not hasattr(pca, "scaler_")


# ---------------------------------------------------------------------- deterministic evaluation loss
@pytest.mark.parametrize("kw, score", [({}, "mse"), ({"noise": 0.3}, "mse"), ({"noise": 0.4, "noise_type": "mask"}, "mse"),
                                       ({"vae": True}, "elbo")])
def test_validation_loss_is_deterministic_and_the_best_weights_are_restored(blobs, kw, score):
    """Was: the validation loss applied the corruption, z sampling and the trim (0.5-1% apart on the same weights)."""
    X, _ = blobs
    kw = dict(kw)
    cls = aelab.VAE if kw.pop("vae", False) else aelab.Autoencoder
    est = cls(epochs=40, patience=3, lr=3e-2, random_state=0, **kw).fit(X)
    h = est.history_
    assert len(h["val_loss"]) == len(h["loss"]) < 40  # stopped early
    val_idx, _ = validation_split(len(X), 0.1, torch.Generator().manual_seed(0))
    # the restored weights are the best epoch's: their loss on the validation rows, computed
    # afresh and without any randomness, is the minimum of the history
    now = est.decision_function(X[val_idx.numpy()], score=score).mean()
    assert now == pytest.approx(min(h["val_loss"]), rel=1e-5)
    assert int(np.argmin(h["val_loss"])) < len(h["val_loss"]) - 1  # and that was not simply the last epoch


# ---------------------------------------------------------------------- the linear autoencoder is PCA
@pytest.mark.slow
def test_linear_autoencoder_defaults_match_pca_on_sklearn_digits():
    """Was: with the default trim=0.1 (and early stopping) the subspace was 80.7 degrees from PCA's."""
    from scipy.linalg import subspace_angles
    from sklearn.datasets import load_digits

    X = load_digits().data.astype(np.float32)
    k = 8
    pca = aelab.PCA(n_components=k).fit(X)
    lae = aelab.Autoencoder(latent_dim=k, linear=True, epochs=300, random_state=0).fit(X)
    assert lae._trim() == 0.0 and len(lae.history_["loss"]) == 300  # no trim, no early stopping
    e_pca, e_lae = (e.decision_function(X, score="mse").mean() for e in (pca, lae))
    assert e_pca <= e_lae <= 1.02 * e_pca

    def basis(est):
        R = est.fitted_.to_net(est.reconstruct(X))
        return np.linalg.svd(R - R.mean(0), full_matrices=False)[2][:k].T

    assert np.degrees(subspace_angles(basis(pca), basis(lae))).max() < 10.0


# ---------------------------------------------------------------------- scikit-learn model selection
def test_grid_search_without_scoring_gives_finite_scores(blobs):
    """Was: the score parameter shadowed score(): mean_test_score [nan, nan] and an arbitrary best_params_."""
    from sklearn.model_selection import GridSearchCV, cross_validate

    X, _ = blobs
    gs = GridSearchCV(aelab.Autoencoder(epochs=5, random_state=0), {"latent_dim": [1, 3]}, cv=2).fit(X)
    scores = gs.cv_results_["mean_test_score"]
    assert np.isfinite(scores).all() and scores[1] > scores[0]  # the data is 3-D: 3 codes reconstruct it better
    assert gs.best_params_ == {"latent_dim": 3}
    cv = cross_validate(aelab.VAE(epochs=2, random_state=0), X, cv=2)
    assert np.isfinite(cv["test_score"]).all()


def test_score_method_and_the_renamed_parameter(blobs):
    X, X_out = blobs
    est = aelab.Autoencoder(epochs=5, random_state=0).fit(X)
    assert est.score(X) == pytest.approx(-est.decision_function(X, score="mse").mean())
    assert est.score(X) > est.score(X_out)
    with pytest.warns(FutureWarning, match="anomaly_score"):
        old = aelab.Autoencoder(score="mse")
    assert old.anomaly_score == "mse" and "score" not in old.get_params()
    with pytest.warns(FutureWarning):
        assert aelab.PCA(score="latent").anomaly_score == "latent"
    with pytest.raises(ConfigError, match="anomaly_score"):
        aelab.VAE(score="kl", anomaly_score="kl")


def test_empty_features_and_any_strides():
    """Was: numpy's "zero-size array to reduction operation" and torch's negative-stride error."""
    with pytest.raises(DataError, match="empty feature dimension"):
        aelab.Autoencoder(epochs=1).fit(np.zeros((5, 0)))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 6)).astype(np.float32)
    est = aelab.Autoencoder(latent_dim=2, epochs=1, random_state=0).fit(X[:, ::-1])
    Z = est.transform(X[::-1])
    np.testing.assert_allclose(est.inverse_transform(Z[::-1]), est.inverse_transform(np.ascontiguousarray(Z[::-1])))
    np.testing.assert_array_equal(est.decision_function(X[::-2]), est.decision_function(X[::-2].copy()))


def test_cost_counts_functional_products_of_pca(blobs):
    """Was: PCA's products are functional ops, so cost reported 0 MACs."""
    from aelab.nn import cost

    pca = aelab.PCA(n_components=3).fit(blobs[0])
    c = cost(pca, latency_runs=0)
    assert c["params"] == 0 and c["macs"] == 2 * 8 * 3  # encode 8 -> 3, decode 3 -> 8


def test_thread_count_is_scoped_to_the_estimators_own_calls(blobs):
    X, _ = blobs
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        est = aelab.Autoencoder(epochs=1, random_state=0, n_threads=1).fit(X)
        assert torch.get_num_threads() == 2
        seen = []
        est.model_.register_forward_hook(lambda *a: seen.append(torch.get_num_threads()))
        est.decision_function(X)
        assert seen and set(seen) == {1} and torch.get_num_threads() == 2
        with pytest.raises(ConfigError, match="n_threads"):
            aelab.PCA(n_threads=0).fit(X)
    finally:
        torch.set_num_threads(previous)


def test_cli_train_gives_the_same_model_family_streamed_or_not(tmp_path, monkeypatch):
    """Was: `aelab train data.npy` changed scaler, output and score at 256 MiB, when it began to stream."""
    from aelab.cli import main

    rng = np.random.default_rng(0)
    X = rng.uniform(size=(12_000, 4)).astype(np.float32)
    X[10_000:] *= 3
    np.save(tmp_path / "x.npy", X)
    models = {}
    for stream in ("always", "never"):
        assert main(["train", str(tmp_path / "x.npy"), "--epochs", "1", "--seed", "0", "--stream", stream,
                     "--out", str(tmp_path / stream), "--quiet"]) == 0
        models[stream] = aelab.load(tmp_path / stream)
    a, b = models["always"], models["never"]
    assert (a.scaler_.kind, a.model_cfg_.output, a.score_) == (b.scaler_.kind, b.model_cfg_.output, b.score_) \
        == ("standard", "identity", "knn")
    assert set(a.history_) == set(b.history_) == {"loss", "val_loss"}


def test_model_folders_of_format_1_still_load(blobs, tmp_path):
    import json

    X, _ = blobs
    est = aelab.Autoencoder(epochs=2, random_state=0, anomaly_score="mse").fit(X)
    est.save(tmp_path / "m")
    cfg_file = tmp_path / "m" / "config.json"
    cfg = json.loads(cfg_file.read_text())
    assert cfg["format_version"] == 2
    # what aelab 0.1 wrote: format 1, the parameter 'score', no input_kind
    cfg["format_version"] = 1
    cfg["params"]["score"] = cfg["params"].pop("anomaly_score")
    del cfg["fitted"]["input_kind"]
    cfg_file.write_text(json.dumps(cfg))
    (tmp_path / "m" / ".aelab.json").unlink()  # aelab 0.1 wrote no ownership marker
    old = aelab.load(tmp_path / "m")
    assert old.anomaly_score == "mse" and old.input_kind_ == "table"
    np.testing.assert_array_equal(old.decision_function(X), est.decision_function(X))
    cfg["format_version"] = 4
    cfg_file.write_text(json.dumps(cfg))
    with pytest.raises(aelab.exceptions.PersistenceError, match="Upgrade aelab"):
        aelab.load(tmp_path / "m")


def test_set_params_and_config_files_accept_the_old_score_name(blobs, tmp_path, capsys):
    from aelab.cli import main

    est = aelab.VAE()
    with pytest.warns(FutureWarning, match="anomaly_score"):
        est.set_params(score="kl")
    assert est.anomaly_score == "kl"
    X, _ = blobs
    np.save(tmp_path / "x.npy", X)
    (tmp_path / "ae.toml").write_text('score = "mse"\nepochs = 1\n')
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("always", FutureWarning)  # as outside the test suite (which makes them errors)
        assert main(["train", str(tmp_path / "x.npy"), "--config", str(tmp_path / "ae.toml"),
                     "--out", str(tmp_path / "m")]) == 0
    err = capsys.readouterr().err  # the command line shows the FutureWarning as one line
    assert "aelab train: warning:" in err and "anomaly_score" in err and "Traceback" not in err
    assert aelab.load(tmp_path / "m").score_ == "mse"
