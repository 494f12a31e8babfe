"""Issue 24: aelab never deletes or replaces what it did not write, and checks before it works.

Each test is one case that lost or replaced a user's file, or answered with an unexpected
error, on 2af54cf; the real CLI and the real files throughout.
"""

import json

import numpy as np
import pytest

import aelab
from aelab._fs import MARKER, verify_owned
from aelab.exceptions import ConfigError, PersistenceError

rng = np.random.default_rng(0)


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    d = tmp_path_factory.mktemp("lost")
    X = rng.normal(size=(160, 16)).astype(np.float32)
    np.save(d / "x.npy", X)
    return d, X


def user_files(folder):
    """A user's own files in ``folder``: what aelab must never delete."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "thesis_numbers.csv").write_text("a,b\n1,2\n")
    (folder / "plots").mkdir(exist_ok=True)
    (folder / "plots" / "fig1.png").write_bytes(b"\x89PNG fake")
    return {"thesis_numbers.csv": b"a,b\n1,2\n", "plots/fig1.png": b"\x89PNG fake"}


def still_there(folder, files):
    return all((folder / k).read_bytes() == v for k, v in files.items())


def no_leftovers(parent):
    return [p.name for p in parent.iterdir() if ".aelab-tmp-" in p.name or ".old-" in p.name] == []


# ------------------------------------------------------------------ ownership
def test_checkpoint_dir_with_a_users_checkpoint_json_is_refused(cli, table, tmp_path):
    d, X = table
    results = tmp_path / "results"
    files = user_files(results)
    (results / "checkpoint.json").write_text('{"my": "own notes"}')
    files["checkpoint.json"] = b'{"my": "own notes"}'
    code, out, err = cli("train", d / "x.npy", "--epochs", 2, "--checkpoint-every", 1, "--checkpoint-dir", results,
                         "--out", tmp_path / "m")
    assert code == 2 and "not an aelab checkpoint" in err and "thesis_numbers.csv" in err
    assert still_there(results, files) and not (tmp_path / "m").exists()
    with pytest.raises(PersistenceError, match="never touches files it did not write"):
        aelab.Autoencoder(epochs=2).fit(X, checkpoint_dir=results)
    assert still_there(results, files)


def test_resaving_a_model_keeps_the_users_files(cli, table, tmp_path):
    d, X = table
    model = tmp_path / "model"
    assert cli("train", d / "x.npy", "--epochs", 1, "--out", model, "-q")[0] == 0
    (model / "NOTES.md").write_text("my notes")
    np.save(model / "scores.npy", np.arange(3))
    assert cli("threshold", model, d / "x.npy", "--fpr", 0.05, "-q")[0] == 0
    assert (model / "NOTES.md").read_text() == "my notes" and np.load(model / "scores.npy").tolist() == [0, 1, 2]
    assert cli("train", d / "x.npy", "--epochs", 2, "--out", model, "-q")[0] == 0  # retrain into the same --out
    assert (model / "NOTES.md").read_text() == "my notes" and (model / "scores.npy").exists()
    assert aelab.load(model).threshold_rule_ == {"contamination": 0.1, "n": 160}
    assert verify_owned(model, "model") and no_leftovers(tmp_path)
    marker = json.loads((model / MARKER).read_text())
    assert sorted(marker["files"]) == ["config.json", "meta.json", "weights.safetensors"]


def test_a_save_that_would_replace_a_users_file_refuses_and_names_it(table, tmp_path):
    _, X = table
    est = aelab.PCA(n_components=2).fit(X)
    est.save(tmp_path / "m")
    marker = json.loads((tmp_path / "m" / MARKER).read_text())
    del marker["files"]["meta.json"]  # as if the user had put a meta.json of their own there
    (tmp_path / "m" / MARKER).write_text(json.dumps(marker))
    before = (tmp_path / "m" / "meta.json").read_bytes()
    with pytest.raises(PersistenceError, match="holds meta.json, which aelab did not write"):
        est.save(tmp_path / "m")
    assert (tmp_path / "m" / "meta.json").read_bytes() == before and no_leftovers(tmp_path)


def test_one_kind_of_folder_is_not_written_over_another(table, tmp_path):
    _, X = table
    est = aelab.Autoencoder(epochs=2, random_state=0).fit(X, checkpoint_dir=tmp_path / "ck")
    with pytest.raises(PersistenceError, match="is an aelab checkpoint, not an aelab model folder"):
        est.save(tmp_path / "ck")
    est.save(tmp_path / "m")
    with pytest.raises(PersistenceError, match="is an aelab model folder, not an aelab checkpoint"):
        aelab.Autoencoder(epochs=2).fit(X, checkpoint_dir=tmp_path / "m")


def test_a_damaged_model_is_refused_by_name(table, tmp_path):
    _, X = table
    aelab.PCA(n_components=2).fit(X).save(tmp_path / "m")
    w = tmp_path / "m" / "weights.safetensors"
    w.write_bytes(w.read_bytes()[:-10])
    with pytest.raises(PersistenceError, match=r"weights.safetensors' is damaged \(\d+ bytes where aelab wrote"):
        aelab.load(tmp_path / "m")


def test_rerunning_to_hls_keeps_the_users_report_files(table, tmp_path):
    _, X = table
    est = aelab.Autoencoder(latent_dim=2, hidden=(8,), epochs=1, random_state=0).fit(X)
    project = tmp_path / "hls"
    est.to_hls(project, compile=False)
    (project / "my_synthesis_report.txt").write_text("LUT 1234")
    report = est.to_hls(project, compile=False)
    assert (project / "my_synthesis_report.txt").read_text() == "LUT 1234"
    assert report["output_dir"] == str(project) and (project / "hls4ml_config.yml").is_file()
    assert str(tmp_path / ".hls") not in (project / "hls4ml_config.yml").read_text()  # no temporary path inside
    assert verify_owned(project, "hls4ml") and no_leftovers(tmp_path)


def test_hls_export_with_a_calibration_of_the_wrong_width_writes_nothing(cli, table, tmp_path):
    d, X = table
    assert cli("train", d / "x.npy", "--epochs", 1, "-k", 2, "--out", tmp_path / "m", "-q")[0] == 0
    np.save(tmp_path / "cal7.npy", X[:, :7])
    code, out, err = cli("export", tmp_path / "m", "--format", "hls4ml", "--calibration", tmp_path / "cal7.npy",
                         "--out", tmp_path / "prj")
    assert code == 2 and "7" in err and "16" in err and "unexpected" not in err
    assert not (tmp_path / "prj").exists() and out == "" and no_leftovers(tmp_path)


def test_int8_export_with_a_bad_calibration_keeps_the_existing_file(cli, table, tmp_path):
    d, X = table
    assert cli("train", d / "x.npy", "--epochs", 1, "-k", 2, "--out", tmp_path / "m", "-q")[0] == 0
    np.save(tmp_path / "cal7.npy", X[:, :7])
    (tmp_path / "model-int8.onnx").write_bytes(b"my earlier export")
    code, out, err = cli("export", tmp_path / "m", "--quantize", "int8", "--calibration", tmp_path / "cal7.npy",
                         "--out", tmp_path / "model-int8.onnx")
    assert code == 2 and "wrote" not in out and "has 7 features" in err
    assert (tmp_path / "model-int8.onnx").read_bytes() == b"my earlier export" and no_leftovers(tmp_path)


def test_make_adc2021_does_not_overwrite_a_file(tmp_path):
    path = tmp_path / "events.h5"
    path.write_bytes(b"my own events")
    with pytest.raises(ConfigError, match="exists.*overwrite=True"):
        aelab.datasets.make_adc2021(10, 2, path=path, random_state=0)
    assert path.read_bytes() == b"my own events"
    aelab.datasets.make_adc2021(10, 2, path=path, overwrite=True, random_state=0)
    assert len(aelab.datasets.load_adc2021(path)) == 16 and no_leftovers(tmp_path)


# ------------------------------------------------------------------ checks before work
def test_checkpoint_dir_and_out_must_be_different_folders(cli, table, tmp_path):
    d, _ = table
    code, _, err = cli("train", d / "x.npy", "--epochs", 50, "--checkpoint-every", 1, "--checkpoint-dir",
                       tmp_path / "X", "--out", tmp_path / "X")
    assert code == 2 and "same folder" in err and not (tmp_path / "X").exists()
    code, _, err = cli("train", d / "x.npy", "--epochs", 50, "--checkpoint-every", 1, "--checkpoint-dir",
                       tmp_path / "X" / "ck", "--out", tmp_path / "X")
    assert code == 2 and "one holds the other" in err


def test_checkpoint_dir_without_checkpoint_every_is_refused(cli, table, tmp_path):
    d, _ = table
    code, _, err = cli("train", d / "x.npy", "--epochs", 2, "--checkpoint-dir", tmp_path / "ck", "--out",
                       tmp_path / "m")
    assert code == 2 and "--checkpoint-every" in err and not (tmp_path / "m").exists()


# ------------------------------------------------------------------ checkpoints you can trust
@pytest.fixture()
def checkpoint(table, tmp_path):
    _, X = table
    aelab.Autoencoder(epochs=3, random_state=0, n_threads=1).fit(X, checkpoint_dir=tmp_path / "ck")
    return tmp_path / "ck"


def _edit(ck, change):
    doc = json.loads((ck / "checkpoint.json").read_text())
    change(doc)
    (ck / "checkpoint.json").write_text(json.dumps(doc))


@pytest.mark.parametrize("damage", ["truncated tensors", "no rng", "epoch two", "epoch edited 3 -> 1"])
def test_a_damaged_checkpoint_is_refused_clearly(table, checkpoint, damage):
    _, X = table
    if damage == "truncated tensors":
        t = checkpoint / "state.safetensors"
        t.write_bytes(t.read_bytes()[: t.stat().st_size // 2])
    else:
        _edit(checkpoint, {"no rng": lambda d: d.pop("rng"), "epoch two": lambda d: d.update(epoch="two"),
                           "epoch edited 3 -> 1": lambda d: d.update(epoch=1)}[damage])
    with pytest.raises(PersistenceError, match="damaged"):
        aelab.Autoencoder(epochs=5, random_state=0).fit(X, resume=checkpoint)


@pytest.mark.parametrize("damage", ["no rng", "epoch two", "epoch edited 3 -> 1"])
def test_an_unmarked_checkpoint_is_checked_field_by_field(table, checkpoint, damage):
    """A checkpoint without the marker (format 1) is still refused by name when its index is wrong."""
    _, X = table
    (checkpoint / MARKER).unlink()
    _edit(checkpoint, lambda d: d.update(format_version=1))
    _edit(checkpoint, {"no rng": lambda d: d.pop("rng"), "epoch two": lambda d: d.update(epoch="two"),
                       "epoch edited 3 -> 1": lambda d: d.update(epoch=1)}[damage])
    with pytest.raises(PersistenceError, match="damaged.*(rng|epoch)"):
        aelab.Autoencoder(epochs=3, random_state=0).fit(X, resume=checkpoint)


def test_resume_notices_reordered_rows(table, checkpoint):
    _, X = table
    swapped = X.copy()
    swapped[[3, 7]] = swapped[[7, 3]]  # the same per-column sums
    with pytest.raises(ConfigError, match="rows_sha256"):
        aelab.Autoencoder(epochs=3, random_state=0).fit(swapped, resume=checkpoint)


def test_a_changed_setting_is_named_alone(table, checkpoint):
    _, X = table
    with pytest.raises(ConfigError) as info:
        aelab.Autoencoder(epochs=5, random_state=0).fit(X, resume=checkpoint)
    message = str(info.value)
    assert "epochs: checkpoint 3, now 5" in message and "latent_dim" not in message and "lr" not in message


def test_resume_across_stream_modes_says_why_not(cli, table, tmp_path):
    d, _ = table
    ck = tmp_path / "m.checkpoint"
    assert cli("train", d / "x.npy", "--stream", "always", "--epochs", 2, "--checkpoint-every", 1, "--seed", 0,
               "--out", tmp_path / "m", "-q")[0] == 0
    code, _, err = cli("train", d / "x.npy", "--stream", "never", "--epochs", 2, "--checkpoint-every", 1, "--seed", 0,
                       "--resume", ck, "--out", tmp_path / "m2")
    assert code == 2 and "streamed" in err and "--stream always" in err and "unexpected" not in err


def test_a_kill_during_a_swap_is_repaired_by_the_next_write(table, tmp_path):
    """What a SIGKILL between the two renames of the fallback swap leaves (the backup, no target) is
    put back by the next write; a dead process's temporary folder is removed."""
    _, X = table
    est = aelab.PCA(n_components=2).fit(X)
    est.save(tmp_path / "m")
    before = {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()}
    dead = 2**22 + 12345  # above pid_max: no such process
    (tmp_path / "m").rename(tmp_path / f".m.aelab-tmp-{dead}-old-abc")
    (tmp_path / f".m.aelab-tmp-{dead}-xyz").mkdir()
    (tmp_path / f".m.aelab-tmp-{dead}-xyz" / "half.bin").write_bytes(b"half")
    from aelab._fs import clean_stale

    clean_stale(tmp_path / "m")
    assert {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()} == before and no_leftovers(tmp_path)


def test_pca_gives_the_same_scores_on_every_fit_of_the_same_data():
    """Issue 30: the neighbour reference rows made PCA(random_state=None) random (scores 10% apart)."""
    X = rng.normal(size=(6000, 10)).astype(np.float32)  # more rows than the 4,096 reference rows
    a = aelab.PCA(n_components=3).fit(X).decision_function(X[:500])
    b = aelab.PCA(n_components=3).fit(X).decision_function(X[:500])
    np.testing.assert_array_equal(a, b)
