"""aelab.datasets: MNIST sample and IDX files, ODDS/ADBench, LHCO and ADC2021 layouts (no network)."""

from __future__ import annotations

import gzip
import struct

import h5py
import numpy as np
import pytest
import scipy.io

from aelab.datasets import (
    ADC2021_FEATURES,
    cache_dir,
    load_adc2021,
    load_lhco,
    load_mnist,
    load_odds,
    read_idx,
)
from aelab.exceptions import ConfigError, DataError

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def isolated_data_dirs(tmp_path, monkeypatch):
    """Never read or write the user's real cache or $AELAB_DATA_DIR."""
    monkeypatch.delenv("AELAB_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


def idx_bytes(array: np.ndarray) -> bytes:
    return struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_split(folder, split="train", n=6, gz=True):
    """Write a small synthetic MNIST split; return (images, labels)."""
    folder.mkdir(parents=True, exist_ok=True)
    prefix = "train" if split == "train" else "t10k"
    X = RNG.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    y = RNG.integers(0, 10, size=n, dtype=np.uint8)
    for kind, arr in (("images-idx3", X), ("labels-idx1", y)):
        name = f"{prefix}-{kind}-ubyte"
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(idx_bytes(arr)))
        else:
            (folder / name).write_bytes(idx_bytes(arr))
    return X, y


# --------------------------------------------------------------------------- MNIST
def test_mnist_sample_is_5000_real_digits():
    X, y = load_mnist()
    assert X.shape == (5000, 28, 28) and X.dtype == np.uint8
    assert y.shape == (5000,) and y.dtype == np.uint8
    assert set(np.unique(y)) == set(range(10))
    assert X.max() == 255 and X.min() == 0
    assert 0.08 < (X > 0).mean() < 0.35  # digits: mostly background, a fair share of ink
    X[:] = 0  # callers get their own copy
    assert load_mnist("sample")[0].max() == 255


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_from_local_idx_files(tmp_path, gz):
    X, y = write_split(tmp_path / "m", "test", gz=gz)
    X2, y2 = load_mnist("test", data_dir=tmp_path / "m", download=False)
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(y2, y)
    assert X2.dtype == y2.dtype == np.uint8


def test_mnist_default_folders(tmp_path, monkeypatch):
    X, _ = write_split(cache_dir("mnist"))
    assert cache_dir("mnist") == tmp_path / "xdg" / "aelab" / "mnist"
    np.testing.assert_array_equal(load_mnist("train", download=False)[0], X)
    monkeypatch.setenv("AELAB_DATA_DIR", str(tmp_path / "data"))
    X_env, _ = write_split(tmp_path / "data" / "mnist")
    np.testing.assert_array_equal(load_mnist("train", download=False)[0], X_env)  # env folder wins over cache
    X_flat, _ = write_split(tmp_path / "flat")
    monkeypatch.setenv("AELAB_DATA_DIR", str(tmp_path / "flat"))  # files right in $AELAB_DATA_DIR also work
    np.testing.assert_array_equal(load_mnist("train", download=False)[0], X_flat)


def test_mnist_missing_files_without_download_says_where_to_put_them(tmp_path):
    message = r"train-images-idx3-ubyte\[.gz\] not found in .*nothing'.*download=True"
    with pytest.raises(FileNotFoundError, match=message):
        load_mnist("train", data_dir=tmp_path / "nothing", download=False)


def test_mnist_bad_split():
    with pytest.raises(ConfigError, match="split must be 'sample', 'train' or 'test', got 'validation'"):
        load_mnist("validation")


def test_mnist_images_and_labels_must_match(tmp_path):
    write_split(tmp_path / "m", n=6)
    (tmp_path / "m" / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(5, np.uint8))))
    with pytest.raises(DataError, match=r"do not form an MNIST split: images \(6, 28, 28\) uint8, labels \(5,\)"):
        load_mnist("train", data_dir=tmp_path / "m", download=False)


# --------------------------------------------------------------------------- IDX
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
def test_read_idx_types(tmp_path, dtype):
    arr = np.arange(24).reshape(2, 3, 4).astype(dtype)
    code = {np.uint8: 0x08, np.int16: 0x0B, np.float32: 0x0D}[dtype]
    data = struct.pack(">BBBB3I", 0, 0, code, 3, 2, 3, 4) + arr.astype(np.dtype(dtype).newbyteorder(">")).tobytes()
    (tmp_path / "a.idx").write_bytes(data)
    out = read_idx(tmp_path / "a.idx")
    np.testing.assert_array_equal(out, arr)
    assert out.dtype == dtype


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 0]), r"truncated: its header needs 16 bytes but the data are 12"),
        (idx_bytes(np.zeros((4, 28, 28), np.uint8))[:-100], r"is truncated: the header announces shape \(4, 28, 28\)"),
        (idx_bytes(np.zeros((2, 2), np.uint8)) + b"xx", "longer than its header says"),
        (b"PK\x03\x04 a zip file", "is not an IDX file: it starts with bytes 50 4b 03 04"),
        (gzip.compress(idx_bytes(np.zeros((50, 28, 28), np.uint8)))[:-40], "damaged or truncated gzip"),
    ],
)
def test_read_idx_rejects_bad_files(tmp_path, content, message):
    (tmp_path / "bad").write_bytes(content)
    with pytest.raises(DataError, match=message):
        read_idx(tmp_path / "bad")


def test_truncated_mnist_file_in_the_folder(tmp_path):
    write_split(tmp_path / "m", gz=False)
    path = tmp_path / "m" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match="train-images-idx3-ubyte' is truncated"):
        load_mnist("train", data_dir=tmp_path / "m", download=False)


# --------------------------------------------------------------------------- ODDS / ADBench
X_ODDS = RNG.normal(size=(30, 4))
Y_ODDS = (np.arange(30) % 10 == 0).astype(int)


def write_mat73(path, X, y):
    """A MATLAB v7.3 file: HDF5 behind a 512-byte header, matrices stored transposed."""
    with h5py.File(path, "w", userblock_size=512) as fh:
        fh.create_dataset("X", data=X.T)
        fh.create_dataset("y", data=y.reshape(1, -1).astype(float))
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, HDF5 schema 1.00 .".ljust(116) + b" " * 8 + b"\x00\x02IM"
    with open(path, "r+b") as fh:
        fh.write(header)


def test_odds_mat_v5(tmp_path):
    scipy.io.savemat(tmp_path / "glass.mat", {"X": X_ODDS, "y": Y_ODDS.reshape(-1, 1).astype(float)})
    X, y = load_odds(tmp_path / "glass.mat")
    np.testing.assert_array_equal(X, X_ODDS)
    np.testing.assert_array_equal(y, Y_ODDS)
    assert X.dtype == np.float64 and y.dtype == np.int64


def test_odds_mat_v73_is_read_with_h5py_and_transposed(tmp_path):
    write_mat73(tmp_path / "smtp.mat", X_ODDS, Y_ODDS)
    with pytest.raises(NotImplementedError):  # the fixture really is v7.3
        scipy.io.loadmat(tmp_path / "smtp.mat")
    X, y = load_odds(tmp_path / "smtp.mat")
    np.testing.assert_array_equal(X, X_ODDS)
    np.testing.assert_array_equal(y, Y_ODDS)


def test_adbench_npz(tmp_path):
    np.savez(tmp_path / "6_cardio.npz", X=X_ODDS.astype(np.float32), y=Y_ODDS)
    X, y = load_odds(tmp_path / "6_cardio.npz")
    np.testing.assert_allclose(X, X_ODDS, rtol=1e-6)
    assert X.dtype == np.float64
    np.testing.assert_array_equal(y, Y_ODDS)


def test_bare_names_are_looked_up(tmp_path, monkeypatch):
    (tmp_path / "mine").mkdir()
    np.savez(tmp_path / "mine" / "6_Cardio.npz", X=X_ODDS, y=Y_ODDS)  # ADBench number, any case
    np.savez(tmp_path / "mine" / "7_Cardiotocography.npz", X=X_ODDS[:5], y=Y_ODDS[:5])
    assert load_odds("cardio", data_dir=tmp_path / "mine")[0].shape == (30, 4)
    monkeypatch.setenv("AELAB_DATA_DIR", str(tmp_path / "env"))
    (tmp_path / "env" / "odds").mkdir(parents=True)
    scipy.io.savemat(tmp_path / "env" / "odds" / "wbc.mat", {"X": X_ODDS[:7], "y": Y_ODDS[:7]})
    assert load_odds("wbc")[0].shape == (7, 4)


def test_unknown_name_lists_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("AELAB_DATA_DIR", str(tmp_path / "env"))
    with pytest.raises(FileNotFoundError, match="no ODDS/ADBench data set 'pima'") as info:
        load_odds("pima", data_dir=tmp_path / "mine")
    message = str(info.value)
    for folder in (tmp_path / "mine", tmp_path / "env" / "odds", tmp_path / "env"):
        assert repr(str(folder)) in message
    assert "pima.mat, pima.npz and <number>_pima.npz" in message


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: np.savez(p / "d.npz", features=X_ODDS, y=Y_ODDS), r"has no 'X'; it holds: 'features', 'y'"),
        (lambda p: scipy.io.savemat(p / "d.mat", {"X": X_ODDS}), r"has no 'y'; it holds: 'X'"),
        (lambda p: np.savez(p / "d.npz", X=X_ODDS, y=Y_ODDS[:29]), "X has 30 rows but y has 29 labels"),
        (lambda p: np.savez(p / "d.npz", X=X_ODDS, y=Y_ODDS + 0.5), "labels y must be whole numbers"),
        (lambda p: (p / "d.mat").write_bytes(b"MATLAB garbage" * 20), "not a readable MATLAB .mat file"),
        (lambda p: (p / "d.npz").write_bytes(b"garbage" * 20), "not a readable .npz archive"),
        (lambda p: (p / "d.csv").write_text("1,2\n"), "reads ODDS .mat and ADBench .npz files"),
    ],
)
def test_odds_bad_files(tmp_path, make, message):
    make(tmp_path)
    path = next(tmp_path.glob("d.*"))
    with pytest.raises(DataError, match=message):
        load_odds(path)


# --------------------------------------------------------------------------- LHCO
EVENTS = RNG.uniform(0, 100, size=(8, 5, 3)).astype(np.float32)  # 8 events, 5 particles
LABELS = np.array([0, 1, 0, 0, 1, 0, 0, 0])


def test_lhco_npz_and_npy(tmp_path):
    np.savez(tmp_path / "e.npz", X=EVENTS, y=LABELS)
    X, y = load_lhco(tmp_path / "e.npz")
    np.testing.assert_array_equal(X, EVENTS)
    np.testing.assert_array_equal(y, LABELS)
    assert X.dtype == np.float32 and y.dtype == np.int64
    np.save(tmp_path / "e.npy", EVENTS.reshape(8, 15))
    X, y = load_lhco(tmp_path / "e.npy")
    np.testing.assert_array_equal(X, EVENTS)
    assert y is None


def test_lhco_pandas_layout_h5_with_label_column(tmp_path):
    table = np.column_stack([EVENTS.reshape(8, 15), LABELS]).astype(np.float64)  # 3 * 5 + 1 columns
    with h5py.File(tmp_path / "events_anomalydetection.h5", "w") as fh:
        fh.create_dataset("df/axis0", data=np.arange(16))
        fh.create_dataset("df/axis1", data=np.arange(8))
        fh.create_dataset("df/block0_items", data=np.arange(16))
        fh.create_dataset("df/block0_values", data=table)
    X, y = load_lhco(tmp_path / "events_anomalydetection.h5")
    np.testing.assert_array_equal(X, EVENTS)
    np.testing.assert_array_equal(y, LABELS)
    X, y = load_lhco(tmp_path / "events_anomalydetection.h5", n_particles=2, max_events=3)
    np.testing.assert_array_equal(X, EVENTS[:3, :2])
    np.testing.assert_array_equal(y, LABELS[:3])


def test_lhco_black_box_without_labels_and_padding(tmp_path):
    with h5py.File(tmp_path / "bb.h5", "w") as fh:
        fh.create_dataset("events", data=EVENTS.reshape(8, 15))
    X, y = load_lhco(tmp_path / "bb.h5", n_particles=7)
    assert y is None and X.shape == (8, 7, 3)
    np.testing.assert_array_equal(X[:, :5], EVENTS)
    assert not X[:, 5:].any()  # zero-padded like the original files


def test_lhco_3d_h5_with_y(tmp_path):
    with h5py.File(tmp_path / "e.h5", "w") as fh:
        fh.create_dataset("X", data=EVENTS)
        fh.create_dataset("y", data=LABELS)
    X, y = load_lhco(tmp_path / "e.h5")
    np.testing.assert_array_equal(X, EVENTS)
    np.testing.assert_array_equal(y, LABELS)


@pytest.mark.parametrize(
    ("make", "kwargs", "message"),
    [
        (lambda p: np.save(p / "e.npy", np.zeros((4, 14))), {}, r"events have shape \(4, 14\); expected"),
        (lambda p: np.save(p / "e.npy", np.zeros((4, 15))), {"n_particles": 0}, "n_particles must be a positive"),
        (lambda p: np.save(p / "e.npy", np.zeros((4, 15))), {"max_events": -1}, "max_events must be a non-negative"),
        (lambda p: np.save(p / "e.npy", np.full((4, 16), 0.5)), {}, "labels .* are not whole numbers"),
        (lambda p: h5py.File(p / "e.h5", "w").__exit__(None, None, None), {}, "contains no 2-D/3-D datasets"),
        (lambda p: (p / "e.txt").write_text("1"), {}, "Supported: .h5, .hdf5, .npz, .npy"),
    ],
)
def test_lhco_bad_input(tmp_path, make, kwargs, message):
    make(tmp_path)
    with pytest.raises(DataError, match=message):
        load_lhco(next(tmp_path.glob("e.*")), **kwargs)


def test_lhco_h5_with_several_datasets_lists_them(tmp_path):
    with h5py.File(tmp_path / "e.h5", "w") as fh:
        fh.create_dataset("a", data=np.zeros((2, 6)))
        fh.create_dataset("b", data=np.zeros((2, 6)))
    with pytest.raises(DataError, match=r"several 2-D/3-D datasets \('a', 'b'\)"):
        load_lhco(tmp_path / "e.h5")
    assert load_lhco(tmp_path / "e.h5", key="b")[0].shape == (2, 2, 3)


# --------------------------------------------------------------------------- ADC2021
def test_adc2021_flattens_pt_eta_phi_per_object(tmp_path):
    particles = RNG.normal(size=(5, 19, 4)).astype(np.float32)
    particles[:, :, 3] = [1] + [2] * 4 + [3] * 4 + [4] * 10  # object type, dropped
    with h5py.File(tmp_path / "background_for_training.h5", "w") as fh:
        fh.create_dataset("Particles", data=particles)
        fh.create_dataset("Particles_Classes", data=np.arange(4))
    out = load_adc2021(tmp_path / "background_for_training.h5")
    assert out.shape == (5, 57) and out.dtype == np.float32
    assert len(ADC2021_FEATURES) == 57 and ADC2021_FEATURES[:4] == ("MET_pT", "MET_eta", "MET_phi", "e1_pT")
    jet1 = ADC2021_FEATURES.index("jet1_pT")
    assert jet1 == 27
    np.testing.assert_array_equal(out[:, jet1 : jet1 + 3], particles[:, 9, :3])
    np.testing.assert_array_equal(out, particles[:, :, :3].reshape(5, 57))
    assert load_adc2021(tmp_path / "background_for_training.h5", max_events=2).shape == (2, 57)


def test_adc2021_bad_input(tmp_path):
    with h5py.File(tmp_path / "a.h5", "w") as fh:
        fh.create_dataset("Particles", data=np.zeros((3, 18, 4)))
        fh.create_dataset("Other", data=np.zeros(3))
    with pytest.raises(DataError, match=r"has shape \(3, 18, 4\); the ADC2021 layout is \(n, 19, 4\)"):
        load_adc2021(tmp_path / "a.h5")
    with pytest.raises(DataError, match=r"no dataset 'Objects'; available: 'Other', 'Particles'"):
        load_adc2021(tmp_path / "a.h5", key="Objects")
    (tmp_path / "c.h5").write_bytes(b"corrupt" * 100)
    with pytest.raises(DataError, match="not a valid HDF5 file"):
        load_adc2021(tmp_path / "c.h5")
