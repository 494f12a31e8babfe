"""The ``aelab`` command line, in-process: every command, every input format, every kind of bad input."""

import argparse
import json

import numpy as np
import pandas as pd
import pytest

import aelab
from aelab.cli import main
from aelab.cli._common import run

COMMANDS = ["demo", "train", "score", "evaluate", "threshold", "encode", "decode", "generate", "cluster", "report", "cost",
            "explain"]
FORMATS = ["npy", "csv", "parquet"]
rng = np.random.default_rng(0)


def write(path, array):
    """Write ``array`` in the format of ``path``'s extension, the way users' files look."""
    path = str(path)
    if path.endswith(".npy"):
        np.save(path, array)
    elif path.endswith(".csv"):
        pd.DataFrame(array, columns=[f"f{i}" for i in range(array.shape[1])]).to_csv(path, index=False)
    else:
        pd.DataFrame(array, columns=[f"f{i}" for i in range(array.shape[1])]).to_parquet(path)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A tiny table (6 features, 10% anomalies), in every format, and a model trained on it."""
    d = tmp_path_factory.mktemp("cli")
    X = rng.normal(size=(150, 6)).astype(np.float32)
    y = (np.arange(150) % 10 == 0).astype(int)
    X[y == 1] += 4.0
    files = {fmt: write(d / f"X.{fmt}", X) for fmt in FORMATS}
    np.save(d / "y.npy", y)
    model = d / "model"
    assert main(["train", files["npy"], "--epochs", "2", "--seed", "0", "-k", "2", "--out", str(model), "-q"]) == 0
    return {"dir": d, "X": X, "y": y, "files": files, "labels": str(d / "y.npy"), "model": str(model)}


def sentinel(path):
    """An existing output file, to check that a failing command leaves it untouched."""
    path.write_bytes(b"precious")
    return path


def untouched(path):
    return path.read_bytes() == b"precious" and len(list(path.parent.glob(f".{path.name}*"))) == 0


# ------------------------------------------------------------------ help and usage
@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(cli, command):
    code, out, _ = cli(command, "--help")
    assert code == 0
    assert f"usage: aelab {command}" in out
    assert f"example:\n  aelab {command}" in out


def test_top_level_help_and_version(cli):
    code, out, _ = cli("--help")
    assert code == 0 and all(c in out for c in COMMANDS)
    code, out, _ = cli("--version")
    assert code == 0 and out.strip() == f"aelab {aelab.__version__}"


def test_no_command_is_a_usage_error(cli):
    code, _, err = cli()
    assert code == 2 and "required: COMMAND" in err


# ------------------------------------------------------------------ train
@pytest.mark.parametrize(
    "model, cls, params",
    [
        ("ae", "Autoencoder", {"noise": 0.0, "sparsity": 0.0, "linear": False}),
        ("dae", "Autoencoder", {"noise": 0.2}),
        ("sae", "Autoencoder", {"sparsity": 1e-3}),
        ("linear", "Autoencoder", {"linear": True}),
        ("vae", "VAE", {"beta": 1.0}),
        ("pca", "PCA", {"n_components": 3}),
    ],
)
def test_train_model_choices(cli, data, tmp_path, model, cls, params):
    epochs = [] if model == "pca" else ["--epochs", 1]
    code, out, err = cli("train", data["files"]["npy"], "--model", model, "-k", 3, *epochs, "--out", tmp_path / "m")
    assert code == 0, err
    est = aelab.load(tmp_path / "m")
    assert type(est).__name__ == cls
    assert {k: est.get_params()[k] for k in params} == params
    assert f"trained {cls} on 150 samples of shape (6,)" in out


def test_train_config_files_and_flag_override(cli, data, tmp_path):
    (tmp_path / "c.toml").write_text('latent_dim = 3\nhidden = [12]\narch = "dense"\nepochs = 1\n')
    (tmp_path / "c.yaml").write_text("latent_dim: 3\nhidden: [12]\nepochs: 1\nnoise: 0.1\n")
    code, _, err = cli("train", data["files"]["csv"], "--config", tmp_path / "c.toml", "--out", tmp_path / "a")
    assert code == 0, err
    est = aelab.load(tmp_path / "a")
    assert est.latent_dim == 3 and tuple(est.hidden) == (12,) and est.epochs == 1
    code, _, err = cli("train", data["files"]["csv"], "-c", tmp_path / "c.yaml", "-k", 2, "--model", "dae", "--out", tmp_path / "b")
    assert code == 0, err
    est = aelab.load(tmp_path / "b")
    assert est.latent_dim == 2  # the flag overrides the file
    assert est.noise == 0.1  # the file overrides the preset of --model dae


def test_train_progress_off_when_not_a_terminal(cli, data, tmp_path):
    code, _, err = cli("train", data["files"]["npy"], "--epochs", 2, "--out", tmp_path / "m")
    assert code == 0 and err == ""  # no progress bar in a pipe or a test
    assert aelab.load(tmp_path / "m").verbose is False


def test_train_on_builtin_mnist(cli, tmp_path):
    (tmp_path / "c.toml").write_text('arch = "dense"\nhidden = [16]\nvalidation_fraction = 0.0\n')
    code, out, err = cli("train", "mnist:sample", "-k", 2, "--epochs", 1, "-c", tmp_path / "c.toml", "--out", tmp_path / "m")
    assert code == 0, err
    assert "5000 samples of shape (28, 28)" in out
    code, out, err = cli("cluster", tmp_path / "m", "mnist:sample", "--k", 10, "--labels", "mnist:sample")
    assert code == 0, err
    assert "ari" in out and "nmi" in out
    code, out, err = cli("report", tmp_path / "m", "mnist:sample", "--labels", "mnist:sample", "--out", tmp_path / "r.html")
    assert code == 0, err
    html = (tmp_path / "r.html").read_text()
    assert "<h2>Reconstructions</h2>" in html and "ROC curve" not in html  # digit classes: no ROC


# ------------------------------------------------------------------ every command on every format
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_command_on_every_format(cli, data, tmp_path, fmt):
    X, model, src = data["X"], data["model"], data["files"][fmt]
    assert cli("train", src, "--epochs", 1, "-k", 2, "--out", tmp_path / "m")[0] == 0

    code, out, err = cli("score", model, src, "--out", tmp_path / f"s.{fmt}")
    assert code == 0, err
    scores = aelab.io.read_array(tmp_path / f"s.{fmt}").ravel()
    np.testing.assert_allclose(scores, aelab.load(model).decision_function(X), rtol=1e-5)

    code, out, err = cli("evaluate", model, src, "--labels", data["labels"])
    assert code == 0, err
    assert "ROC AUC" in out and "TPR at FPR 0.01" in out

    code, _, err = cli("encode", model, src, "--out", tmp_path / f"z.{fmt}")
    assert code == 0, err
    Z = np.asarray(aelab.io.read_array(tmp_path / f"z.{fmt}"))
    assert Z.shape == (150, 2)

    code, _, err = cli("decode", model, tmp_path / f"z.{fmt}", "--out", tmp_path / f"d.{fmt}")
    assert code == 0, err
    assert np.asarray(aelab.io.read_array(tmp_path / f"d.{fmt}")).shape == (150, 6)

    code, out, err = cli("cluster", model, src, "--k", 2, "--labels", data["labels"], "--out", tmp_path / f"c.{fmt}")
    assert code == 0, err
    assert set(np.unique(aelab.io.read_array(tmp_path / f"c.{fmt}"))) == {0, 1}

    code, out, err = cli("report", model, src, "--labels", data["labels"], "--out", tmp_path / "r.html")
    assert code == 0, err
    assert "<h2>Anomaly scores</h2>" in (tmp_path / "r.html").read_text()

    code, out, err = cli("threshold", tmp_path / "m", src, "--fpr", 0.05)
    assert code == 0, err


# ------------------------------------------------------------------ large files are streamed
@pytest.mark.parametrize("fmt", ["npy", "h5", "parquet"])
def test_large_files_are_streamed_with_the_same_results(cli, data, tmp_path, monkeypatch, fmt):
    X, model = data["X"], data["model"]
    src = str(tmp_path / f"X.{fmt}")
    aelab.io.write_array(src, X)
    monkeypatch.setenv("AELAB_STREAM_BYTES", "1")  # every file counts as large

    code, out, err = cli("train", src, "--epochs", 1, "-k", 2, "--seed", 0, "--out", tmp_path / "m")
    assert code == 0, err
    assert "trained Autoencoder on 150 samples of shape (6,) (read as a table), streamed in chunks of" in out
    assert aelab.load(tmp_path / "m").input_shape_ == (6,)

    code, out, err = cli("score", model, src, "--out", tmp_path / "s.npy")
    assert code == 0 and "streamed" in out, err
    np.testing.assert_allclose(np.load(tmp_path / "s.npy"), aelab.load(model).decision_function(X), rtol=1e-5)

    for out_file in ("z.npy", "z.csv", "z.h5"):  # .h5 cannot take rows a chunk at a time: encoded in memory
        code, out, err = cli("encode", model, src, "--out", tmp_path / out_file)
        assert code == 0 and "wrote 150 codes of 2 dimensions, streamed" in out, err
        np.testing.assert_allclose(np.asarray(aelab.io.read_array(tmp_path / out_file)),
                                   aelab.load(model).transform(X), rtol=1e-5, atol=1e-6)

    code, streamed_eval, err = cli("evaluate", model, src, "--labels", data["labels"])
    assert code == 0, err
    assert streamed_eval == cli("evaluate", model, data["files"]["npy"], "--labels", data["labels"], "--stream", "never")[1]

    code, out, err = cli("threshold", tmp_path / "m", src, "--fpr", 0.05)
    assert code == 0 and "streamed" in out, err
    streamed_threshold = aelab.load(tmp_path / "m").threshold_
    assert cli("threshold", tmp_path / "m", src, "--fpr", 0.05, "--stream", "never")[0] == 0
    assert aelab.load(tmp_path / "m").threshold_ == pytest.approx(streamed_threshold, rel=1e-6)


def test_small_files_are_read_whole_unless_asked(cli, data, tmp_path, monkeypatch):
    monkeypatch.delenv("AELAB_STREAM_BYTES", raising=False)
    code, out, err = cli("score", data["model"], data["files"]["npy"], "--out", tmp_path / "s.npy")
    assert code == 0 and "streamed" not in out, err
    code, out, err = cli("score", data["model"], data["files"]["npy"], "--out", tmp_path / "s.npy", "--stream", "always")
    assert code == 0 and "streamed" in out, err
    monkeypatch.setenv("AELAB_STREAM_BYTES", "1")
    code, out, err = cli("score", data["model"], data["files"]["npy"], "--out", tmp_path / "s.npy", "--stream", "never")
    assert code == 0 and "streamed" not in out, err


def test_bad_stream_settings(cli, data, tmp_path, monkeypatch):
    out = sentinel(tmp_path / "s.npy")
    code, _, err = cli("score", data["model"], data["files"]["csv"], "--out", out, "--stream", "always")
    assert code == 2 and "--stream always reads .npy, .h5, .hdf5, .parquet files" in err and "X.csv" in err
    monkeypatch.setenv("AELAB_STREAM_BYTES", "lots")
    code, _, err = cli("score", data["model"], data["files"]["npy"], "--out", out)
    assert code == 2 and "AELAB_STREAM_BYTES='lots' is not a size in bytes" in err
    assert out.read_bytes() == b"precious"
    code, _, err = cli("score", data["model"], data["files"]["npy"], "--out", out, "--stream", "sometimes")
    assert code == 2 and "invalid choice: 'sometimes'" in err


def test_evaluate_detects_the_planted_anomalies(cli, data):
    code, out, _ = cli("evaluate", data["model"], data["files"]["npy"], "--labels", data["labels"])
    auc = float(next(line for line in out.splitlines() if line.startswith("ROC AUC")).split()[-1])
    assert code == 0 and auc > 0.9


def test_threshold_sets_and_saves_the_rate(cli, data, tmp_path):
    assert cli("train", data["files"]["npy"], "--epochs", 1, "--out", tmp_path / "m")[0] == 0
    before = aelab.load(tmp_path / "m").threshold_
    fresh = rng.normal(size=(400, 6)).astype(np.float32)  # normal rows the model never saw
    normal = write(tmp_path / "normal.npy", fresh[:300])
    code, out, err = cli("threshold", tmp_path / "m", normal, "--fpr", 0.05)
    assert code == 0, err
    est = aelab.load(tmp_path / "m")
    assert est.threshold_ != before and np.isfinite(est.threshold_)
    assert est.predict(fresh[:300]).mean() <= 0.05
    assert est.predict(fresh[300:]).mean() <= 0.05 + 3 * (0.05 * 0.95 / 100) ** 0.5  # fresh rows: the rate holds
    assert "FPR 0.05 on 300 normal samples" in out


def test_generate_is_reproducible_and_flattens_images_for_tables(cli, tmp_path):
    images = write(tmp_path / "img.npy", rng.random((40, 8, 8)).astype(np.float32))
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"arch": "dense", "hidden": [8]}))
    assert cli("train", images, "--epochs", 1, "-k", 2, "-c", cfg, "--out", tmp_path / "m")[0] == 0
    for name in ("a.npy", "b.npy"):
        code, out, err = cli("generate", tmp_path / "m", "-n", 5, "--seed", 3, "--out", tmp_path / name)
        assert code == 0, err
    a = np.load(tmp_path / "a.npy")
    assert a.shape == (5, 8, 8)
    np.testing.assert_array_equal(a, np.load(tmp_path / "b.npy"))
    code, _, err = cli("generate", tmp_path / "m", "-n", 5, "--seed", 3, "--out", tmp_path / "g.csv")
    assert code == 0, err
    np.testing.assert_allclose(aelab.io.read_array(tmp_path / "g.csv"), a.reshape(5, 64), rtol=1e-5)


def test_cost(cli, data):
    code, out, err = cli("cost", data["model"])
    assert code == 0, err
    params = sum(p.numel() for p in aelab.load(data["model"]).model_.parameters())
    line = next(line for line in out.splitlines() if line.startswith("parameters"))
    assert line.split()[1] == f"{params:,}"
    assert "MACs / sample" in out and "latency / sample" in out


def test_quiet_prints_nothing(cli, data, tmp_path):
    code, out, err = cli("score", data["model"], data["files"]["npy"], "--out", tmp_path / "s.npy", "--quiet")
    assert (code, out, err) == (0, "", "")


# ------------------------------------------------------------------ bad input: exit 2, a clear message, outputs untouched
def _bad_csv(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,b,c,d,e,f\n" + "1,2,3,4,5,6\n" * 5 + "1,2,oops,4,5,6\n")
    return path


BAD_SCORE_INPUTS = {
    "missing file": (lambda d, t: t / "nope.npy", "no such file"),
    "wrong format": (lambda d, t: (t / "data.txt").write_text("1 2 3") and t / "data.txt", "extension '.txt' is not supported"),
    "wrong feature count": (lambda d, t: write(t / "five.npy", np.ones((4, 5), np.float32)), "5 features"),
    "non-numeric csv": (lambda d, t: _bad_csv(t), "oops"),
    "unknown builtin": (lambda d, t: "mnist:bogus", "mnist:sample"),
    "NaN values": (lambda d, t: write(t / "nan.npy", np.full((3, 6), np.nan, np.float32)), "NaN"),
}


@pytest.mark.parametrize("case", BAD_SCORE_INPUTS)
def test_bad_data_is_a_usage_error_and_keeps_the_output(cli, data, tmp_path, case):
    make, message = BAD_SCORE_INPUTS[case]
    out = sentinel(tmp_path / "scores.npy")
    code, stdout, err = cli("score", data["model"], make(data, tmp_path), "--out", out)
    assert code == 2
    assert err.startswith("aelab score: error: ") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err  # one line
    assert stdout == ""
    assert untouched(out)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "{X}", "--epochs", "0", "--out", "{out}"], "argument --epochs: expected a positive integer, got '0'"),
        (["train", "{X}", "--model", "gan", "--out", "{out}"], "invalid choice: 'gan'"),
        (["train", "{X}", "--model", "pca", "--epochs", "3", "--out", "{out}"], "--epochs does not apply to --model pca"),
        (["threshold", "{model}", "{X}", "--fpr", "2"], "strictly between 0 and 1"),
        (["threshold", "{model}", "{X}"], "one of the arguments --fpr --contamination is required"),
        (["cluster", "{model}", "{X}", "--k", "abc"], "expected a positive integer, got 'abc'"),
        (["generate", "{model}", "-n", "-3", "--out", "{out}"], "expected a positive integer, got '-3'"),
        (["score", "{model}", "{X}", "--score", "kl", "--out", "{out}"], "score='kl' is not available for Autoencoder"),
        (["score", "{model}", "{X}", "--out", "{dir}/scores.txt"], "cannot write"),
        (["score", "{model}", "{X}", "--out", "{dir}/no/such/dir/s.npy"], "does not exist"),
        (["score", "{dir}/no-model", "{X}", "--out", "{out}"], "no model folder"),
        (["evaluate", "{model}", "{X}", "--labels", "{dir}/short.npy"], "one label per row"),
        (["evaluate", "{model}", "{X}", "--labels", "{dir}/digits.npy"], "only 0 (normal) and 1 (anomaly)"),
        (["decode", "{model}", "{X}", "--out", "{out}"], "latent space has 2 dimensions"),
        (["report", "{model}", "{X}", "--out", "{dir}/report.pdf"], "extension '.pdf' is not supported"),
    ],
    ids=lambda v: v if isinstance(v, str) else " ".join(v[:1] + v[3:5]),
)
def test_bad_usage_is_exit_2_with_a_message(cli, data, tmp_path, argv, message):
    np.save(tmp_path / "short.npy", np.zeros(3))
    np.save(tmp_path / "digits.npy", np.arange(150) % 10)
    out = sentinel(tmp_path / "out.npy")
    fill = {"X": data["files"]["npy"], "model": data["model"], "out": out, "dir": tmp_path}
    code, stdout, err = cli(*[a.format(**fill) for a in argv])
    assert code == 2
    assert message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert untouched(out)


def test_unknown_config_key_lists_the_valid_keys(cli, data, tmp_path):
    (tmp_path / "c.toml").write_text("latent_dim = 2\nlearning_rate = 0.1\n")
    model = tmp_path / "m"
    code, _, err = cli("train", data["files"]["npy"], "-c", tmp_path / "c.toml", "--out", model)
    assert code == 2
    assert "unknown setting(s) learning_rate" in err and "valid keys:" in err and "lr" in err and "latent_dim" in err
    assert not model.exists()


@pytest.mark.parametrize(
    "name, text, message",
    [("c.toml", "latent_dim = = 2", "cannot parse config file"), ("c.yaml", "- a\n- b\n", "must hold key = value"),
     ("c.ini", "[x]", "must end in .toml, .yaml, .yml or .json"), ("c.yaml", "latent_dim: two\n", "latent_dim")],
)
def test_bad_config_files(cli, data, tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    code, _, err = cli("train", data["files"]["npy"], "-c", tmp_path / name, "--epochs", 1, "--out", tmp_path / "m")
    assert code == 2 and message in err, err


def test_failed_training_keeps_the_existing_model(cli, data, tmp_path):
    model = tmp_path / "m"
    assert cli("train", data["files"]["npy"], "--epochs", 1, "-k", 2, "--out", model)[0] == 0
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    code, _, err = cli("train", tmp_path / "missing.csv", "--epochs", 1, "--out", model)
    assert code == 2 and "no such file" in err
    code, _, err = cli("train", BAD_SCORE_INPUTS["non-numeric csv"][0](data, tmp_path), "--out", model)
    assert code == 2 and "oops" in err
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before


def test_train_refuses_to_replace_a_file_or_a_foreign_folder(cli, data, tmp_path):
    out = sentinel(tmp_path / "model")
    code, _, err = cli("train", data["files"]["npy"], "--epochs", 1, "--out", out)
    assert code == 2 and "a file of that name exists" in err and untouched(out)
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"x")
    code, _, err = cli("train", data["files"]["npy"], "--epochs", 1, "--out", tmp_path / "photos")
    assert code == 2 and (tmp_path / "photos" / "cat.jpg").read_bytes() == b"x"


def test_debug_shows_the_traceback(cli, data, tmp_path):
    code, _, err = cli("score", data["model"], tmp_path / "nope.npy", "--out", tmp_path / "s.npy", "--debug")
    assert code == 2
    assert "Traceback (most recent call last)" in err and "DataFileNotFoundError" in err
    assert err.splitlines()[-1].startswith("aelab score: error: no such file")


def _crash(args):
    raise ZeroDivisionError("division by zero")


def test_unexpected_failure_is_exit_1(capsys):
    code = run(argparse.Namespace(command="score", func=_crash, debug=False))
    err = capsys.readouterr().err
    assert code == 1
    assert err == "aelab score: unexpected error: division by zero (ZeroDivisionError; run again with --debug for the traceback)\n"
    assert run(argparse.Namespace(command="score", func=_crash, debug=True)) == 1
    assert "Traceback" in capsys.readouterr().err


def test_input_kind_device_and_threads_flags(cli, tmp_path):
    rng = np.random.default_rng(0)
    events = np.stack([rng.exponential(30, (200, 19)), rng.normal(size=(200, 19)),
                       rng.uniform(-3, 3, (200, 19))], -1).astype(np.float32)
    np.save(tmp_path / "events.npy", events)
    code, out, err = cli("train", tmp_path / "events.npy", "--epochs", 1, "--seed", 0, "--out", tmp_path / "m",
                         "--device", "cpu", "--threads", 1)
    assert code == 0 and "(read as a table)" in out, err
    assert aelab.load(tmp_path / "m").scaler_.offset.size == 57
    code, out, err = cli("train", tmp_path / "events.npy", "--epochs", 1, "--seed", 0, "--out", tmp_path / "i",
                         "--input-kind", "image")
    assert code == 0 and "(read as images)" in out, err
    assert aelab.load(tmp_path / "i").input_kind_ == "image"
    code, out, err = cli("score", tmp_path / "m", tmp_path / "events.npy", "--out", tmp_path / "s.npy",
                         "--device", "cpu")
    assert code == 0, err
    np.testing.assert_allclose(np.load(tmp_path / "s.npy"),
                               aelab.load(tmp_path / "m").decision_function(events), rtol=1e-6)
    code, out, err = cli("train", tmp_path / "events.npy", "--input-kind", "grid", "--out", tmp_path / "x")
    assert code == 2 and "input-kind" in err and not (tmp_path / "x").exists()


def test_novelty_flag_states_clean_training_data(cli, tmp_path):
    X = np.random.default_rng(0).normal(size=(300, 5)).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    assert cli("train", tmp_path / "x.npy", "--epochs", 1, "--seed", 0, "--novelty", "--out", tmp_path / "n")[0] == 0
    assert cli("train", tmp_path / "x.npy", "--epochs", 1, "--seed", 0, "--out", tmp_path / "c")[0] == 0
    clean, contaminated = aelab.load(tmp_path / "n"), aelab.load(tmp_path / "c")
    assert (clean.novelty, clean.score_, clean._trim()) == (True, "knn+isolation", 0.0)
    assert (contaminated.novelty, contaminated.score_, contaminated._trim()) == (False, "knn", 0.1)
