"""The trigger workflow: ADC2021 synthetic events, the dense preset, ap_fixed emulation, the bit-width scan,
quantisation-aware fine-tuning, and hls4ml firmware with its C emulation (real hls4ml and g++, no mocks)."""

import json
import shutil
import sys

import numpy as np
import pytest
import torch

import aelab
from aelab.cli import main
from aelab.exceptions import ConfigError, MissingDependencyError
from aelab.export import hls as H, quantize as Q


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    path = tmp_path_factory.mktemp("adc") / "events.h5"
    particles, labels = aelab.datasets.make_adc2021(12_000, 400, path=path, random_state=0)
    return path, particles, labels


@pytest.fixture(scope="module")
def trained(events):
    path, _, labels = events
    X = aelab.datasets.load_adc2021(path)
    ae = aelab.presets.adc2021(epochs=6, random_state=0).fit(X[labels == 0][:8000])
    return ae, X[8000:], labels[8000:]


# ---------------------------------------------------------------- ap_fixed
def test_precision_strings_parse_and_bad_ones_say_what_is_expected():
    p = Q.parse_precision("ap_fixed<16,6>")
    assert (p.width, p.integer, p.signed, p.rounding, p.overflow) == (16, 6, True, "TRN", "WRAP")
    assert Q.parse_precision("ap_ufixed<8,-6>").range == (0.0, 255 * 2.0**-14)
    q = Q.parse_precision("fixed<8, 3, AP_RND_CONV, AP_SAT>")
    assert (q.rounding, q.overflow, str(q)) == ("RND_CONV", "SAT", "ap_fixed<8,3,AP_RND_CONV,AP_SAT>")
    for bad in ("ap_fixed16,6", "ap_int<8>", "ap_fixed<16,6,AP_FLOOR>", "float"):
        with pytest.raises(ConfigError, match="expected"):
            Q.parse_precision(bad)


def test_truncation_and_wrap_as_ap_fixed_casts():
    x = torch.tensor([0.3, -0.3, 1.9, 2.0, 2.3, 0.37, 0.38], dtype=torch.float64)
    p = Q.FixedPoint(4, 2)  # LSB 0.25, range [-2, 1.75]
    assert p.quantize(x).tolist() == [0.25, -0.5, 1.75, -2.0, -1.75, 0.25, 0.25]
    assert p.replace(overflow="SAT").quantize(x).tolist() == [0.25, -0.5, 1.75, 1.75, 1.75, 0.25, 0.25]
    assert p.replace(rounding="RND").quantize(x)[-2:].tolist() == [0.25, 0.5]
    assert p.replace(rounding="TRN_ZERO").quantize(x)[1].item() == -0.25
    # weights are rounded to the nearest grid value and saturated offline, not truncated or wrapped
    assert Q.round_weights(x, p).tolist() == [0.25, -0.25, 1.75, 1.75, 1.75, 0.25, 0.5]
    assert Q.cast_weights(x, p).tolist() == Q.round_weights(x, p).tolist()


# ---------------------------------------------------------------- data and preset
def test_generator_writes_what_the_adc2021_reader_reads(events):
    path, particles, labels = events
    assert particles.shape == (13_200, 19, 4) and particles.dtype == np.float32
    X = aelab.datasets.load_adc2021(path)
    np.testing.assert_array_equal(X, particles[:, :, :3].reshape(len(X), 57))
    assert np.bincount(labels).tolist() == [12_000, 400, 400, 400]
    pt, kind = particles[:, :, 0], particles[:, :, 3]
    assert (kind[:, 0] == 1).all() and set(np.unique(kind[:, 1:5])) <= {0, 2} and set(np.unique(kind[:, 9:])) <= {0, 4}
    assert (np.diff(pt[:, 9:], axis=1) <= 0).all(), "jets are sorted by falling pT"
    assert ((pt == 0) == (particles == 0).all(axis=2)).all(), "absent objects are all-zero rows"
    n_lep = (pt[:, 1:9] > 0).sum(1)
    assert n_lep[labels == 1].mean() > 3 * n_lep[labels == 0].mean()
    assert pt[labels == 2, 0].mean() > 3 * pt[labels == 0, 0].mean()


def test_preset_is_the_published_dense_recipe_and_ignores_padding(trained):
    ae, X, _ = trained
    linears = [m for m in ae.model_.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(57, 32), (32, 16), (16, 3), (3, 16), (16, 32),
                                                                  (32, 57)]
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in ae.model_.modules()) == 4
    assert sum(isinstance(m, torch.nn.LeakyReLU) for m in ae.model_.modules()) == 4
    errors = ae.feature_errors(X[:500])
    assert (errors[X[:500] == 0] == 0).all() and errors[X[:500] != 0].mean() > 0
    np.testing.assert_allclose(ae.decision_function(X[:500]), errors.mean(1), rtol=1e-5)


def test_firmware_score_is_the_float_score_without_quantisation(trained):
    ae, X, _ = trained
    np.testing.assert_allclose(Q.firmware_scores(ae, X[:300]), 57 * ae.decision_function(X[:300]), rtol=1e-4)
    vae = aelab.VAE(latent_dim=2, epochs=2, random_state=0).fit(X[:500])
    ops, target = Q.fixed_point_network(vae)
    assert target == "mu" and ops[-1][1].shape[0] == 2
    mu = vae.transform(X[:300]).astype(np.float64)
    np.testing.assert_allclose(Q.firmware_scores(vae, X[:300]), (mu**2).sum(1), rtol=1e-4)
    assert np.isfinite(Q.firmware_scores(vae, X[:300], "ap_fixed<12,5>")).all()


# ---------------------------------------------------------------- scan and fine-tuning
def test_bit_scan_relative_to_float_and_the_smallest_width(trained):
    ae, X, labels = trained
    y = labels > 0
    scan = Q.bit_scan(ae, X, y, bits=[4, 6, 8, 16], fpr=1e-3, tolerance=0.05, adder_cost=False)
    rows = {r["bits"]: r for r in scan["rows"]}
    assert scan["float"]["auroc"] > 0.8
    assert abs(rows[16]["auroc_rel"] - 1) < 0.01 and abs(rows[16]["tpr_rel"] - 1) < 0.1
    assert rows[4]["auroc"] < rows[16]["auroc"] - 0.02, "4 bits should lose accuracy"
    assert scan["smallest"] in (8, 16)
    auto = Q.bit_scan(ae, X, y, bits=[6], integer_bits=scan["integer_bits"], weight_integer_bits="auto", fpr=1e-3,
                      adder_cost=False)
    assert auto["weight_integer_bits"] < scan["integer_bits"] and auto["rows"][0]["weight_precision"] != \
        auto["rows"][0]["precision"]
    assert "| 16 | ap_fixed&lt;16," in Q.format_scan(scan)
    # a narrow width that passes by chance while a wider one fails is not the answer
    rows = [{"bits": b, "auroc_rel": 1.0, "tpr_rel": t} for b, t in ((6, 0.5), (7, 1.6), (8, 0.67), (9, 1.3), (10, 1))]
    assert Q.smallest_width(rows, 0.05) == 9 and Q.smallest_width(rows[:3], 0.05) is None


def test_finetuning_recovers_what_post_training_rounding_loses(trained):
    ae, X, labels = trained
    bg, p = X[labels == 0], "ap_fixed<6,4>"
    float_median = np.median(Q.firmware_scores(ae, bg))
    before = np.median(Q.firmware_scores(ae, bg, p))
    tuned = Q.finetune(ae, bg, p, epochs=10, batch_size=256, random_state=0)
    after = np.median(Q.firmware_scores(tuned, bg, p))
    assert before > 1.1 * float_median, "6 bits lose accuracy after training"
    assert after < float_median + 0.25 * (before - float_median), (float_median, before, after)
    scan = Q.bit_scan(ae, X, labels > 0, bits=[6], integer_bits=4, fpr=1e-3, others={"tuned": tuned},
                      adder_cost=False)
    row = scan["rows"][0]
    assert row["tuned_auroc"] > row["auroc"], row  # (TPR at 1e-3 of 4,000 background rows is too noisy to test)
    assert type(tuned) is type(ae) and tuned.fitted_ is not ae.fitted_ and np.isfinite(tuned.threshold_)


def test_adder_cost_estimate_from_da4ml_falls_with_the_width(trained, monkeypatch):
    pytest.importorskip("da4ml")
    ae, X, labels = trained
    scan = Q.bit_scan(ae, X, labels > 0, bits=[4, 10], integer_bits=5, fpr=1e-3)  # "auto": da4ml is here
    cost = [r["adder_cost_estimate"] for r in scan["rows"]]
    assert 0 < cost[0] < 0.6 * cost[1], cost
    assert "adders (da4ml estimate)" in Q.format_scan(scan)
    layers = Q.adder_cost(ae, "ap_fixed<10,5>")["layers"]
    assert len(layers) == 6 and sum(layers) == pytest.approx(cost[1])
    assert layers[0] > layers[2], "57 x 32 costs more than 16 x 3"
    monkeypatch.setitem(sys.modules, "da4ml", None)  # as if not installed
    assert "adder_cost_estimate" not in Q.bit_scan(ae, X, labels > 0, bits=[6], fpr=1e-3)["rows"][0]
    with pytest.raises(MissingDependencyError, match=r"aelab\[hls\]"):
        Q.bit_scan(ae, X, labels > 0, bits=[6], fpr=1e-3, adder_cost=True)


# ---------------------------------------------------------------- hls4ml (real conversion and g++)
needs_hls = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is needed for hls4ml's C emulation")


@needs_hls
def test_hls_firmware_matches_float_and_the_pytorch_emulation(trained, tmp_path):
    pytest.importorskip("hls4ml")
    ae, X, labels = trained
    bg = X[labels == 0][:1000]
    report = ae.to_hls(tmp_path / "p16", "ap_fixed<16,6>", X=bg)  # hls4ml's default modes: AP_TRN, AP_WRAP
    par = report["parity"]
    assert par["vs_float"]["mean"] < 0.005 and par["vs_float"]["median"] < 0.005, par
    assert par["vs_torch_emulation"]["max"] < 1e-6, "PyTorch emulation is bit-exact at 16 bits"
    assert (tmp_path / "p16" / "firmware" / "myproject.cpp").is_file()
    pre = json.loads((tmp_path / "p16" / "aelab_preprocessing.json").read_text())
    assert pre["mask_zeros"] and len(pre["scale"]) == 57
    # the hls4ml default modes (truncation, wrap-around) and a narrow type: emulation and firmware still agree
    report = H.to_hls(ae, tmp_path / "p8", "ap_fixed<8,3>", X=bg, weight_precision="ap_fixed<8,1>")
    assert report["parity"]["vs_torch_emulation"]["max"] < 1e-9, "bit-exact, decimal weight text included"
    assert report["parity"]["vs_float"]["mean"] > 0.01, "8 bits do lose accuracy"
    layers = {r["layer"]: r for r in report["layers"]}
    assert layers["dense1"]["weight"] == "ap_fixed<8,1>" and Q.parse_precision(layers["dense1"]["accum"]).width > 16
    assert "57 products" in layers["dense1"]["why"] and "act1" in H.format_parity(report)
    assert layers["act1"]["result"] == "ap_fixed<8,3>"


def test_check_hls_compat_names_the_layers_and_to_hls_refuses(tmp_path, capsys):
    X = np.random.default_rng(0).random((64, 16, 16)).astype(np.float32)
    plain = aelab.Autoencoder(arch="conv", channels=(4,), latent_dim=2, epochs=1, random_state=0).fit(X)
    assert H.check_hls_compat(plain) == []
    res = aelab.Autoencoder(arch="conv", backbone="resnet", channels=(4,), latent_dim=2, epochs=1,
                            random_state=0).fit(X)
    problems = H.check_hls_compat(res)
    assert problems and all("ResidualBlock" in p and "backbone='plain'" in p for p in problems), problems
    with pytest.raises(ConfigError, match="ResidualBlock"):
        res.to_hls(tmp_path / "res")
    assert not (tmp_path / "res").exists()
    res.save(tmp_path / "res-model")
    assert main(["export", str(tmp_path / "res-model"), "--format", "hls4ml", "--out", str(tmp_path / "res")]) == 2
    assert "ResidualBlock" in capsys.readouterr().err and not (tmp_path / "res").exists()
    elu = aelab.Autoencoder(activation="elu", latent_dim=2, epochs=1, random_state=0).fit(X.reshape(64, -1)[:, :8])
    assert any("ELU" in p and "activation=" in p for p in H.check_hls_compat(elu))


@needs_hls
def test_conv_firmware_takes_channels_last_images_and_matches_the_emulation(tmp_path):
    """Two-channel 10x10 images padded to 12x12 for two pooling stages: the firmware reads (H, W, C) and gives its
    reconstruction back so; the decoder's Dense -> (C, H, W) view is permuted for hls4ml."""
    pytest.importorskip("hls4ml")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:10, :10]
    X = np.stack([np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8) for cy, cx in rng.uniform(2, 8, (300, 2))])
    X = np.stack([X, X[:, ::-1]], axis=1)  # two channels: (n, 2, 10, 10)
    X = (X + 0.05 * rng.standard_normal(X.shape)).astype(np.float32)
    ae = aelab.Autoencoder(arch="conv", input_kind="image", channels=(4, 8), latent_dim=3, activation="leaky_relu",
                           scaler="standard", anomaly_score="mse",
                           epochs=3, random_state=0).fit(X)
    report = ae.to_hls(tmp_path / "conv", "ap_fixed<16,6>", X=X[:200])
    par = report["parity"]
    assert par["vs_torch_emulation"]["max"] < 1e-9, "bit-exact: padding, pooling, upsampling and the view"
    assert par["vs_float"]["median"] < 0.005 and par["vs_float"]["max"] < 0.02, par
    graph = report["hls_model"]
    assert list(graph.get_input_variables()[0].shape) == [12, 12, 2]
    assert list(graph.get_output_variables()[0].shape) == [12, 12, 2]
    pre = json.loads((tmp_path / "conv" / "aelab_preprocessing.json").read_text())
    assert pre["input_shape"] == [12, 12, 2] and pre["layout"].startswith("channels-last")
    emu = Q.emulate(ae, X[:200], "ap_fixed<16,6>")
    np.testing.assert_allclose(emu["float_score"], 200 * ae.decision_function(X[:200]), rtol=1e-4)
    # the firmware fed channels-first rows would score other values: the layout matters
    x, _ = Q.network_input(ae.fitted_, X[:50], Q.parse_precision("ap_fixed<16,6>"))
    wrong = graph.predict(np.ascontiguousarray(x.float().numpy().reshape(50, -1)))
    right = graph.predict(np.ascontiguousarray(x.permute(0, 2, 3, 1).float().numpy()))
    assert np.abs(np.asarray(wrong) - np.asarray(right)).max() > 0.05


def test_cli_quantize_scan_and_hls_errors_exit_2(trained, tmp_path, capsys, monkeypatch):
    ae, X, labels = trained
    ae.save(tmp_path / "model")
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", labels)
    out = tmp_path / "scan.json"
    assert main(["quantize-scan", str(tmp_path / "model"), str(tmp_path / "X.npy"), "--labels",
                 str(tmp_path / "y.npy"), "--bits", "6,16", "--fpr", "1e-3", "--out", str(out),
                 "--adder-cost", "off",
                 "--plot", str(tmp_path / "scan.png"), "-q"]) == 0
    assert (tmp_path / "scan.png").stat().st_size > 1000
    scan = json.loads(out.read_text())
    assert [r["bits"] for r in scan["rows"]] == [6, 16] and "TPR@0.001" in capsys.readouterr().out
    assert main(["quantize-scan", str(tmp_path / "model"), str(tmp_path / "X.npy"), "--labels",
                 str(tmp_path / "y.npy"), "--bits", "1..99"]) == 2
    hls = ["export", str(tmp_path / "model"), "--format", "hls4ml", "--out", str(tmp_path / "hls")]
    assert main(hls + ["--precision", "ap_fixed<16;6>"]) == 2
    assert "cannot parse the precision 'ap_fixed<16;6>'" in capsys.readouterr().err
    pca = aelab.PCA(n_components=2).fit(X[:200])
    pca.save(tmp_path / "pca")
    assert main(["export", str(tmp_path / "pca"), "--format", "hls4ml", "--out", str(tmp_path / "h2")]) == 2
    assert "hls4ml cannot take this model" in capsys.readouterr().err
    if shutil.which("g++") is not None:
        np.save(tmp_path / "bg.npy", X[labels == 0][:300])
        assert main(hls + ["--precision", "ap_fixed<12,5>", "--calibration", str(tmp_path / "bg.npy")]) == 0
        printed = capsys.readouterr().out
        assert "vs float: mean" in printed and "dense1: result ap_fixed<" in printed
        assert (tmp_path / "hls" / "aelab_parity.json").is_file()
    monkeypatch.setitem(sys.modules, "hls4ml", None)  # as if not installed
    with pytest.raises(MissingDependencyError, match=r"aelab\[hls\]"):
        ae.to_hls(tmp_path / "none")
    assert main(hls) == 2 and "pip install 'aelab[hls]'" in capsys.readouterr().err
