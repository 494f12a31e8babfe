"""Columns are checked (issue 24, item 6): a model fitted on named columns records
``feature_names_in_``, keeps it through save/load, refuses data whose names or order differ and
warns (as scikit-learn does) when only one side has names. DataFrames, pyarrow Tables, Parquet
and CSV files with a header, in memory or streamed, in Python and on the command line."""

import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import aelab
from aelab.exceptions import DataError


@pytest.fixture
def table():
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(300, 4)) * [1, 2, 3, 4]).astype(np.float32)
    return X, pd.DataFrame(X, columns=["pt", "eta", "phi", "mass"])


def _pca():
    return aelab.PCA(n_components=2)


def test_a_dataframe_fit_records_the_names_and_refuses_another_order(table):
    X, df = table
    model = _pca().fit(df)
    assert model.feature_names_in_.dtype == object
    assert list(model.feature_names_in_) == ["pt", "eta", "phi", "mass"]
    np.testing.assert_allclose(model.decision_function(df), _pca().fit(X).decision_function(X), rtol=1e-6)
    swapped = df[["eta", "pt", "phi", "mass"]]  # the same columns in another order: silently wrong before
    with pytest.raises(DataError, match=r"(?s)same order as they were in fit.*Column 0 of X is 'eta'.*'pt' there"):
        model.decision_function(swapped)
    with pytest.raises(DataError, match="(?s)unseen at fit time:\n- energy\n.*yet now missing:\n- mass"):
        model.transform(df.rename(columns={"mass": "energy"}))
    for method in (model.predict, model.score_samples, model.reconstruct, model.feature_errors):
        with pytest.raises(DataError, match="should match those that were passed during fit"):
            method(swapped)


def test_names_on_one_side_only_warn(table):
    X, df = table
    named, unnamed = _pca().fit(df), _pca().fit(X)
    assert not hasattr(unnamed, "feature_names_in_")
    with pytest.warns(UserWarning, match="X does not have valid feature names, but PCA was fitted with feature names"):
        named.decision_function(X)
    with pytest.warns(UserWarning, match="X has feature names, but PCA was fitted without feature names"):
        unnamed.decision_function(df)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        named.decision_function(df)  # the same names: no warning
        unnamed.decision_function(X)


def test_only_string_names_are_recorded(table):
    X, _ = table
    assert not hasattr(_pca().fit(pd.DataFrame(X)), "feature_names_in_")  # 0, 1, 2, 3: positions, not names


def test_pyarrow_tables_are_named(table):
    X, df = table
    model = _pca().fit(pa.Table.from_pandas(df))
    assert list(model.feature_names_in_) == list(df.columns)
    with pytest.raises(DataError, match="same order"):
        model.decision_function(pa.Table.from_pandas(df[["pt", "eta", "mass", "phi"]]))


def test_names_are_saved_and_loaded(table, tmp_path):
    from aelab.fitted import Fitted

    _, df = table
    model = _pca().fit(df)
    model.save(tmp_path / "m")
    loaded = aelab.load(tmp_path / "m")
    assert list(loaded.feature_names_in_) == list(df.columns)
    with pytest.raises(DataError, match="same order"):
        loaded.decision_function(df[df.columns[::-1]])
    # a folder written before feature names existed has no such key: it loads, without names
    config, tensors = model.fitted_.to_state()
    assert config["fitted"]["feature_names"] == list(df.columns)
    del config["fitted"]["feature_names"]
    old = Fitted.from_state(config, tensors, model.device_, model.anomaly_score)
    assert old.feature_names is None


def test_streamed_parquet_and_csv_sources_carry_their_names(table, tmp_path):
    X, df = table
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp_path / "x.parquet", row_group_size=100)
    src = aelab.io.open_array(tmp_path / "x.parquet", chunk_rows=64)
    assert src.columns == ("pt", "eta", "phi", "mass")
    assert src.rows(100, 200).columns == src.columns  # a rank's shard
    model = _pca().fit(src)
    assert list(model.feature_names_in_) == list(df.columns)
    df[["phi", "eta", "pt", "mass"]].to_csv(tmp_path / "swapped.csv", index=False)
    swapped = aelab.io.open_array(tmp_path / "swapped.csv")
    assert swapped.columns == ("phi", "eta", "pt", "mass")
    with pytest.raises(DataError, match="same order"):
        model.decision_function(swapped)
    np.testing.assert_allclose(model.decision_function(aelab.io.open_array(tmp_path / "x.parquet")),
                               model.decision_function(df), rtol=1e-6)


def test_scikit_learn_column_name_check_passes():
    from sklearn.utils.estimator_checks import check_dataframe_column_names_consistency

    for est in (aelab.PCA(n_components=2), aelab.Autoencoder(epochs=1, random_state=0),
                aelab.VAE(epochs=1, random_state=0)):
        check_dataframe_column_names_consistency(type(est).__name__, est)


def test_cli_reads_names_from_csv_headers_and_parquet(table, tmp_path, cli):
    X, df = table
    df.to_csv(tmp_path / "train.csv", index=False)
    assert cli("train", tmp_path / "train.csv", "--model", "pca", "--out", tmp_path / "m")[0] == 0
    assert list(aelab.load(tmp_path / "m").feature_names_in_) == list(df.columns)
    df[["eta", "pt", "phi", "mass"]].to_csv(tmp_path / "swapped.csv", index=False)
    code, _, err = cli("score", tmp_path / "m", tmp_path / "swapped.csv", "--out", tmp_path / "s.npy")
    assert code == 2 and len(err.splitlines()) == 1 and "same order" in err
    assert not (tmp_path / "s.npy").exists()
    df.to_parquet(tmp_path / "ok.parquet", index=False)
    assert cli("score", tmp_path / "m", tmp_path / "ok.parquet", "--out", tmp_path / "s.npy")[0] == 0
    np.save(tmp_path / "plain.npy", X)
    code, _, err = cli("score", tmp_path / "m", tmp_path / "plain.npy", "--out", tmp_path / "s2.npy")
    assert code == 0
    assert err.splitlines() == ["aelab score: warning: X does not have valid feature names, but PCA was fitted "
                                "with feature names ('pt', 'eta', 'phi', 'mass'); its columns are taken by position."]


def test_the_report_checks_names_without_a_spurious_warning(table):
    from aelab.report import model_report

    X, df = table
    model = _pca().fit(df)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert model_report(model, df)
    with pytest.raises(DataError, match="same order"):
        model_report(model, df[df.columns[::-1]])


def test_named_arrays_keep_their_names_when_pickled():
    import pickle

    from aelab._columns import NamedArray, feature_names

    a = NamedArray(np.zeros((3, 2), dtype=np.float32), ["a", "b"])
    assert feature_names(pickle.loads(pickle.dumps(a))) == ("a", "b")
    assert feature_names(a[:2]) == ("a", "b") and feature_names(a[:, :1]) is None


@pytest.mark.slow
def test_data_parallel_fit_records_the_names(table):
    import aelab.distributed as D

    _, df = table
    model = D.fit(aelab.PCA(n_components=2), df, nproc=2, threads=1)
    assert list(model.feature_names_in_) == list(df.columns)


def test_encoding_a_named_file_chunk_by_chunk_checks_the_names_once(table, tmp_path):
    from aelab.latent import encode_to_file, score_to_file

    X, df = table
    df.to_parquet(tmp_path / "x.parquet", index=False)
    df[df.columns[::-1]].to_parquet(tmp_path / "swapped.parquet", index=False)
    model = _pca().fit(df)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encode_to_file(model, aelab.io.open_array(tmp_path / "x.parquet", chunk_rows=50), tmp_path / "z.npy")
    np.testing.assert_allclose(np.load(tmp_path / "z.npy"), model.transform(df), rtol=1e-5, atol=1e-6)
    with pytest.raises(DataError, match="same order"):
        score_to_file(model, aelab.io.open_array(tmp_path / "swapped.parquet", chunk_rows=50), tmp_path / "s.npy")
    assert not (tmp_path / "s.npy").exists()
