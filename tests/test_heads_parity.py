"""Every registered score head (``sorted(HEADS)``: a newly registered head is picked up here) through every engine,
against the float module: decision_function, the ONNX graph under ONNX Runtime, the fixed-point emulation at
ap_fixed<16,6>, and hls4ml's compiled C model (real hls4ml and g++) for one dense and one convolutional model.

Models: a dense autoencoder and a dense VAE on a table, a convolutional autoencoder on two-channel images, each
fitted with anomaly_score="z:mse+latent+knn+iforest" so that it keeps the neighbour heads' reference rows, the
isolation forest on the codes and the training statistics of every term (what the fusions need). Variational
heads run on the VAE, the others on all three.

Tolerances, and why:

* decision_function is the head on the float module: equal to 1e-12 (the same float64 head arithmetic);
* ONNX Runtime: 1e-5 relative per row (float32 graph arithmetic); "kl" 1e-4 (it sums
  0.5 (mu^2 + e^lv - 1 - lv), whose float32 cancellation near lv = 0 moves torch itself by ~1e-5);
* fixed point at ap_fixed<16,6> (LSB 2^-10, about 1e-3 of a standardised input): every cast moves a
  value by up to one LSB, so a score moves by ~1e-3 of its own size, more where a code (the wide sum of
  rounded activations) enters a quadratic form. Measured on these models (CPU, torch 2.13): Spearman rank
  correlation >= 0.99956 (worst: "mse+latent", conv); median relative deviation 3e-5 ("knn", conv) to 9.8e-3
  ("kl"); deviation relative to max(|score|, median |score|) at most 3.8e-2 ("latent", VAE; the plain relative
  deviation reaches 0.12 for "latent" on a conv row whose code lies at the training mean, a score near 0 where
  a relative error says little). The checks, about twice the worst measured: rank correlation >= 0.999 (the
  ranking, hence a threshold's flags, is kept), median relative deviation <= 2%, and that floored deviation
  <= 8% for every row. "iforest" (the isolation forest on the codes) compares each code with the trees'
  thresholds: a fixed-point code within an LSB of a threshold takes the other branch, which moves that row's
  score by ~1e-3 per flipped tree. Measured: rank correlation 0.9963 (VAE), 0.9980 (conv), 0.9988 (dense), median
  deviation <= 2.6e-3, floored deviation <= 2.4%: its rank bound is 0.992 (twice the worst measured loss).
  "isolation" (the forest on the inputs, in the clean table default "knn+isolation") flips the same way on the
  fixed-point inputs: rank correlation 0.9989 (conv), median deviation 0; its rank bound is 0.998;
* hls4ml's C model against the PyTorch emulation: bit for bit (the C model is run through its double
  interface, which holds these fixed-point values exactly).
"""

import importlib.util
import shutil

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

import aelab
from aelab.exceptions import ConfigError
from aelab.export import hls as H, quantize as Q
from aelab.export.onnx import onnx_scores
from aelab.fitted import input_forest_state, term_statistics
from aelab.heads import HEADS, Head, HeadSpec, build_head

PRECISION = "ap_fixed<16,6>"
SCORES = sorted(HEADS)
ONNX_TOL = {"kl": 1e-4}
FIXED = {"rank": 0.999, "median": 0.02, "floored_max": 0.08}
FIXED_RANK = {"iforest": 0.992, "isolation": 0.998}  # branch flips at the trees' thresholds (see the module)


def variational(score):
    return HEADS[score].variational


def keys_for(score):
    if HEADS[score].emission:  # the density of lit pixels: image models only
        return ["conv"]
    return ["vae"] if variational(score) else ["dense", "vae", "conv"]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(3, 10))
    X = (rng.normal(size=(360, 3)) @ W + 0.1 * rng.normal(size=(360, 10))).astype(np.float32)
    T = np.concatenate([X[300:], (rng.normal(size=(30, 10)) * X.std(0)).astype(np.float32)])  # 30 off the subspace
    yy, xx = np.mgrid[:10, :10]
    img = np.stack([np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8) for cy, cx in rng.uniform(2, 8, (260, 2))])
    img = np.stack([img, img[:, ::-1]], axis=1)  # (n, 2, 10, 10): padded to 12 x 12 for two pooling stages
    img = (img + 0.05 * rng.standard_normal(img.shape)).astype(np.float32)
    return {"table": (X[:300], T), "image": (img[:200], img[200:])}


@pytest.fixture(scope="module")
def models(data):
    X, _ = data["table"]
    images, _ = data["image"]
    common = dict(anomaly_score="z:mse+latent+knn+iforest", random_state=0)
    out = {
        "dense": aelab.Autoencoder(epochs=5, **common).fit(X),
        "vae": aelab.VAE(epochs=5, **common).fit(X),
        "conv": aelab.Autoencoder(arch="conv", input_kind="image", channels=(4, 8), latent_dim=3,
                                  activation="leaky_relu", scaler="standard", epochs=3, **common).fit(images),
    }
    # the isolation forest on the inputs too (a model keeps it when its default score uses it: "knn+isolation",
    # the table default), fitted as the post-fit pass fits it, so that every head has its statistics
    for key, m in out.items():
        rows_ = images if key == "conv" else X
        m._fitted = m._fitted.replace(input_forest=input_forest_state(m._fitted, rows_, len(rows_), 0))
        stats = dict(m._fitted.term_stats)
        stats["isolation"] = term_statistics(m._fitted, rows_, ("isolation",), "test")["isolation"]
        m._fitted = m._fitted.replace(term_stats=stats)
    return out


def rows(data, key):
    return data["image" if key == "conv" else "table"][1]


@pytest.mark.parametrize("score", SCORES)
def test_decision_function_is_the_registered_head_on_the_float_module(score, models, data):
    for key in keys_for(score):
        m = models[key]
        f = m.fitted_
        T = rows(data, key)
        head = build_head(score, f.head_stats())  # the registry's factory, built afresh
        with torch.no_grad():
            x = torch.from_numpy(f.to_net(T))
            expect = head(x, f.model(x, sample=False)).numpy()
        np.testing.assert_allclose(m.decision_function(T, score=score), expect, rtol=1e-12, err_msg=key)


@pytest.mark.parametrize("score", SCORES)
def test_onnx_graph_under_onnxruntime_matches_the_float_module(score, models, data):
    pytest.importorskip("onnxruntime")
    for key in keys_for(score):
        m, T = models[key], rows(data, key)
        got, want = onnx_scores(m, T, score), m.decision_function(T, score=score)
        rel = np.abs(got - want) / np.maximum(np.abs(want), 1e-30)
        assert rel.max() < ONNX_TOL.get(score, 1e-5), (key, float(rel.max()))


def fixed_deviation(fixed, flt) -> dict:
    rel = np.abs(fixed - flt) / np.abs(flt)
    floored = np.abs(fixed - flt) / np.maximum(np.abs(flt), np.median(np.abs(flt)))
    return {"rank": float(spearmanr(fixed, flt)[0]), "median": float(np.median(rel)),
            "floored_max": float(floored.max())}


@pytest.mark.parametrize("score", SCORES)
def test_fixed_point_emulation_runs_the_head_and_stays_near_the_float_module(score, models, data):
    for key in keys_for(score):
        m, T = models[key], rows(data, key)
        emu = Q.emulate(m, T, PRECISION, score=score)
        want = m.decision_function(T, score=score)
        np.testing.assert_array_equal(emu["float_score"], want)
        assert not np.array_equal(emu["score"], want), "the fixed-point pass does change the scores"
        dev = fixed_deviation(emu["score"], want)
        assert dev["rank"] >= FIXED_RANK.get(score, FIXED["rank"]) and dev["median"] <= FIXED["median"] \
            and dev["floored_max"] <= FIXED["floored_max"], (key, dev)
        np.testing.assert_array_equal(Q.firmware_scores(m, T, PRECISION, score=score), emu["score"])
        np.testing.assert_array_equal(Q.firmware_scores(m, T, score=score), want)


def test_default_firmware_score_is_unchanged_and_is_d_times_the_mse_head(models, data):
    """The firmware's own score (sum of squared errors) and the "mse" head (their mean) on the same fixed-point
    outputs, by two routes: the default path and the head path."""
    m, T = models["dense"], rows(data, "dense")
    default, head = Q.emulate(m, T, PRECISION), Q.emulate(m, T, PRECISION, score="mse")
    assert set(default) == {"output", "score", "float_score", "target"}
    np.testing.assert_array_equal(default["output"], head["output"])
    np.testing.assert_allclose(default["score"], T.shape[1] * head["score"], rtol=1e-12)
    vae = models["vae"]
    k = vae.fitted_.model_cfg.latent_dim
    assert Q.emulate(vae, T, PRECISION)["output"].shape == (len(T), k)  # still the mean only
    emu = Q.emulate(vae, T, PRECISION, score="kl")
    assert emu["output"].shape == T.shape and emu["code"].shape == (len(T), 2 * k)  # mu, logvar
    np.testing.assert_array_equal(emu["code"][:, :k], Q.emulate(vae, T, PRECISION)["output"])


def test_scores_a_model_cannot_give_are_refused_before_any_work(models, data, tmp_path):
    T = rows(data, "dense")
    with pytest.raises(ConfigError, match="latent scores need a VAE"):
        Q.emulate(models["dense"], T, PRECISION, score="kl")
    with pytest.raises(ConfigError, match="not known"):
        H.hls_scores(models["dense"], T, PRECISION, score=["mse", "nope"], output_dir=tmp_path / "p")
    assert not (tmp_path / "p").exists()
    plain = aelab.Autoencoder(epochs=1, anomaly_score="mse", random_state=0).fit(data["table"][0])
    with pytest.raises(ConfigError, match="reference rows"):
        Q.emulate(plain, T, PRECISION, score="knn")


def test_a_newly_registered_head_runs_in_fixed_point_with_no_other_change(models, data, monkeypatch):
    """Adding a score is one registered head: the emulation takes it as it is."""

    class MaxError(Head):
        term = "max_error"

        def forward(self, x, out, exclude=None):
            return (out.x_hat - x).abs().flatten(1).amax(1).double()

    monkeypatch.setitem(HEADS, "max_error", HeadSpec(lambda stats: MaxError()))  # removed again on exit
    m, T = models["dense"], rows(data, "dense")
    emu = Q.emulate(m, T, PRECISION, score="max_error")
    recon = np.abs(emu["output"] - Q.network_input(m, T, Q.parse_precision(PRECISION))[0].numpy()).max(1)
    np.testing.assert_array_equal(emu["score"], recon)
    assert fixed_deviation(emu["score"], emu["float_score"])["rank"] > 0.99
    # ... and so do decision_function and the ONNX graph
    f = m.fitted_
    with torch.no_grad():
        x = torch.from_numpy(f.to_net(T))
        direct = (f.model(x, sample=False).x_hat - x).abs().flatten(1).amax(1).double().numpy()
    np.testing.assert_allclose(m.decision_function(T, score="max_error"), direct, rtol=1e-12)
    if importlib.util.find_spec("onnxruntime"):
        np.testing.assert_allclose(onnx_scores(m, T, "max_error"), direct, rtol=1e-5)


# ---------------------------------------------------------------- hls4ml (real conversion and g++)
needs_hls = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is needed for hls4ml's C emulation")
# one dense, one conv (the emission head needs an image model)
HLS_MODELS = {"vae": [s for s in SCORES if not HEADS[s].emission], "conv": [s for s in SCORES if not variational(s)]}


@pytest.fixture(scope="module")
def hls(models, data):
    """Each model's hls4ml project compiled once (its code layer traced) and every head scored from it."""
    pytest.importorskip("hls4ml")
    return {key: H.hls_scores(models[key], rows(data, key), PRECISION, score=names) for key, names in HLS_MODELS.items()}


@needs_hls
@pytest.mark.slow
@pytest.mark.parametrize("score", SCORES)
def test_hls4ml_c_model_scores_every_head_as_the_emulation_does(score, hls, models, data):
    for key, names in HLS_MODELS.items():
        if score in names:
            emu = Q.emulate(models[key], rows(data, key), PRECISION, score=score)["score"]
            np.testing.assert_array_equal(hls[key][score], emu, err_msg=key)  # bit for bit
