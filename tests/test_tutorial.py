"""The tutorial behind ``aelab demo``, in its quick version: every step runs and the report shows it all."""

import contextlib
import io
import re

import numpy as np
import pytest

from aelab.cli import main
from aelab.tutorial import NORMAL_DIGIT, QUICK, run_tutorial
from test_report import assert_report_renders

SECTIONS = [
    "1. Compression: the bottleneck",
    "2. Denoising",
    "3. Sparsity: the L1 penalty and the Laplace prior",
    "4. Clustering in the latent space",
    "5. Anomaly detection",
    "6. Generation: the variational autoencoder",
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One quick demo through the command line, its printed output and its folder."""
    out_dir = tmp_path_factory.mktemp("demo") / "out"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["demo", "--quick", "--out", str(out_dir)])
    assert code == 0
    return out_dir, stdout.getvalue()


def test_demo_prints_a_table_per_step(demo):
    _, text = demo
    for title in SECTIONS:
        assert title in text
    assert re.search(r"^PCA +2 +0\.9974 ", text, re.M) and re.search(r"^conv AE +8 ", text, re.M)
    assert re.search(r"^mse +0\.\d+ +0\.\d+ ", text, re.M)  # the anomaly table
    assert re.search(r"wrote .*report\.html in \d+ s", text)


def test_demo_report_has_every_section_and_at_least_8_figures(demo):
    out_dir, _ = demo
    html = (out_dir / "report.html").read_text()
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in html
    assert html.count('<img src="data:image/png;base64,') >= 8


def test_demo_report_renders_in_chromium(demo, tmp_path):
    out_dir, _ = demo
    n_images = (out_dir / "report.html").read_text().count("<img ")
    assert_report_renders(out_dir / "report.html", SECTIONS, n_images, tmp_path, "report-demo-quick")


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    return run_tutorial(tmp_path_factory.mktemp("tables"), quick=True, echo=None)


def test_summary_tables(tables):
    assert set(tables) == {"compression", "denoising", "sparsity", "clustering", "anomaly", "threshold", "generation"}
    comp = tables["compression"]
    assert [(r["model"], r["k"]) for r in comp] == [(m, k) for m in ("PCA", "linear AE", "dense AE", "conv AE")
                                                    for k in QUICK.ks]
    for r in comp:
        assert r["space saved"] == pytest.approx((784 - r["k"]) / 784)
        assert 0 < r["test MSE"] < 0.25
    pca = {r["k"]: r["test MSE"] for r in comp if r["model"] == "PCA"}
    assert pca[8] < pca[2]  # a bigger code keeps more


def test_denoising_baseline_is_the_noise_itself(tables):
    none, plain, dae = (r["MSE vs clean"] for r in tables["denoising"])
    # Gaussian noise of std 0.3, clipped to [0, 1]: the error of the noisy digit itself is below 0.09
    assert 0.02 < none < 0.09
    assert plain > 0 and dae > 0


def test_sparsity_table(tables):
    plain, sparse = tables["sparsity"]
    assert 0 <= plain["near-zero code units"] <= 1 and 0 <= sparse["near-zero code units"] <= 1
    assert sparse["active units per digit"] <= QUICK.ks[-1]


def test_clustering_and_anomaly_tables(tables):
    assert [r["k-means on"] for r in tables["clustering"]][0] == "raw pixels"
    for r in tables["clustering"]:
        assert -0.5 <= r["ARI"] <= 1 and 0 <= r["NMI"] <= 1
    assert [r["score"] for r in tables["anomaly"]] == ["relative+latent", "mse", "mu_norm", "kl"]
    (thr,) = tables["threshold"]
    assert thr["test anomalies"] + thr["test normal"] == QUICK.n_test
    # rates are counts over the test digits of each class, and the detector does better than chance
    for rate, n in ((thr["test FPR"], thr["test normal"]), (thr["test TPR"], thr["test anomalies"])):
        assert rate * n == pytest.approx(round(rate * n), abs=1e-6)
    assert thr["test TPR"] > thr["test FPR"]
    # the anomaly table's first row is the default score, the one the threshold uses
    assert next(iter(thr)).endswith(f"({tables['anomaly'][0]['score']})")
    assert NORMAL_DIGIT in range(10)


def test_generation_beta_table(tables):
    assert [r["beta"] for r in tables["generation"]] == list(QUICK.betas)
    assert all(r["mean KL (nats)"] >= 0 and r["test MSE"] > 0 for r in tables["generation"])


def test_tutorial_is_reproducible_and_restores_the_threads(tables, tmp_path):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        again = run_tutorial(tmp_path, quick=True, echo=None, threads=1)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    np.testing.assert_allclose([r["test MSE"] for r in again["compression"]],
                               [r["test MSE"] for r in tables["compression"]], rtol=1e-5)


def test_demo_data_dir_without_mnist_files_is_a_usage_error(tmp_path, capsys):
    code = main(["demo", "--quick", "--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("aelab demo: error: ") and err.count("\n") == 1
    assert "empty" in err  # names the folder it looked in
    assert not (tmp_path / "o").exists()
