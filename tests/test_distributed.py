"""Data-parallel training on torch.distributed (gloo over 127.0.0.1, one thread per rank), checkpoints and resume.

Every test here starts real processes: torchrun's elastic agent launches the ranks, which
rendezvous on a free loopback port and all-reduce with gloo. Nothing is mocked.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import aelab
import aelab.distributed as D
from aelab.exceptions import ConfigError, PersistenceError
from aelab.metrics import roc_auc

pytestmark = pytest.mark.slow


def low_rank(n=4000, d=16, seed=0):
    """Rows near a 4-dimensional subspace (the loss converges to the noise floor: seeds agree to ~1%)."""
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(n, 4)) @ rng.normal(size=(4, d)) + 0.5 * rng.normal(size=(n, d))).astype(np.float32)
    anomalies = (2 * rng.normal(size=(300, d))).astype(np.float32)
    return X, np.concatenate([X[:600], anomalies]), np.r_[np.zeros(600), np.ones(300)]


def aelab_cli(*args, timeout=240, **kw):
    return subprocess.run([sys.executable, "-m", "aelab", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, **kw)


def weights(folder):
    from safetensors.numpy import load_file

    return load_file(str(folder / "weights.safetensors"))


def test_two_ranks_fit_the_model_one_process_fits():
    X, Xt, y = low_rank()
    params = dict(latent_dim=4, epochs=10, random_state=0, anomaly_score="mse+latent")
    one = aelab.Autoencoder(batch_size=64, n_threads=1, **params).fit(X)
    two = D.fit(aelab.Autoencoder(batch_size=32, **params), X, nproc=2, threads=1)
    # the statistics are reduced over ranks: the scaler is the one of all rows
    np.testing.assert_allclose(two.scaler_.offset, one.scaler_.offset, rtol=0, atol=1e-12)
    np.testing.assert_allclose(two.scaler_.scale, one.scaler_.scale, rtol=1e-12)
    assert two.input_kind_ == "table" and two.score_ == one.score_
    # global batch 2 x 32 = 64: the same training up to the order of the rows
    assert two.history_["loss"][-1] == pytest.approx(one.history_["loss"][-1], rel=0.02)
    assert len(two.history_["loss"]) == len(one.history_["loss"])
    assert abs(roc_auc(y, two.decision_function(Xt)) - roc_auc(y, one.decision_function(Xt))) <= 0.01
    # the training scores of every row, gathered in row order, and the threshold from them
    assert two.decision_scores_.shape == (len(X),)
    np.testing.assert_allclose(two.decision_scores_, two.decision_function(X), rtol=1e-5)
    assert two.threshold_ == pytest.approx(np.quantile(two.decision_scores_, 0.9), rel=0.02)


def test_two_ranks_streamed_read_their_shards_and_reduce_the_statistics(tmp_path):
    X, Xt, y = low_rank(3000)
    np.save(tmp_path / "x.npy", X)
    src = aelab.io.open_array(tmp_path / "x.npy", chunk_rows=250)
    two = D.fit(aelab.PCA(n_components=4), src, nproc=2, threads=1)
    one = aelab.PCA(n_components=4).fit(X)
    np.testing.assert_allclose(two.scaler_.scale, one.scaler_.scale, rtol=1e-12)
    np.testing.assert_allclose(two.explained_variance_, one.explained_variance_, rtol=1e-9)
    np.testing.assert_allclose(two.decision_function(Xt), one.decision_function(Xt), rtol=1e-6)
    np.testing.assert_allclose(two.decision_scores_, one.decision_scores_, rtol=1e-6)
    assert two.threshold_ == pytest.approx(one.threshold_, rel=1e-6)


def test_cli_nproc_2_end_to_end(tmp_path):
    rng = np.random.default_rng(0)
    events = rng.normal(size=(2000, 19, 3)).astype(np.float32)  # collider-shaped: a table of objects
    np.save(tmp_path / "events.npy", events)
    r = aelab_cli("train", tmp_path / "events.npy", "--epochs", 3, "--seed", 0, "--nproc", 2, "--threads", 1,
                  "--out", tmp_path / "model")
    assert r.returncode == 0, r.stderr
    assert "2 ranks x 1 CPU thread" in r.stdout and "read as a table" in r.stdout
    model = aelab.load(tmp_path / "model")
    assert model.input_kind_ == "table" and len(model.history_["loss"]) == 3
    assert model.decision_scores_.shape == (2000,)
    r = aelab_cli("score", tmp_path / "model", tmp_path / "events.npy", "--out", tmp_path / "s.npy")
    assert r.returncode == 0, r.stderr
    scores = np.load(tmp_path / "s.npy")
    np.testing.assert_allclose(scores, model.decision_function(events), rtol=1e-6)
    # training scores leave each reference row out of its own neighbours: those rows, and only those, score
    # higher than the same rows scored as new ones
    moved = ~np.isclose(model.decision_scores_, scores, rtol=1e-6, atol=0)
    distinct = len(np.unique(model.fitted_.knn_ref, axis=0))  # the rows of all the bags
    assert moved.sum() == distinct and (model.decision_scores_[moved] > scores[moved]).all()


def test_torchrun_runs_the_same_command(tmp_path):
    X, _, _ = low_rank(1500)
    np.save(tmp_path / "x.npy", X)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                        "-m", "aelab", "train", str(tmp_path / "x.npy"), "--epochs", "2", "--seed", "0",
                        "--out", str(tmp_path / "model")], capture_output=True, text=True, timeout=240, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("trained Autoencoder on 1500 samples") == 1  # rank 0 alone writes and reports
    assert aelab.load(tmp_path / "model").decision_scores_.shape == (1500,)


def test_a_failing_rank_ends_the_job_with_its_message(tmp_path):
    X, _, _ = low_rank(2000)
    X[-1, 0] = np.nan  # only rank 1 reads this row of the streamed file
    np.save(tmp_path / "bad.npy", X)
    start = time.monotonic()
    r = aelab_cli("train", tmp_path / "bad.npy", "--stream", "always", "--epochs", 2, "--nproc", 2, "--threads", 1,
                  "--out", tmp_path / "model", timeout=120)
    assert time.monotonic() - start < 60
    assert r.returncode == 2
    assert "rank 1 of 2 failed: " in r.stderr and "1 NaN" in r.stderr
    assert not (tmp_path / "model").exists()


def _kill_after_epoch(cmd, checkpoint, epoch=2, timeout=180):
    """Start ``cmd``; once ``checkpoint`` holds ``epoch`` completed epochs, stop it with SIGTERM (as a
    preempting scheduler does)."""
    p = subprocess.Popen([sys.executable, "-m", "aelab", *map(str, cmd)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while p.poll() is None and time.monotonic() < deadline:
        try:
            if json.loads((checkpoint / "checkpoint.json").read_text())["epoch"] >= epoch:
                p.send_signal(signal.SIGTERM)
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.01)
    p.communicate(timeout=60)
    done = json.loads((checkpoint / "checkpoint.json").read_text())["epoch"]
    assert p.returncode != 0 and epoch <= done < 8, f"the run was not interrupted mid-way (epoch {done})"
    return done


@pytest.mark.parametrize("nproc", [1, 2])
def test_resume_after_interruption_gives_the_uninterrupted_model(tmp_path, nproc):
    X, Xt, _ = low_rank(16000, 57)
    np.save(tmp_path / "x.npy", X)
    common = [tmp_path / "x.npy", "--epochs", 8, "--seed", 0, "--threads", 1, "-q"] + (
        ["--nproc", 2] if nproc == 2 else [])
    assert aelab_cli("train", *common, "--out", tmp_path / "whole").returncode == 0
    ckpt = tmp_path / "run.checkpoint"
    _kill_after_epoch(["train", *common, "--checkpoint-every", 1, "--out", tmp_path / "run"], ckpt)
    assert not (tmp_path / "run").exists()
    r = aelab_cli("train", *common, "--resume", ckpt, "--checkpoint-every", 1, "--out", tmp_path / "run")
    assert r.returncode == 0, r.stderr
    whole, resumed = aelab.load(tmp_path / "whole"), aelab.load(tmp_path / "run")
    assert resumed.history_ == whole.history_
    # the same weights, bit for bit (one process and, with gloo's deterministic sums, two)
    a, b = weights(tmp_path / "whole"), weights(tmp_path / "run")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    np.testing.assert_allclose(resumed.decision_function(Xt), whole.decision_function(Xt), rtol=1e-5)


def test_checkpoint_from_python_and_its_errors(tmp_path):
    X, _, _ = low_rank(1500)
    est = aelab.Autoencoder(epochs=3, random_state=0, n_threads=1)
    est.fit(X, checkpoint_dir=tmp_path / "ck", checkpoint_every=2)
    doc = json.loads((tmp_path / "ck" / "checkpoint.json").read_text())
    assert doc["epoch"] == 3 and doc["world_size"] == 1  # every 2 epochs, and at the end
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == [".aelab.json", "checkpoint.json", "state.safetensors"]
    # resuming a finished run trains nothing more and gives the same model
    again = aelab.Autoencoder(epochs=3, random_state=0, n_threads=1).fit(X, resume=tmp_path / "ck")
    np.testing.assert_array_equal(again.decision_function(X), est.decision_function(X))
    with pytest.raises(ConfigError, match=r"does not belong to this run.*rows: checkpoint 1500, now 1499"):
        aelab.Autoencoder(epochs=3, random_state=0).fit(X[:-1], resume=tmp_path / "ck")
    with pytest.raises(ConfigError, match="lr: checkpoint|params"):
        aelab.Autoencoder(epochs=3, random_state=0, lr=0.01).fit(X, resume=tmp_path / "ck")
    with pytest.raises(PersistenceError, match="is not an aelab checkpoint"):
        aelab.Autoencoder(epochs=3).fit(X, resume=tmp_path)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("mine")
    with pytest.raises(PersistenceError, match="not an aelab checkpoint"):
        aelab.Autoencoder(epochs=3).fit(X, checkpoint_dir=tmp_path / "notes")
    assert (tmp_path / "notes" / "a.txt").read_text() == "mine"
    with pytest.raises(ConfigError, match="checkpoint_every must be a positive integer"):
        aelab.Autoencoder(epochs=3).fit(X, checkpoint_dir=tmp_path / "ck2", checkpoint_every=0)


def test_launch_rejects_a_bad_process_count():
    with pytest.raises(ConfigError, match="nproc must be a positive integer"):
        D.launch(0, sys.executable)
