"""Fault injection: SIGKILL at random points of every writer, and hostile files for every reader.

The kills are real: a forked child of a worker process counts the function calls of the write
(``sys.setprofile`` sees Python and C calls, so every ``write``, ``fsync`` and ``rename``) and sends
itself SIGKILL at the N-th, for N drawn at random (seeded) over the whole write. After each kill the
output must be the previous one byte for byte, or the new one complete and verified; the user's
own files are intact; and after the next successful write nothing is left behind.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import aelab
from aelab.exceptions import AelabError

WORKER = textwrap.dedent(r'''
    import json, os, random, signal, sys
    from pathlib import Path
    import numpy as np, torch
    torch.set_num_threads(1)
    import aelab
    from aelab._fs import verify_owned

    root = Path(sys.argv[1]); kills = int(sys.argv[2])
    X = np.random.default_rng(0).normal(size=(200, 6)).astype(np.float32)
    est = aelab.Autoencoder(latent_dim=2, hidden=(8,), epochs=1, random_state=0, n_threads=1).fit(X)

    def snapshot(folder):
        if folder.is_file():
            return {"": folder.read_bytes().hex()}
        return {str(p.relative_to(folder)): p.read_bytes().hex() for p in sorted(folder.rglob("*")) if p.is_file()}

    def leftovers():
        return sorted(p.name for p in root.iterdir() if ".aelab-tmp-" in p.name)

    def model_save(path, version):
        est.set_threshold(X, contamination=0.01 + 0.0001 * version)
        est.save(path)

    def checkpoint(path, version):
        from aelab.checkpoint import Checkpointer, TrainState
        from aelab.distributed import Comm
        state = TrainState(epoch=1, history={"loss": [float(version)]}, best=1.0, since_best=0,
                           model={k: v + version for k, v in est.model_.state_dict().items()},
                           optimizer={"state": {}, "param_groups": []})
        Checkpointer(path, 1, Comm(), {"v": 1}).save(state, {"torch": torch.get_rng_state().tolist()})

    def onnx_export(path, version):
        est.set_threshold(X, contamination=0.01 + 0.0001 * version)
        est.export_onnx(path)

    def array(path, version):
        aelab.io.write_array(path, X + version)

    writers = {"model": (model_save, "m"), "checkpoint": (checkpoint, "ck"), "onnx": (onnx_export, "m.onnx"),
               "npy": (array, "x.npy"), "parquet": (array, "x.parquet")}

    def calls(fn, *args):
        n = [0]
        def count(frame, event, arg):
            n[0] += 1
        sys.setprofile(count)
        try:
            fn(*args)
        finally:
            sys.setprofile(None)
        return n[0]

    results = {}
    rnd = random.Random(0)
    for name, (fn, target) in writers.items():
        path = root / target
        fn(path, 0)
        if path.is_dir():
            (path / "NOTES.md").write_text("the user's notes")
        total = calls(fn, path, 1)  # a whole write, counted (and done: version 1 is the previous output)
        points = sorted(rnd.sample(range(1, total), min(kills, total - 1)))
        rows = []
        for version, at in enumerate(points, start=2):
            before = snapshot(path)
            pid = os.fork()
            if pid == 0:
                n = [0]
                def kill(frame, event, arg):
                    n[0] += 1
                    if n[0] >= at:
                        os.kill(os.getpid(), signal.SIGKILL)
                sys.setprofile(kill)
                fn(path, version)
                sys.setprofile(None)
                os._exit(0)
            _, status = os.waitpid(pid, 0)
            after = snapshot(path)
            killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
            state = "previous" if after == before else "other"
            if state == "other" and path.is_dir():
                verify_owned(path, name if name != "onnx" else "model")  # raises if not complete
                state = "new, verified"
            elif state == "other":
                state = "new"
            notes = (path / "NOTES.md").read_text() == "the user's notes" if path.is_dir() else True
            rows.append({"at": at, "of": total, "killed": killed, "state": state, "notes": notes,
                         "leftovers": leftovers()})
        fn(path, 999)  # the next write cleans what the kills left
        if name == "model":
            loaded = aelab.load(path)
            assert abs(loaded.threshold_rule_["contamination"] - (0.01 + 0.0999)) < 1e-9
        results[name] = {"rows": rows, "after_next_write": leftovers(),
                         "notes_kept": (path / "NOTES.md").exists() if path.is_dir() else True}
    print(json.dumps(results))
''')


@pytest.mark.slow
def test_sigkill_at_random_points_of_every_writer(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "AELAB_DEVICE": "cpu"}
    r = subprocess.run([sys.executable, "-c", WORKER, str(tmp_path), "12"], capture_output=True, text=True,
                       timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(results) == {"model", "checkpoint", "onnx", "npy", "parquet"}
    for name, res in results.items():
        rows = res["rows"]
        assert len(rows) >= 10, name
        assert sum(row["killed"] for row in rows) >= len(rows) - 1, (name, rows)  # the last point may end the write
        for row in rows:
            assert row["state"] in ("previous", "new", "new, verified"), (name, row)
            assert row["notes"], (name, row)
            # what a kill leaves is at most this writer's one temporary sibling, named as such
            assert len(row["leftovers"]) <= 1, (name, row)
        assert any(row["state"] == "previous" for row in rows), name  # kills before the swap did happen
        assert res["after_next_write"] == [] and res["notes_kept"], (name, res)


# ------------------------------------------------------------------ hostile files
@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    d = tmp_path_factory.mktemp("saved")
    X = np.random.default_rng(0).normal(size=(120, 5)).astype(np.float32)
    aelab.Autoencoder(latent_dim=2, hidden=(8,), epochs=1, random_state=0).fit(X).save(d / "m")
    aelab.Autoencoder(latent_dim=2, hidden=(8,), epochs=1, random_state=0).fit(X, checkpoint_dir=d / "ck")
    files = Files()
    for name in ("x.npy", "x.npz", "x.csv", "x.parquet", "x.h5"):
        aelab.io.write_array(d / name, X)
        files[name] = (d / name).read_bytes()
    return d, X, files


class Files(dict):
    """The intact files' bytes (a short repr, for Hypothesis's reports)."""

    def __repr__(self):
        return f"Files({sorted(self)})"


def _damage(data: bytes, cut, flips) -> bytes:
    b = bytearray(data[: max(0, min(len(data), cut))] if cut is not None else data)
    for pos, value in flips:
        if b:
            b[pos % len(b)] = value
    return bytes(b)


damage = st.tuples(st.one_of(st.none(), st.integers(0, 4000)),
                   st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["x.npy", "x.npz", "x.csv", "x.parquet", "x.h5"]), how=damage)
def test_readers_answer_damaged_files_with_an_aelab_error(saved, tmp_path_factory, name, how):
    d, X, files = saved
    path = tmp_path_factory.mktemp("r") / name
    path.write_bytes(_damage(files[name], *how))
    try:
        arr = aelab.io.read_array(path)
    except AelabError:
        pass
    else:
        assert isinstance(arr, np.ndarray)  # a damage the format cannot notice (a flipped digit) still reads
    try:  # the same file read lazily, a chunk at a time
        total = sum(len(chunk) for chunk in aelab.io.open_array(path, chunk_rows=16).iter_chunks())
    except AelabError:
        return
    assert total >= 0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["config.json", "weights.safetensors", "meta.json", ".aelab.json"]), how=damage,
       marker=st.booleans())
def test_model_loader_answers_damaged_folders_with_an_aelab_error(saved, tmp_path_factory, name, how, marker):
    import shutil

    d, X, _ = saved
    m = tmp_path_factory.mktemp("m") / "m"
    shutil.copytree(d / "m", m)
    if not marker:
        (m / ".aelab.json").unlink()  # as an older aelab wrote it: the readers alone must refuse
    if (m / name).exists():
        (m / name).write_bytes(_damage((m / name).read_bytes(), *how))
    try:
        est = aelab.load(m)
    except AelabError:
        return
    est.decision_function(X)  # if it loads, it works


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["checkpoint.json", "state.safetensors"]), how=damage, marker=st.booleans())
def test_checkpoint_reader_answers_damaged_folders_with_an_aelab_error(saved, tmp_path_factory, name, how, marker):
    import shutil

    from aelab.checkpoint import read_checkpoint
    from aelab.distributed import Comm

    d, _, _ = saved
    ck = tmp_path_factory.mktemp("c") / "ck"
    shutil.copytree(d / "ck", ck)
    if not marker:
        (ck / ".aelab.json").unlink()
        doc = json.loads((ck / "checkpoint.json").read_text())
        (ck / "checkpoint.json").write_text(json.dumps({**doc, "format_version": 1}))
    (ck / name).write_bytes(_damage((ck / name).read_bytes(), *how))
    fingerprint = json.loads((d / "ck" / "checkpoint.json").read_text())["fingerprint"]
    try:
        read_checkpoint(ck, Comm(), fingerprint)
    except AelabError:
        return


def test_hostile_headers_symlinks_and_names(tmp_path):
    # an .npy header announcing 10^15 rows of a 40-byte file
    header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000000, 3), }"
    header += b" " * (117 - len(header)) + b"\n"
    (tmp_path / "huge.npy").write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b"\0" * 40)
    with pytest.raises(AelabError, match="huge.npy"):
        aelab.io.read_array(tmp_path / "huge.npy")
    with pytest.raises(AelabError, match="huge.npy"):
        aelab.io.open_array(tmp_path / "huge.npy")
    # a symlink to nowhere, a folder named like a file, a non-UTF-8 name
    (tmp_path / "dangling.npy").symlink_to(tmp_path / "nowhere.npy")
    with pytest.raises(AelabError):
        aelab.io.read_array(tmp_path / "dangling.npy")
    odd = os.fsdecode(b"caf\xe9.npy")
    np.save(tmp_path / odd, np.ones((3, 2), np.float32))
    assert aelab.io.read_array(tmp_path / odd).shape == (3, 2)
    with pytest.raises(AelabError):
        aelab.load(tmp_path / "dangling.npy")
    # a model folder whose weights file is a symlink to /dev/zero would hang a naive reader
    m = tmp_path / "m"
    aelab.PCA(n_components=1).fit(np.random.default_rng(0).normal(size=(20, 3))).save(m)
    (m / "weights.safetensors").unlink()
    (m / "weights.safetensors").symlink_to("/dev/zero")
    with pytest.raises(AelabError):
        aelab.load(m)
