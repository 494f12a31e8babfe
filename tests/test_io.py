"""aelab.io.read_array / write_array: every format, every failure, atomic writes."""

from __future__ import annotations

import sys

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from aelab.exceptions import DataError, MissingDependencyError
from aelab.io import READ_EXTENSIONS, WRITE_EXTENSIONS, DataFileNotFoundError, read_array, write_array

RNG = np.random.default_rng(0)
X = RNG.normal(size=(20, 4)).astype(np.float32)


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("ext", WRITE_EXTENSIONS)
@pytest.mark.parametrize("array", [X, np.arange(30, dtype=np.int64).reshape(10, 3), np.linspace(0, 1, 7)])
def test_round_trip_every_format(tmp_path, ext, array):
    path = write_array(tmp_path / f"data{ext}", array)
    back = read_array(path)
    expected = array.reshape(-1, 1) if array.ndim == 1 and ext in (".csv", ".tsv", ".parquet") else array
    if ext in (".csv", ".tsv"):  # text is read back as float64; the shortest repr round-trips exactly
        assert back.dtype == np.float64
        back = back.astype(array.dtype)
    assert back.dtype == array.dtype
    np.testing.assert_array_equal(back, expected)
    assert listing(tmp_path) == [f"data{ext}"]  # no temporary file left behind


@pytest.mark.parametrize("ext", [".npy", ".npz", ".h5"])
def test_any_shape_round_trips_in_binary_formats(tmp_path, ext):
    images = RNG.integers(0, 255, size=(3, 2, 5, 5), dtype=np.uint8)
    np.testing.assert_array_equal(read_array(write_array(tmp_path / f"im{ext}", images)), images)


def test_npy_is_read_as_read_only_memmap(tmp_path):
    path = write_array(tmp_path / "x.npy", X)
    arr = read_array(path)
    assert isinstance(arr, np.memmap)
    assert not arr.flags.writeable


def test_text_keeps_full_precision(tmp_path):
    values = np.array([[0.1, 1 / 3, 1e-300, np.pi]])
    np.testing.assert_array_equal(read_array(write_array(tmp_path / "p.csv", values)), values)
    assert (tmp_path / "p.csv").read_text().startswith("0.1,")


def test_column_names_become_csv_header_and_parquet_columns(tmp_path):
    write_array(tmp_path / "a.csv", X[:, :2], columns=["pt", "eta"])
    assert (tmp_path / "a.csv").read_text().splitlines()[0] == "pt,eta"
    np.testing.assert_allclose(read_array(tmp_path / "a.csv"), X[:, :2], rtol=1e-6)
    write_array(tmp_path / "a.parquet", X[:, :2], columns=["pt", "eta"])
    assert pq.read_table(tmp_path / "a.parquet").column_names == ["pt", "eta"]


# --------------------------------------------------------------------------- keys
def test_npz_key_selection(tmp_path):
    np.savez(tmp_path / "one.npz", data=X)
    np.testing.assert_array_equal(read_array(tmp_path / "one.npz"), X)  # the only array
    np.savez(tmp_path / "two.npz", X=X, y=np.arange(20))
    np.testing.assert_array_equal(read_array(tmp_path / "two.npz"), X)  # 'X' by default
    np.testing.assert_array_equal(read_array(tmp_path / "two.npz", key="y"), np.arange(20))
    with pytest.raises(DataError, match=r"has no array 'z'; available: 'X', 'y'"):
        read_array(tmp_path / "two.npz", key="z")
    np.savez(tmp_path / "ab.npz", a=X, b=X)
    with pytest.raises(DataError, match=r"several arrays \('a', 'b'\).*key="):
        read_array(tmp_path / "ab.npz")


def test_h5_key_is_a_dataset_path_and_errors_list_the_datasets(tmp_path):
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as fh:
        fh.create_dataset("events/jets", data=X)
        fh.create_dataset("events/labels", data=np.arange(20))
    np.testing.assert_array_equal(read_array(path, key="events/jets"), X)
    np.testing.assert_array_equal(read_array(path, key="/events/labels"), np.arange(20))
    with pytest.raises(DataError, match=r"no dataset 'jet'; available: 'events/jets', 'events/labels'"):
        read_array(path, key="jet")
    with pytest.raises(DataError, match=r"several datasets \('events/jets', 'events/labels'\)"):
        read_array(path)
    with pytest.raises(DataError, match="no dataset 'events'"):  # a group is not a dataset
        read_array(path, key="events")


# --------------------------------------------------------------------------- csv / tsv
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1,2\n3,4\n", [[1, 2], [3, 4]]),  # no header
        ("a,b\n1,2\n3,4\n", [[1, 2], [3, 4]]),  # header detected
        ('\ufeff"x 1","y"\n\n1.5,-2e3\n\n3,nan\n', [[1.5, -2000], [3, np.nan]]),  # BOM, quotes, blank lines
        ("7\n8\n", [[7], [8]]),  # one column stays 2-D
    ],
)
def test_csv_header_detection(tmp_path, text, expected):
    (tmp_path / "t.csv").write_text(text, encoding="utf-8")
    np.testing.assert_array_equal(read_array(tmp_path / "t.csv"), np.array(expected, dtype=float))


def test_tsv_uses_tabs(tmp_path):
    (tmp_path / "t.tsv").write_text("a\tb\n1\t2\n")
    np.testing.assert_array_equal(read_array(tmp_path / "t.tsv"), [[1.0, 2.0]])


def test_csv_non_numeric_value_names_column_row_and_value(tmp_path):
    (tmp_path / "t.csv").write_text("mass,energy\n1,2\n3,4\n5,oops\n")
    with pytest.raises(DataError, match=r"non-numeric value 'oops' in column 'energy' at data row 3 \(line 4\)"):
        read_array(tmp_path / "t.csv")


def test_csv_without_header_names_the_column_number(tmp_path):
    (tmp_path / "t.csv").write_text("1,2,3\n4,x,6\n")
    with pytest.raises(DataError, match=r"'x' in column 2 at data row 2 \(line 2\)"):
        read_array(tmp_path / "t.csv")


def test_csv_first_row_mixing_numbers_and_text_is_bad_data_not_a_header(tmp_path):
    (tmp_path / "t.csv").write_text("1,abc\n2,3\n")
    with pytest.raises(DataError, match=r"'abc' in column 2 at data row 1"):
        read_array(tmp_path / "t.csv")


def test_ragged_csv_names_the_line(tmp_path):
    (tmp_path / "t.csv").write_text("a,b,c\n1,2,3\n\n4,5\n")
    with pytest.raises(DataError, match=r"line 4 has 2 field\(s\) but the header has 3"):
        read_array(tmp_path / "t.csv")


@pytest.mark.parametrize(("text", "message"), [("a,b\n", "header .* but no data rows"), ("\n\n", "only blank lines")])
def test_csv_without_data(tmp_path, text, message):
    (tmp_path / "t.csv").write_text(text)
    with pytest.raises(DataError, match=message):
        read_array(tmp_path / "t.csv")


# --------------------------------------------------------------------------- parquet
def test_parquet_non_numeric_column_is_named(tmp_path):
    pq.write_table(pa.table({"x": [1.0, 2.0], "city": ["a", "b"]}), tmp_path / "t.parquet")
    with pytest.raises(DataError, match=r"non-numeric column\(s\) 'city' \(string\)"):
        read_array(tmp_path / "t.parquet")


def test_parquet_nulls_become_nan(tmp_path):
    pq.write_table(pa.table({"a": [1, None, 3], "b": [0.5, 1.5, None]}), tmp_path / "t.parquet")
    np.testing.assert_array_equal(read_array(tmp_path / "t.parquet"), [[1, 0.5], [np.nan, 1.5], [3, np.nan]])


# --------------------------------------------------------------------------- images
def save_images(folder, arrays, names=None, ext="png"):
    folder.mkdir(exist_ok=True)
    for i, arr in enumerate(arrays):
        Image.fromarray(arr).save(folder / (names[i] if names else f"img{i}.{ext}"))


def test_grayscale_image_folder_sorted_by_name(tmp_path):
    imgs = [np.full((6, 5), v, np.uint8) for v in (30, 10, 20)]
    save_images(tmp_path / "im", imgs, ["c.png", "a.png", "b.PNG"])
    (tmp_path / "im" / "notes.txt").write_text("ignored")
    out = read_array(tmp_path / "im")
    assert out.shape == (3, 6, 5) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, 0, 0], [10, 20, 30])  # a, b, c


def test_rgb_and_mixed_folders_are_rgb(tmp_path):
    rgb = RNG.integers(0, 255, size=(4, 4, 3), dtype=np.uint8)
    save_images(tmp_path / "im", [rgb, np.full((4, 4), 7, np.uint8)])
    out = read_array(tmp_path / "im")
    assert out.shape == (2, 4, 4, 3)
    np.testing.assert_array_equal(out[0], rgb)
    np.testing.assert_array_equal(out[1], np.full((4, 4, 3), 7))  # gray expanded to RGB


def test_jpeg_images_are_read(tmp_path):
    save_images(tmp_path / "im", [np.full((8, 8), 100, np.uint8)] * 2, ext="jpg")
    out = read_array(tmp_path / "im")
    assert out.shape == (2, 8, 8)
    assert abs(int(out.mean()) - 100) <= 2


def test_image_of_another_size_is_named(tmp_path):
    save_images(tmp_path / "im", [np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.uint8)])
    with pytest.raises(DataError, match=r"'img0.png' is 4x4 .* but 'img1.png' is 5x4"):
        read_array(tmp_path / "im")


def test_corrupt_image_is_named(tmp_path):
    save_images(tmp_path / "im", [np.zeros((4, 4), np.uint8)])
    (tmp_path / "im" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError, match="cannot read the image .*broken.png"):
        read_array(tmp_path / "im")


def test_folder_without_images(tmp_path):
    (tmp_path / "im").mkdir()
    (tmp_path / "im" / "readme.md").write_text("x")
    with pytest.raises(DataError, match=r"holds no .png/.jpg/.jpeg images \(it contains: readme.md\)"):
        read_array(tmp_path / "im")


# --------------------------------------------------------------------------- bad input
def test_unknown_extension_lists_supported_ones(tmp_path):
    (tmp_path / "x.xlsx").write_bytes(b"x")
    with pytest.raises(DataError, match=r"extension '.xlsx' is not supported. Supported: .npy, .npz, .csv"):
        read_array(tmp_path / "x.xlsx")
    with pytest.raises(DataError, match=r"cannot write .*Supported: .npy"):
        write_array(tmp_path / "x.txt", X)
    assert listing(tmp_path) == ["x.xlsx"]


def test_missing_file_is_both_data_error_and_file_not_found(tmp_path):
    with pytest.raises(DataFileNotFoundError, match="no such file") as info:
        read_array(tmp_path / "nope.csv")
    assert isinstance(info.value, DataError) and isinstance(info.value, FileNotFoundError)


@pytest.mark.parametrize("ext", READ_EXTENSIONS)
def test_empty_file(tmp_path, ext):
    (tmp_path / f"e{ext}").touch()
    with pytest.raises(DataError, match=rf"e\{ext}' is empty \(0 bytes\)"):
        read_array(tmp_path / f"e{ext}")


@pytest.mark.parametrize(
    ("ext", "message"),
    [
        (".npy", "not a valid .npy file"),
        (".npz", "not a valid .npz archive"),
        (".parquet", "not a valid Parquet file"),
        (".h5", "not a valid HDF5 file"),
        (".hdf5", "not a valid HDF5 file"),
    ],
)
def test_corrupt_file(tmp_path, ext, message):
    (tmp_path / f"bad{ext}").write_bytes(b"this is not a data file at all" * 10)
    with pytest.raises(DataError, match=message) as info:
        read_array(tmp_path / f"bad{ext}")
    assert str(tmp_path / f"bad{ext}") in str(info.value)


def test_truncated_npy(tmp_path):
    path = write_array(tmp_path / "x.npy", X)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"truncated: its header announces shape \(20, 4\) of float32"):
        read_array(path)


def test_truncated_npz_member(tmp_path):
    path = write_array(tmp_path / "x.npz", RNG.normal(size=(200, 50)))
    path.write_bytes(path.read_bytes()[:-3000])
    with pytest.raises(DataError, match="x.npz"):
        read_array(path)


def test_npy_with_python_objects_is_refused(tmp_path):
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="dtype object.*numeric arrays only"):
        read_array(tmp_path / "o.npy")


# --------------------------------------------------------------------------- atomic writes
@pytest.mark.parametrize("ext", WRITE_EXTENSIONS)
def test_failed_rename_leaves_no_temp_file(tmp_path, ext):
    (tmp_path / f"target{ext}").mkdir()  # os.replace onto a folder fails after the data were written
    with pytest.raises(OSError):
        write_array(tmp_path / f"target{ext}", X)
    assert listing(tmp_path) == [f"target{ext}"]


@pytest.mark.parametrize(
    ("ext", "kwargs"),
    [(".csv", {"columns": ["a"]}), (".tsv", {"columns": ["a"]}), (".parquet", {"columns": ["a"]}),
     (".h5", {"key": "/"})],
)
def test_failure_while_writing_keeps_the_old_file(tmp_path, ext, kwargs):
    path = write_array(tmp_path / f"d{ext}", X)
    before = path.read_bytes()
    with pytest.raises((DataError, ValueError)):
        write_array(path, X * 2, **kwargs)
    assert path.read_bytes() == before
    assert listing(tmp_path) == [f"d{ext}"]


def test_non_numeric_array_is_refused_before_touching_disk(tmp_path):
    path = write_array(tmp_path / "d.npy", X)
    with pytest.raises(DataError, match="dtype <U1.*numeric arrays only"):
        write_array(path, np.array(["a", "b"]))
    np.testing.assert_array_equal(read_array(path), X)
    assert listing(tmp_path) == ["d.npy"]


def test_csv_refuses_3d_arrays(tmp_path):
    with pytest.raises(DataError, match=r"hold 1-D or 2-D arrays, but the array has shape \(2, 2, 2\)"):
        write_array(tmp_path / "d.csv", np.zeros((2, 2, 2)))
    assert listing(tmp_path) == []


def test_overwrite_while_memory_mapped(tmp_path):
    path = write_array(tmp_path / "d.npy", X)
    old = read_array(path)
    write_array(path, X + 1)
    np.testing.assert_array_equal(old, X)  # the old map still sees the old file
    np.testing.assert_array_equal(read_array(path), X + 1)


def test_missing_output_folder(tmp_path):
    with pytest.raises(DataFileNotFoundError, match="the folder .*nowhere' does not exist"):
        write_array(tmp_path / "nowhere" / "d.npy", X)


# --------------------------------------------------------------------------- optional packages
@pytest.mark.parametrize(
    ("name", "modules"),
    [("d.h5", ["h5py"]), ("d.parquet", ["pyarrow", "pyarrow.parquet"]), ("im", ["PIL.Image"])],
)
def test_missing_optional_package_names_the_io_extra(tmp_path, monkeypatch, name, modules):
    (tmp_path / "im").mkdir()
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / "im" / "a.png")
    write_array(tmp_path / "d.h5", X)
    write_array(tmp_path / "d.parquet", X)
    for module in modules:  # simulate an environment without the package
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'aelab\[io\]'"):
        read_array(tmp_path / name)
