"""Fine-tuned (quantisation-aware) models keep fit's threshold rule on fresh normal rows, and their scores,
statistics and threshold come from one module: the one the firmware's weights are in.

How many rows: with contamination 0.1 the threshold is the 90th percentile of n training scores, so the
share of fresh normal rows above it varies by about sqrt(0.09 / n) from one training sample to another,
and the share measured on m fresh rows by sqrt(0.09 / m) more. With n = 20,000 and m = 40,000 that is
0.0026 together: the band 0.09-0.11 is +-3.8 standard deviations, so a share outside it means a bias
(scores of the training rows that are not what fresh rows get), not bad luck. (At n = 5,000 the
same fits gave 0.094 to 0.111 over six seeds: too noisy to test the band.)
"""

import numpy as np
import pytest
import torch

import aelab
from aelab import conformal
from aelab.export import quantize as Q
from aelab.heads import build_head
from aelab.scoring import knn_plan
from aelab.thresholds import threshold_from_contamination

PRECISION = "ap_fixed<16,6>"
N_TRAIN, N_FRESH = 20_000, 40_000


def table(n, seed, d=16, k=4):
    """A correlated Gaussian table: 4 latent factors seen through 16 columns, plus noise."""
    W = np.random.default_rng(123).normal(size=(k, d))
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, k)) @ W + 0.3 * rng.normal(size=(n, d))).astype(np.float32)


def images(n, seed, s=8):
    """8 x 8 greyscale images in [0, 1]: one Gaussian spot of random place, width and brightness, and noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:s, 0:s]
    c = rng.uniform(1.5, s - 2.5, size=(n, 2))
    w, a = rng.uniform(1.0, 2.0, size=(n, 1, 1)), rng.uniform(0.6, 1.0, size=(n, 1, 1))
    img = a * np.exp(-((yy - c[:, 0, None, None]) ** 2 + (xx - c[:, 1, None, None]) ** 2) / (2 * w**2))
    return np.clip(img + 0.03 * rng.normal(size=img.shape), 0, 1).astype(np.float32)


def module_scores(est, X):
    """The default score computed by hand from the fitted module: scaler, network, score head."""
    f = est.fitted_
    x = torch.from_numpy(f.to_net(X))
    with torch.no_grad():
        return build_head(f.score, f.head_stats())(x, f.model(x)).numpy()


def assert_firmware_weights(est):
    """Every weight and bias of the network is on the grid of the firmware's weight type."""
    p = Q.parse_precision(PRECISION)
    for name, t in est.model_.named_parameters():
        assert torch.equal(Q.round_weights(t.detach().double(), p), t.detach().double()), name


def test_finetuned_table_model_keeps_the_contamination_rule_on_fresh_rows():
    X, fresh = table(N_TRAIN, 1), table(N_FRESH, 2)
    ae = aelab.Autoencoder(epochs=3, contamination=0.1, random_state=0).fit(X)
    assert ae.score_ == "knn"
    tuned = Q.finetune(ae, X, PRECISION, epochs=2, batch_size=256, random_state=0)

    share = tuned.predict(fresh).mean()
    assert 0.09 <= share <= 0.11, share
    # fit's rule, on the fine-tuned module's training scores; the statistics are the new module's
    assert tuned.threshold_rule_ == {"contamination": 0.1, "n": N_TRAIN}
    assert tuned.threshold_ == threshold_from_contamination(tuned.decision_scores_, 0.1)
    assert not np.array_equal(tuned.latent_mean_, ae.latent_mean_)
    assert tuned.recon_means_[0] == pytest.approx(tuned.decision_function(X, score="mse").mean(), rel=1e-6)
    # training scores as fit makes them: a reference row is not its own neighbour (and only those differ)
    df, ds = tuned.decision_function(X), tuned.decision_scores_
    rows, _, bags = knn_plan(N_TRAIN, False)
    assert len(tuned.fitted_.knn_ref) == rows * bags
    assert (ds >= df - 1e-9).all() and (ds > df + 1e-9).sum() == len(np.unique(tuned.fitted_.knn_ref, axis=0))
    # one module: decision_function is the fitted module's own score, and the emulation runs that module
    sub = fresh[:2000]
    np.testing.assert_allclose(tuned.decision_function(sub), module_scores(tuned, sub), rtol=1e-6)
    em = Q.emulate(tuned, sub, PRECISION)
    np.testing.assert_allclose(em["float_score"], 16 * tuned.decision_function(sub, score="mse"), rtol=1e-5)
    assert np.median(np.abs(em["score"] / em["float_score"] - 1)) < 0.01
    assert_firmware_weights(tuned)
    # fine-tuned on the fit's own rows: none of them is a clean held-out row, so no calibration scores
    assert tuned.calibration_scores_ is None and ae.calibration_scores_ is not None
    assert tuned.history_["finetune"]["precision"] == PRECISION and len(tuned.history_["finetune"]["loss"]) == 2


def test_finetuned_image_model_keeps_the_contamination_rule_on_fresh_rows():
    X, X_tune, fresh = images(N_TRAIN, 1), images(N_TRAIN, 3), images(N_FRESH, 2)
    ae = aelab.Autoencoder(epochs=3, contamination=0.1, random_state=0).fit(X)
    assert ae.score_ == "relative+latent" and ae.input_kind_ == "image"
    tuned = Q.finetune(ae, X_tune, PRECISION, epochs=2, batch_size=256, random_state=0)

    share = tuned.predict(fresh).mean()
    assert 0.09 <= share <= 0.11, share
    assert tuned.threshold_ == threshold_from_contamination(tuned.decision_scores_, 0.1)
    np.testing.assert_allclose(tuned.decision_scores_, tuned.decision_function(X_tune), rtol=1e-12)
    np.testing.assert_allclose(tuned.decision_function(fresh[:2000]), module_scores(tuned, fresh[:2000]), rtol=1e-6)
    # the emulation's float path is the same module: sum of squared errors of the sigmoid output, 64 pixels
    em = Q.emulate(tuned, fresh[:2000], PRECISION)
    np.testing.assert_allclose(em["float_score"], 64 * tuned.decision_function(fresh[:2000], score="mse"), rtol=1e-5)
    assert_firmware_weights(tuned)
    # new rows: the calibration rows are the held-out rows of fit's split, scored by the same module
    val = conformal.validation_rows(N_TRAIN, 0.1, 0)
    assert tuned.fitted_.calibration_info == {"source": "validation", "n": len(val), "clean": False}
    np.testing.assert_array_equal(tuned.calibration_scores_, np.sort(tuned.decision_function(X_tune[val])))
    # a Fitted in, a Fitted out: the same state the estimator came back with
    f = Q.finetune(ae.fitted_, X_tune, PRECISION, epochs=2, batch_size=256, random_state=0)
    assert type(f) is type(ae.fitted_) and f.threshold == tuned.threshold_
