"""The GPU path: fit, score, save, load onto the other device, cost, a streamed fit.

These run whenever CUDA is present (``pytest -m cuda``); on a machine without CUDA they
are reported as skipped, with the reason. The rest of the suite pins the CPU unless
AELAB_TEST_DEVICE=cuda.
"""

import numpy as np
import pytest
import torch

import aelab
from aelab.metrics import roc_auc

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available on this machine")]


@pytest.fixture()
def data():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(3, 8))
    X = (rng.normal(size=(2000, 3)) @ W + 0.05 * rng.normal(size=(2000, 8))).astype(np.float32)
    X_out = (rng.normal(size=(200, 8)) * X.std(0)).astype(np.float32)
    return X, X_out


@pytest.mark.parametrize("cls", [aelab.Autoencoder, aelab.VAE, aelab.PCA])
def test_fit_score_save_and_load_across_devices(cls, data, tmp_path):
    X, X_out = data
    est = (cls(n_components=3, device="cuda") if cls is aelab.PCA
           else cls(latent_dim=3, epochs=20, random_state=0, device="cuda")).fit(X)
    assert est.device_.type == "cuda" and next(iter(est.model_.state_dict().values())).is_cuda
    s = est.decision_function(np.concatenate([X[:500], X_out]))
    assert roc_auc(np.r_[np.zeros(500), np.ones(200)], s) > 0.9
    est.save(tmp_path / "m")
    cpu = aelab.load(tmp_path / "m", device="cpu")
    assert cpu.device_.type == "cpu"
    np.testing.assert_allclose(cpu.decision_function(X), est.decision_function(X), rtol=1e-4)
    back = aelab.load(tmp_path / "m", device="cuda")
    np.testing.assert_allclose(back.decision_function(X), est.decision_function(X), rtol=1e-6)


def test_cuda_fit_agrees_with_cpu_fit(data):
    X, X_out = data
    y = np.r_[np.zeros(500), np.ones(200)]
    test = np.concatenate([X[:500], X_out])
    aucs = [roc_auc(y, aelab.Autoencoder(latent_dim=3, epochs=20, random_state=0, device=d).fit(X)
                    .decision_function(test)) for d in ("cpu", "cuda")]
    assert abs(aucs[0] - aucs[1]) < 0.02, aucs


def test_cost_on_cuda_for_pca_and_a_conv_model(digits):
    from aelab.nn import cost

    X = digits[0][:256]
    pca = aelab.PCA(n_components=4, device="cuda").fit(X)
    assert cost(pca, latency_runs=2)["macs"] == 2 * 784 * 4
    conv = aelab.Autoencoder(arch="conv", channels=(4, 8), epochs=1, random_state=0, device="cuda").fit(X)
    c = cost(conv, latency_runs=2)
    assert c["macs"] > 0 and c["latency_ms"] > 0


def test_streamed_fit_on_cuda(data, tmp_path):
    X, _ = data
    np.save(tmp_path / "x.npy", X)
    with aelab.io.open_array(tmp_path / "x.npy", chunk_rows=300) as src:
        est = aelab.Autoencoder(latent_dim=3, epochs=3, random_state=0, device="cuda").fit(src)
    assert est.device_.type == "cuda" and len(est.history_["val_loss"]) == 3
    assert np.isfinite(est.decision_function(X)).all()


def test_checkpoint_and_resume_on_cuda(data, tmp_path):
    X, _ = data
    whole = aelab.Autoencoder(latent_dim=3, epochs=4, random_state=0, device="cuda").fit(X)
    part = aelab.Autoencoder(latent_dim=3, epochs=4, random_state=0, device="cuda")
    part.fit(X, checkpoint_dir=tmp_path / "ck", checkpoint_every=2)
    resumed = aelab.Autoencoder(latent_dim=3, epochs=4, random_state=0, device="cuda").fit(X, resume=tmp_path / "ck")
    np.testing.assert_allclose(resumed.decision_function(X), whole.decision_function(X), rtol=1e-5)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="a 2-rank NCCL fit needs two GPUs")
def test_two_rank_nccl_fit(data):
    import aelab.distributed as D

    X, X_out = data
    two = D.fit(aelab.Autoencoder(latent_dim=3, epochs=20, batch_size=16, random_state=0, device="cuda"), X, nproc=2)
    one = aelab.Autoencoder(latent_dim=3, epochs=20, batch_size=32, random_state=0, device="cuda").fit(X)
    y = np.r_[np.zeros(500), np.ones(200)]
    test = np.concatenate([X[:500], X_out])
    assert abs(roc_auc(y, two.decision_function(test)) - roc_auc(y, one.decision_function(test))) <= 0.01
    np.testing.assert_allclose(two.scaler_.offset, one.scaler_.offset, rtol=1e-10)
