"""Errors point at the right place (issue 24, item 7): a bad value is named by its row in the whole
data set (streamed in chunks, or one rank's shard of it), and the score summary uses the threshold of
the score asked for."""

import numpy as np
import pytest

import aelab
from aelab.exceptions import DataError


@pytest.fixture
def nan_file(tmp_path):
    X = np.random.default_rng(0).normal(size=(3000, 4)).astype(np.float32)
    X[2000, 1] = np.nan
    np.save(tmp_path / "nan.npy", X)
    return tmp_path / "nan.npy"


def test_fit_on_a_streamed_file_names_the_row_in_the_whole_file(nan_file):
    src = aelab.io.open_array(nan_file, chunk_rows=256)
    with pytest.raises(DataError, match=r"first at row 2000 of X, index \(2000, 1\)"):
        aelab.PCA(n_components=2).fit(src)


def test_scoring_a_streamed_file_names_the_row_in_the_whole_file(nan_file):
    X = np.load(nan_file)
    model = aelab.PCA(n_components=2).fit(X[:1000])
    with pytest.raises(DataError, match=r"row 2000 of X"):
        model.decision_function(aelab.io.open_array(nan_file, chunk_rows=300))


def test_a_rank_shard_names_the_row_in_the_whole_file(nan_file):
    # rank 1 of 2 reads rows 1500..2999: the NaN is row 2000 of the file, not row 500 of the shard
    from aelab._validation import iter_checked_chunks

    shard = aelab.io.open_array(nan_file, chunk_rows=100).rows(1500, 3000)
    assert shard.origin == 1500
    with pytest.raises(DataError, match=r"in rows 2000 to 2099 \(first at row 2000 of X, index \(2000, 1\)\)"):
        list(iter_checked_chunks(shard))


def test_cli_score_names_the_row(nan_file, tmp_path, cli):
    X = np.load(nan_file)
    np.save(tmp_path / "clean.npy", X[:1000])
    assert cli("train", tmp_path / "clean.npy", "--model", "pca", "--out", tmp_path / "m")[0] == 0
    code, _, err = cli("score", tmp_path / "m", nan_file, "--stream", "always", "--out", tmp_path / "s.npy")
    assert code == 2 and "row 2000 of X" in err and len(err.splitlines()) == 1


def test_score_summary_uses_the_threshold_of_the_score_asked_for(tmp_path, cli):
    X = np.random.default_rng(1).normal(size=(400, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    assert cli("train", tmp_path / "x.npy", "--model", "pca", "--out", tmp_path / "m")[0] == 0
    model = aelab.load(tmp_path / "m")
    assert model.score_ != "mse"
    code, out, _ = cli("score", tmp_path / "m", tmp_path / "x.npy", "--score", "mse", "--out", tmp_path / "s.npy")
    assert code == 0
    assert "above the threshold" not in out
    assert "no threshold for the mse score" in out and model.score_ in out
    # the default score keeps its share above its own threshold
    code, out, _ = cli("score", tmp_path / "m", tmp_path / "x.npy", "--out", tmp_path / "s2.npy")
    share = (np.load(tmp_path / "s2.npy") > model.threshold_).mean()
    assert code == 0 and f"{share:.2%} above the threshold" in out


def test_scores_streamed_to_a_file_name_the_row(nan_file, tmp_path):
    from aelab.latent import score_to_file

    model = aelab.PCA(n_components=2).fit(np.load(nan_file)[:1000])
    with pytest.raises(DataError, match=r"row 2000 of X"):
        score_to_file(model, aelab.io.open_array(nan_file, chunk_rows=128), tmp_path / "s.npy")
