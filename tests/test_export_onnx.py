"""The whole score as one ONNX graph: parity with torch through real ONNX Runtime sessions, int8, the engine, the CLI.

Parity is the maximum relative difference: per row for scores, and relative to the largest
value for reconstructions and codes (entries near zero have no useful relative error).
"""

import json
import sys

import numpy as np
import onnx
import pytest

import aelab
from aelab.exceptions import ConfigError, DataError, MissingDependencyError, NotFittedError
from aelab.export.onnx import (AUTO_MIN_ROWS, OUTPUTS, export_onnx, int8_cost, onnx_scores, onnx_session,
                               pick_engine, quantize_int8, run_session)

TOL = 1e-5
rng = np.random.default_rng(0)


def rel(a, b):
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-30)))


def rel_to_max(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def ort(path, X):
    return run_session(onnx_session(path), X)


@pytest.fixture(scope="module")
def table():
    """Correlated rows in user units (offset 50, spread 10) and labelled test rows (last 30 anomalous)."""
    W = rng.normal(size=(3, 10))
    X = (rng.normal(size=(330, 3)) @ W + 0.1 * rng.normal(size=(330, 10))) * 10 + 50
    T = np.concatenate([X[300:], rng.normal(size=(30, 10)) * X.std(0) + X.mean(0)])  # off the 3-D subspace
    y = np.r_[np.zeros(30), np.ones(30)].astype(int)
    return X[:300].astype(np.float32), T.astype(np.float32), y


@pytest.fixture(scope="module")
def images(digits):
    idx = np.random.default_rng(1).permutation(len(digits[0]))
    return digits[0][idx[:300]], digits[0][idx[300:337]], digits[0][idx[337:637]], (digits[1][idx[337:637]] == 7)


@pytest.fixture(scope="module")
def models(table, images):
    X, _, _ = table
    return {
        "ae-dense-table": aelab.Autoencoder(epochs=3, random_state=0).fit(X),
        "vae-dense-table": aelab.VAE(epochs=3, random_state=0).fit(X),
        "pca-table": aelab.PCA(n_components=3).fit(X),
        "ae-conv-image": aelab.Autoencoder(arch="conv", channels=(4, 8), latent_dim=8, epochs=1,
                                           random_state=0).fit(images[0]),
    }


@pytest.mark.parametrize("name", ["ae-dense-table", "vae-dense-table", "pca-table", "ae-conv-image"])
def test_every_output_matches_torch_at_any_batch_size(name, models, table, images, tmp_path):
    est = models[name]
    T = images[1] if "image" in name else table[1][:37]
    assert est.score_ == ("relative+latent" if "image" in name else "knn")
    expected = {"score": est.decision_function(T), "reconstruction": est.reconstruct(T), "latent": est.transform(T),
                "attribution": est.explain(T, method="error").contributions}
    for output in OUTPUTS:  # the dynamo exporter (default) for the score, the legacy one for the rest (faster)
        path = est.export_onnx(tmp_path / f"{output}.onnx", output=output, dynamo=output == "score")
        session = onnx_session(path)
        got = run_session(session, T)
        one = np.concatenate([session.run(None, {"input": T[i : i + 1].astype(np.float32)})[0] for i in range(3)])
        assert got.shape == expected[output].shape
        diff = rel if output == "score" else rel_to_max
        assert diff(got, expected[output]) < TOL, output
        assert diff(one, expected[output][:3]) < TOL, output
    assert ort(tmp_path / "latent.onnx", T).dtype == np.float32 and ort(tmp_path / "score.onnx", T).dtype == np.float64


@pytest.mark.parametrize("backbone", ["vgg", "resnet", "inception", "dense"])
def test_every_conv_backbone_exports(backbone, images, tmp_path):
    X = images[0][:200, :16, :16]
    est = aelab.Autoencoder(arch="conv", backbone=backbone, channels=(8, 16), latent_dim=4, epochs=1,
                            random_state=0).fit(X)
    assert rel(ort(est.export_onnx(tmp_path / "m.onnx", dynamo=False), X[:37]), est.decision_function(X[:37])) < TOL


@pytest.mark.parametrize("shape", [(4, 3), (6, 6, 3)], ids=["table-of-objects", "images-channels-last"])
def test_layouts_with_per_column_scaling_and_channels_last(shape, tmp_path):
    X = (rng.integers(0, 256, size=(200, *shape)) if len(shape) == 3
         else rng.normal(size=(200, *shape)) * [[1, 10, 100]] + 5).astype(np.float32)
    if len(shape) == 3:
        X = X.astype(np.uint8)
    est = aelab.PCA(n_components=4).fit(X)
    assert est.input_kind_ == ("image" if len(shape) == 3 else "table") and est.channels_last_ == (len(shape) == 3)
    for output, expected in [("score", est.decision_function(X[:37])), ("reconstruction", est.reconstruct(X[:37]))]:
        got = ort(est.export_onnx(tmp_path / "m.onnx", output=output, dynamo=False), X[:37])
        assert (rel if output == "score" else rel_to_max)(got, expected) < TOL


def test_saved_loaded_model_exports_one_self_contained_file_with_metadata(models, table, tmp_path):
    est = models["ae-dense-table"]
    est.save(tmp_path / "model")
    loaded = aelab.load(tmp_path / "model")
    out = tmp_path / "onnx"
    out.mkdir()
    path = loaded.export_onnx(out / "model.onnx", dynamo=False)  # the legacy exporter builds the same graph
    assert [p.name for p in out.iterdir()] == ["model.onnx"]
    proto = onnx.load(str(path), load_external_data=False)
    assert not any(onnx.external_data_helper.uses_external_data(t) for t in proto.graph.initializer)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["aelab_version"] == aelab.__version__ and meta["score"] == "knn"
    assert float(meta["threshold"]) == est.threshold_ and json.loads(meta["threshold_rule"]) == est.threshold_rule_
    assert json.loads(meta["input_shape"]) == [10] and meta["n_features"] == "10" and meta["input_dtype"] == "float32"
    assert rel(ort(path, table[1]), est.decision_function(table[1])) < TOL


def test_other_scores_and_the_vae_scores_export(models, table, tmp_path):
    vae, T = models["vae-dense-table"], table[1]
    for score in ("mse", "mae", "relative", "latent", "knn", "mse+knn", "mu_norm", "kl", "elbo"):
        path = export_onnx(vae, tmp_path / "m.onnx", score=score, dynamo=False)
        proto = onnx.load(str(path))
        meta = {p.key: p.value for p in proto.metadata_props}
        # the threshold is the default score's ("knn" on a table), and travels only with it
        assert meta["score"] == score and ("threshold" in meta) == (score == vae.score_), score
        knn_consts = any(i.name.startswith("head_") and i.name.endswith("ref_t") for i in proto.graph.initializer)
        assert knn_consts == ("knn" in score), score  # the reference rows travel only with a neighbour score
        # kl sums 0.5 (mu^2 + e^lv - 1 - lv): float32 cancellation near lv = 0 costs torch itself ~1e-5
        assert rel(ort(path, T), vae.decision_function(T, score=score)) < (1e-4 if score == "kl" else TOL), score


def test_image_default_score_agrees_as_closely_as_torch_agrees_with_itself(images, tmp_path):
    """The code's Mahalanobis term on images has a condition number of 1e5-1e6: float32 rounding
    of the code (which differs between batch sizes in torch itself) moves it by ~1e-5."""
    est = aelab.Autoencoder(epochs=2, random_state=0).fit(images[0])  # dense, the auto choice for 28 x 28
    T = images[1]
    batch = est.decision_function(T)
    rows = np.concatenate([est.decision_function(T[i : i + 1]) for i in range(len(T))])
    got = ort(est.export_onnx(tmp_path / "m.onnx", dynamo=False), T)
    assert rel(got, batch) <= max(TOL, 3 * rel(rows, batch))
    relative = est.export_onnx(tmp_path / "r.onnx", score="relative", dynamo=False)
    assert rel(ort(relative, T), est.decision_function(T, "relative")) < TOL


def test_scores_that_cannot_be_expressed_and_bad_arguments_raise(models, tmp_path):
    conv, ae = models["ae-conv-image"], models["ae-dense-table"]
    with pytest.raises(ConfigError, match="reference rows"):
        conv.export_onnx(tmp_path / "m.onnx", score="knn")
    with pytest.raises(ConfigError, match="need a VAE"):
        ae.export_onnx(tmp_path / "m.onnx", score="kl")
    with pytest.raises(ConfigError, match="output='code'"):
        ae.export_onnx(tmp_path / "m.onnx", output="code")
    with pytest.raises(DataError, match=r"ends in \.onnx"):
        ae.export_onnx(tmp_path / "m.npy")
    with pytest.raises(NotFittedError):
        aelab.Autoencoder().export_onnx(tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_int8_dense_dynamic_and_conv_static_report_their_cost(models, table, images, tmp_path):
    ae = models["ae-dense-table"]
    # a score that runs the network (the table default, "knn", needs none of it, and reference rows, float
    # constants, can outweigh the network the quantisation shrinks)
    f32 = ae.export_onnx(tmp_path / "dense.onnx", dynamo=False, score="mse+latent")
    q = onnx.load(str(quantize_int8(f32, tmp_path / "dense8.onnx")))
    ops = [n.op_type for n in q.graph.node]
    assert "MatMulInteger" in ops and ops.count("MatMul") == 1  # the Mahalanobis product stays float
    cost = int8_cost(f32, tmp_path / "dense8.onnx", table[1], table[2])
    assert cost["int8_bytes"] < cost["float_bytes"] and cost["float_rows_per_s"] > 0
    assert abs(cost["auroc_delta"]) < 0.05 and 0 < cost["median_rel_change"] < 0.1
    assert cost["float_tpr_at_fpr_0.001"].startswith("n/a: needs 1,000 normal rows, has 30")

    conv = models["ae-conv-image"]
    f32 = conv.export_onnx(tmp_path / "conv.onnx", dynamo=False)
    with pytest.raises(ConfigError, match="calibration"):
        quantize_int8(f32, tmp_path / "conv8.onnx")
    assert not (tmp_path / "conv8.onnx").exists()
    q = onnx.load(str(quantize_int8(f32, tmp_path / "conv8.onnx", calibration=images[2])))
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= {n.op_type for n in q.graph.node}
    assert {p.key: p.value for p in q.metadata_props}["quantization"].startswith("int8 static")
    cost = int8_cost(f32, tmp_path / "conv8.onnx", images[2], images[3])
    assert abs(cost["auroc_delta"]) < 0.05 and cost["int8_s_per_row_batch1"] > 0  # (QDQ nodes outweigh 4-8 channels)


def test_engine_rule_and_streamed_onnx_scores(models, table, tmp_path, monkeypatch):
    ae, conv = models["ae-dense-table"], models["ae-conv-image"]
    assert pick_engine("auto", ae.fitted_, AUTO_MIN_ROWS["dense"] - 1) == "torch"
    assert pick_engine("auto", ae.fitted_, AUTO_MIN_ROWS["dense"]) == "onnxruntime"
    assert pick_engine("auto", conv, AUTO_MIN_ROWS["conv"]) == "onnxruntime" and AUTO_MIN_ROWS["conv"] < 10_000
    assert pick_engine("torch", ae.fitted_, 10**9) == "torch"
    with monkeypatch.context() as m:  # without the extra, "auto" is torch and "onnxruntime" an error naming it
        m.setitem(sys.modules, "onnxruntime", None)
        assert pick_engine("auto", ae.fitted_, 10**9) == "torch"
        with pytest.raises(MissingDependencyError, match=r"pip install 'aelab\[onnx\]'"):
            pick_engine("onnxruntime", ae.fitted_, 10)
    np.save(tmp_path / "T.npy", table[1])
    source = aelab.io.open_array(tmp_path / "T.npy", chunk_rows=7)
    assert rel(onnx_scores(ae, source), ae.decision_function(table[1])) < TOL


def test_cli_export_then_score_and_evaluate_with_onnxruntime(cli, models, table, tmp_path):
    ae = models["ae-dense-table"]
    ae.save(tmp_path / "model")
    np.save(tmp_path / "T.npy", table[1])
    np.save(tmp_path / "y.npy", table[2])
    code, out, _ = cli("export", tmp_path / "model", "--format", "onnx", "--out", tmp_path / "m.onnx")
    assert code == 0 and "knn" in out
    assert rel(ort(tmp_path / "m.onnx", table[1]), ae.decision_function(table[1])) < TOL
    for engine in ("torch", "onnxruntime"):
        code, out, _ = cli("score", tmp_path / "model", tmp_path / "T.npy", "--engine", engine, "--stream", "always",
                           "--out", tmp_path / f"{engine}.npy")
        assert code == 0 and f"by {engine}" in out
    assert rel(np.load(tmp_path / "onnxruntime.npy"), np.load(tmp_path / "torch.npy")) < TOL
    code, out, _ = cli("evaluate", tmp_path / "model", tmp_path / "T.npy", "--labels", tmp_path / "y.npy",
                       "--engine", "onnxruntime")
    assert code == 0 and "ROC AUC" in out
    code, out, _ = cli("export", tmp_path / "model", "--quantize", "int8", "--calibration", tmp_path / "T.npy",
                       "--labels", tmp_path / "y.npy", "--out", tmp_path / "m8.onnx")
    assert code == 0 and "AUROC: float" in out and "TPR at FPR 0.001: n/a" in out
    assert ort(tmp_path / "m8.onnx", table[1]).shape == (60,)


@pytest.mark.parametrize("case", ["not-a-model", "format", "quantize", "suffix", "hls4ml-option",
                                  "conv-int8-without-calibration",
                                  "missing-onnx", "missing-onnxruntime-engine"])
def test_cli_bad_input_exits_2_and_writes_nothing(case, cli, models, table, tmp_path, monkeypatch):
    models["ae-dense-table"].save(tmp_path / "model")
    models["ae-conv-image"].save(tmp_path / "conv")
    np.save(tmp_path / "T.npy", table[1])
    before = sorted(p.name for p in tmp_path.iterdir())
    out = tmp_path / "m.onnx"
    argv = {"not-a-model": ["export", tmp_path / "T.npy", "--out", out],
            "format": ["export", tmp_path / "model", "--format", "tflite", "--out", out],
            "quantize": ["export", tmp_path / "model", "--quantize", "int4", "--out", out],
            "suffix": ["export", tmp_path / "model", "--out", tmp_path / "m.npy"],
            "hls4ml-option": ["export", tmp_path / "model", "--precision", "ap_fixed<16,6>", "--out", out],
            "conv-int8-without-calibration": ["export", tmp_path / "conv", "--quantize", "int8", "--out", out],
            "missing-onnx": ["export", tmp_path / "model", "--out", out],
            "missing-onnxruntime-engine": ["score", tmp_path / "model", tmp_path / "T.npy", "--engine", "onnxruntime",
                                           "--out", tmp_path / "s.npy"]}[case]
    if case.startswith("missing"):  # a Python without the extra: importing the package fails
        for module in ("onnx", "onnxruntime", "onnxscript"):
            monkeypatch.setitem(sys.modules, module, None)
    code, _, err = cli(*argv)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    expected = {"not-a-model": "no model folder", "format": "invalid choice: 'tflite'",
                "quantize": "invalid choice: 'int4'", "suffix": "ends in .onnx",
                "hls4ml-option": "--precision: option(s) of --format hls4ml, not onnx",
                "conv-int8-without-calibration": "needs calibration rows",
                "missing-onnx": "pip install 'aelab[onnx]'", "missing-onnxruntime-engine": "pip install 'aelab[onnx]'"}
    assert expected[case] in err


def test_missing_extra_raises_from_the_library(models, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(MissingDependencyError, match=r"aelab\[onnx\]"):
        models["pca-table"].export_onnx(tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []
