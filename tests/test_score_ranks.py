"""``aelab score --nproc N``: each rank scores its range of rows over a real process group on loopback (gloo);
the scores are the same bit for bit as in one process, in row order, in one file assembled at the end."""

import subprocess
import sys

import numpy as np
import pytest

import aelab
from aelab.cli.score import row_ranges
from aelab.fitted import EVAL_ROWS


def aelab_cli(*args, timeout=240):
    return subprocess.run([sys.executable, "-m", "aelab", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    d = tmp_path_factory.mktemp("score-ranks")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2 * EVAL_ROWS + 1500, 8)).astype(np.float32)  # three batches, the last one short
    np.save(d / "x.npy", X)
    aelab.Autoencoder(epochs=1, random_state=0).fit(X[:2000]).save(d / "m")
    r = aelab_cli("score", d / "m", d / "x.npy", "--threads", 1, "--out", d / "one.npy")
    assert r.returncode == 0, r.stderr
    return d, X


def test_row_ranges_are_whole_batches_in_order():
    for n in (0, 1, EVAL_ROWS - 1, EVAL_ROWS, 3 * EVAL_ROWS + 7, 10**6 + 3):
        for world in (1, 2, 3, 8):
            b = row_ranges(n, world)
            assert b[0] == 0 and b[-1] == n and all(x <= y for x, y in zip(b, b[1:]))
            assert all(x % EVAL_ROWS == 0 for x in b[:-1] if x < n)


@pytest.mark.slow
@pytest.mark.parametrize("stream", ["never", "always"])
def test_two_ranks_give_the_one_process_scores_bit_for_bit(job, stream):
    d, X = job
    out = d / f"two-{stream}.csv"
    r = aelab_cli("score", d / "m", d / "x.npy", "--nproc", 2, "--threads", 1, "--stream", stream, "--out", out)
    assert r.returncode == 0, r.stderr
    assert "in 2 ranks" in r.stdout
    one = np.load(d / "one.npy")
    two = np.loadtxt(out, delimiter=",") if out.suffix == ".csv" else np.load(out)
    assert two.shape == (len(X),)
    np.testing.assert_array_equal(np.round(two, 6), np.round(one, 6))  # csv holds the printed digits
    r = aelab_cli("score", d / "m", d / "x.npy", "--nproc", 2, "--threads", 1, "--stream", stream,
                  "--out", d / f"two-{stream}.npy")
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.load(d / f"two-{stream}.npy"), one)  # bit for bit, in row order
    assert not [p for p in d.iterdir() if ".aelab-tmp-" in p.name]


@pytest.mark.slow
def test_a_failing_rank_leaves_no_output_that_looks_complete(job):
    d, X = job
    bad = X.copy()
    bad[-10, 3] = np.nan  # in the last rank's rows only
    np.save(d / "bad.npy", bad)
    (d / "scores.npy").write_bytes(b"an earlier result")
    r = aelab_cli("score", d / "m", d / "bad.npy", "--nproc", 2, "--threads", 1, "--stream", "always",
                  "--out", d / "scores.npy")
    assert r.returncode == 2
    assert f"row {len(X) - 10} of X" in r.stderr and "rank 1 of 2 failed" in r.stderr
    assert (d / "scores.npy").read_bytes() == b"an earlier result"
    assert not [p for p in d.iterdir() if ".aelab-tmp-" in p.name]


def test_nproc_is_checked_before_any_rank_starts(cli, job):
    d, _ = job
    code, _, err = cli("score", d / "m", d / "x.npy", "--nproc", 2, "--out", d / "nowhere" / "s.npy")
    assert code == 2 and "does not exist" in err
    code, _, err = cli("score", d / "m", d / "x.npy", "--nproc", 0, "--out", d / "s.npy")
    assert code == 2 and "positive integer" in err


def test_removing_the_parts_touches_only_what_the_ranks_wrote(tmp_path):
    from aelab.cli.score import _parts, _remove_parts

    folder = _parts(tmp_path / "s.npy", 12345)
    folder.mkdir()
    for name in ("rank-0.npy", "rank-1.npy", ".rank-1.npy.aelab-tmp-999-abc"):
        (folder / name).write_bytes(b"x")
    _remove_parts(folder)
    assert not folder.exists()  # only parts were there: all gone, the folder too
    folder.mkdir()
    (folder / "rank-0.npy").write_bytes(b"x")
    (folder / "notes.txt").write_text("not aelab's")
    _remove_parts(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]  # a foreign file stays, and its folder
