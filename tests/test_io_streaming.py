"""aelab.io.open_array / ArraySource / write_rows: chunked reading and streaming writes."""

from __future__ import annotations

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aelab.exceptions import DataError
from aelab.io import CHUNK_BYTES, ArraySource, open_array, read_array, write_array, write_rows

N = 1000
# Column 0 holds the row id, so shuffled output can be traced back to rows.
DATA = np.column_stack([np.arange(N), np.random.default_rng(1).normal(size=(N, 3))])


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


def parquet_file(tmp_path, row_group_size=70):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({f"c{i}": DATA[:, i] for i in range(4)}), path, row_group_size=row_group_size)
    return path


@pytest.fixture(params=[".npy", ".h5", ".parquet", ".npz", ".csv"])
def source_path(request, tmp_path):
    if request.param == ".parquet":
        return parquet_file(tmp_path)
    return write_array(tmp_path / f"d{request.param}", DATA)


# --------------------------------------------------------------------------- ArraySource
def test_source_protocol(source_path):
    with open_array(source_path, chunk_rows=128) as src:
        assert isinstance(src, ArraySource)
        assert src.path == str(source_path)
        assert src.shape == (N, 4) and len(src) == N and src.chunk_rows == 128
        assert src.dtype == np.float64
        np.testing.assert_array_equal(src.read(65, 205), DATA[65:205])  # crosses parquet row groups
        np.testing.assert_array_equal(src.read(990, 5000), DATA[990:])  # clipped like a slice
        assert src.read(10, 10).shape == (0, 4)
        chunks = list(src.iter_chunks())
        assert [len(c) for c in chunks] == [128] * 7 + [104]
        np.testing.assert_array_equal(np.concatenate(chunks), DATA)
        assert [len(c) for c in src.iter_chunks(chunk_rows=400)] == [400, 400, 200]


def test_read_returns_an_independent_in_memory_copy(source_path):
    src = open_array(source_path)
    rows = src.read(0, 10)
    assert type(rows) is np.ndarray and rows.flags.writeable
    rows[:] = -1
    np.testing.assert_array_equal(src.read(0, 10), DATA[:10])


def test_h5_key_and_parquet_dtype(tmp_path):
    with h5py.File(tmp_path / "d.h5", "w") as fh:
        fh.create_dataset("a/events", data=DATA)
        fh.create_dataset("a/labels", data=np.arange(N))
    src = open_array(tmp_path / "d.h5", key="a/events")
    assert src.key == "a/events"
    np.testing.assert_array_equal(src.read(3, 6), DATA[3:6])
    src.close()
    np.testing.assert_array_equal(src.read(3, 6), DATA[3:6])  # reopens after close
    with pytest.raises(DataError, match="several datasets .*'a/events', 'a/labels'"):
        open_array(tmp_path / "d.h5")
    pq.write_table(pa.table({"i": [1, 2, None], "f": [1.0, 2.0, 3.0]}), tmp_path / "n.parquet")
    src = open_array(tmp_path / "n.parquet")
    assert src.dtype == np.float64
    np.testing.assert_array_equal(src.read(0, 3), [[1, 1], [2, 2], [np.nan, 3]])
    pq.write_table(pa.table({"i": np.arange(5, dtype=np.int32)}), tmp_path / "i.parquet")
    assert open_array(tmp_path / "i.parquet").dtype == np.int32


def test_default_chunk_is_about_8_mb(tmp_path):
    src = open_array(write_array(tmp_path / "d.npy", np.zeros((10, 57), np.float32)))
    assert src.chunk_rows == CHUNK_BYTES // (57 * 4)
    assert CHUNK_BYTES == 8 * 2**20


def test_npy_is_read_lazily_from_disk(tmp_path):
    path = write_array(tmp_path / "d.npy", DATA)
    src = open_array(path, chunk_rows=100)
    on_disk = np.lib.format.open_memmap(path, mode="r+")  # change the file after opening the source
    on_disk[500:510] = 7.0
    on_disk.flush()
    del on_disk
    np.testing.assert_array_equal(src.read(500, 510), np.full((10, 4), 7.0))
    assert isinstance(read_array(path), np.memmap)


def test_fortran_order_npy(tmp_path):
    np.save(tmp_path / "f.npy", np.asfortranarray(DATA))
    chunks = list(open_array(tmp_path / "f.npy", chunk_rows=99).iter_chunks())
    np.testing.assert_array_equal(np.concatenate(chunks), DATA)


def test_from_array():
    src = ArraySource.from_array(DATA, chunk_rows=300)
    assert src.path == "<memory>" and src.shape == DATA.shape
    np.testing.assert_array_equal(np.concatenate(list(src.iter_chunks())), DATA)


# --------------------------------------------------------------------------- shuffled batches
def ids(batches):
    return np.concatenate([b[:, 0] for b in batches]).astype(int)


def test_shuffled_batches_see_every_row_once(source_path):
    src = open_array(source_path, chunk_rows=64)
    batches = list(src.iter_shuffled_batches(50, np.random.default_rng(0), buffer_chunks=3))
    assert [len(b) for b in batches] == [50] * 20  # leftovers carried over: all batches full
    seen = ids(batches)
    assert sorted(seen) == list(range(N))
    assert not np.array_equal(seen, np.arange(N))
    for b in batches:  # the rows themselves are intact
        np.testing.assert_array_equal(b, DATA[b[:, 0].astype(int)])


def test_shuffle_depends_on_the_seed_only(tmp_path):
    src = open_array(write_array(tmp_path / "d.npy", DATA), chunk_rows=100)
    a = ids(src.iter_shuffled_batches(32, np.random.default_rng(1)))
    b = ids(src.iter_shuffled_batches(32, np.random.default_rng(1)))
    c = ids(src.iter_shuffled_batches(32, np.random.default_rng(2)))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert sorted(a) == sorted(c) == list(range(N))


def test_shuffle_mixes_rows_across_chunks(tmp_path):
    src = open_array(write_array(tmp_path / "d.npy", DATA), chunk_rows=100)
    first = next(src.iter_shuffled_batches(100, np.random.default_rng(0), buffer_chunks=4))
    assert len(np.unique(first[:, 0] // 100)) > 1  # one batch draws on several chunks
    last_batch = list(src.iter_shuffled_batches(300, np.random.default_rng(0)))[-1]
    assert len(last_batch) == N % 300


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
     ({"batch_size": 8, "buffer_chunks": 0}, "buffer_chunks must be a positive integer")],
)
def test_bad_batch_arguments(tmp_path, kwargs, message):
    src = open_array(write_array(tmp_path / "d.npy", DATA))
    with pytest.raises(DataError, match=message):
        next(src.iter_shuffled_batches(rng=np.random.default_rng(0), **kwargs))


# --------------------------------------------------------------------------- bad input
def test_open_array_errors(tmp_path):
    with pytest.raises(DataError, match="chunk_rows must be a positive integer, got 0"):
        open_array(write_array(tmp_path / "d.npy", DATA), chunk_rows=0)
    with pytest.raises(DataError, match="Supported: .npy"):
        open_array(tmp_path / "d.bin")
    with pytest.raises(FileNotFoundError, match="no such file"):
        open_array(tmp_path / "missing.h5")
    np.save(tmp_path / "s.npy", np.float32(3))
    with pytest.raises(DataError, match="holds a scalar"):
        open_array(tmp_path / "s.npy")
    path = write_array(tmp_path / "t.npy", DATA)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match="truncated"):
        open_array(path)


# --------------------------------------------------------------------------- write_rows
def test_stream_a_source_to_npy(tmp_path):
    src = open_array(write_array(tmp_path / "d.npy", DATA), chunk_rows=128)
    with write_rows(tmp_path / "scores.npy", len(src)) as w:
        for chunk in src.iter_chunks():
            w.write(chunk[:, 1:].sum(axis=1))
            assert not (tmp_path / "scores.npy").exists()  # appears only when complete
    assert w.rows_written == N
    out = np.load(tmp_path / "scores.npy")
    assert out.dtype == np.float32 and out.shape == (N,)
    np.testing.assert_allclose(out, DATA[:, 1:].sum(axis=1), rtol=1e-6)
    assert listing(tmp_path) == ["d.npy", "scores.npy"]


def test_stream_multidimensional_rows_to_npy(tmp_path):
    codes = np.arange(24, dtype=np.float64).reshape(6, 2, 2)
    with write_rows(tmp_path / "c.npy", 6, (2, 2), np.float64) as w:
        w.write(codes[:4])
        w.write(codes[4:])
    np.testing.assert_array_equal(np.load(tmp_path / "c.npy"), codes)


@pytest.mark.parametrize("ext", [".csv", ".tsv", ".parquet"])
def test_stream_to_tables(tmp_path, ext):
    with write_rows(tmp_path / f"o{ext}", None, (2,), np.float64, columns=["score", "label"]) as w:
        for start in range(0, N, 300):
            w.write(DATA[start : start + 300, :2])
    np.testing.assert_array_equal(read_array(tmp_path / f"o{ext}"), DATA[:, :2])
    if ext == ".parquet":
        f = pq.ParquetFile(tmp_path / f"o{ext}")
        assert f.schema_arrow.names == ["score", "label"] and f.metadata.num_row_groups == 4
    else:
        header = (tmp_path / f"o{ext}").read_text().splitlines()[0]
        assert header == ("score,label" if ext == ".csv" else "score\tlabel")


@pytest.mark.parametrize("ext", [".npy", ".csv", ".parquet"])
def test_exception_in_block_keeps_old_file(tmp_path, ext):
    path = write_array(tmp_path / f"o{ext}", np.arange(5.0))
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="model crashed"):
        with write_rows(path, 10) as w:
            w.write(np.zeros(5))
            raise RuntimeError("model crashed")
    assert path.read_bytes() == before
    assert listing(tmp_path) == [f"o{ext}"]


def test_too_few_or_too_many_rows(tmp_path):
    with pytest.raises(DataError, match="only 4 of the 10 announced rows .* nothing was saved"):
        with write_rows(tmp_path / "o.npy", 10) as w:
            w.write(np.zeros(4))
    with pytest.raises(DataError, match=r"too many rows .* 4 written \+ 7 in this chunk > n_rows=10"):
        with write_rows(tmp_path / "o.csv", 10) as w:
            w.write(np.zeros(4))
            w.write(np.zeros(7))
    assert listing(tmp_path) == []


def test_write_rows_argument_errors(tmp_path):
    with pytest.raises(DataError, match="needs n_rows"):
        write_rows(tmp_path / "o.npy")
    with pytest.raises(DataError, match="Use .npy for rows with more dimensions"):
        write_rows(tmp_path / "o.csv", 3, (2, 2))
    with pytest.raises(DataError, match="Supported: .npy, .csv, .tsv, .parquet"):
        write_rows(tmp_path / "o.h5", 3)
    with write_rows(tmp_path / "o.npy", 4, (3,)) as w:
        with pytest.raises(DataError, match=r"chunk .* has shape \(4, 2\), but rows of shape \(3,\)"):
            w.write(np.zeros((4, 2)))
        w.write(np.ones((4, 3)))
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"), np.ones((4, 3)))
    with pytest.raises(DataError, match="closed"):
        w.write(np.ones((1, 3)))
    assert listing(tmp_path) == ["o.npy"]


def test_zero_rows(tmp_path):
    with write_rows(tmp_path / "z.npy", 0, (3,)):
        pass
    assert np.load(tmp_path / "z.npy").shape == (0, 3)
