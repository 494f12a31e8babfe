"""Processes end together and errors name the right rank (issue 24, items 5 and 7).

Real processes throughout: ``python -m aelab train --nproc 2`` is started in its own
session, the test waits for an event (the first checkpoint on disk), signals the launcher
and then polls /proc until its ranks are gone. Nothing is mocked.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import aelab
import aelab.distributed as D
from aelab.distributed import Comm
from aelab.exceptions import ConfigError, DataError, TrainingError

WAIT_S = 180  # generous bounds for a busy 2-core machine; every wait below ends on an event


def _table(n=2000, d=8, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as fh:
        return [int(p) for p in fh.read().split()]


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _wait_gone(pids, timeout=WAIT_S) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_running(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if _running(p)]


def _left_in(folder) -> list[str]:
    """What a run left in its temporary folder (torch's inductor cache, shared by every run, aside)."""
    return sorted(n for n in os.listdir(folder) if not n.startswith("torchinductor_"))


def _start_training(tmp_path):
    """The launcher of a long --nproc 2 run, once both ranks train (the first checkpoint exists)."""
    np.save(tmp_path / "x.npy", _table())
    ck = tmp_path / "ck"
    err = open(tmp_path / "stderr.txt", "w")
    (tmp_path / "tmp").mkdir()  # the launcher's temporary folder: what it leaves there is seen
    p = subprocess.Popen([sys.executable, "-m", "aelab", "train", str(tmp_path / "x.npy"), "--epochs", "500",
                          "--nproc", "2", "--threads", "1", "--checkpoint-every", "1", "--checkpoint-dir", str(ck),
                          "--out", str(tmp_path / "model")],
                         stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
                         env={**os.environ, "TMPDIR": str(tmp_path / "tmp")})
    err.close()
    deadline = time.monotonic() + WAIT_S
    while not (ck / "checkpoint.json").exists():
        assert p.poll() is None, (tmp_path / "stderr.txt").read_text()
        assert time.monotonic() < deadline, "no checkpoint was written"
        time.sleep(0.02)
    ranks = _children(p.pid)
    assert len(ranks) == 2, ranks
    return p, ranks


@pytest.mark.slow
def test_sigkill_of_the_launcher_ends_the_ranks_and_nothing_is_written(tmp_path):
    p, ranks = _start_training(tmp_path)
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=WAIT_S)
    assert _wait_gone(ranks) == [], "ranks outlived their launcher"
    assert not (tmp_path / "model").exists()
    # a killed launcher cannot clean up: its folder is removed by the next launch
    left = _left_in(tmp_path / "tmp")
    assert len(left) == 1 and left[0].startswith(f"aelab-launch-{p.pid}-"), left
    D._sweep_launch_folders(str(tmp_path / "tmp"))
    assert _left_in(tmp_path / "tmp") == []


@pytest.mark.slow
@pytest.mark.parametrize("sig, code, line", [(signal.SIGTERM, 143, "stopped by SIGTERM"),
                                             (signal.SIGINT, 130, "interrupted")])
def test_sigterm_and_sigint_stop_every_rank_with_one_line(tmp_path, sig, code, line):
    p, ranks = _start_training(tmp_path)
    os.kill(p.pid, sig)
    assert p.wait(timeout=WAIT_S) == code
    assert _wait_gone(ranks) == []
    lines = (tmp_path / "stderr.txt").read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aelab train") and line in lines[0], lines
    assert "got signal" not in lines[0] and "Traceback" not in lines[0]
    assert not (tmp_path / "model").exists()
    assert _left_in(tmp_path / "tmp") == []  # neither aelab's nor torch's temporary files are left


def test_a_rank_whose_launcher_is_gone_does_not_write(tmp_path, monkeypatch):
    # what rank 0 checks before its final write: its parent is not the launcher any more
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv(D.ENV_LAUNCHER, str(os.getppid()))
    assert D.launcher_alive()
    monkeypatch.setenv(D.ENV_LAUNCHER, str(os.getpid()))  # not our parent: the launcher ended
    assert not D.launcher_alive()
    with pytest.raises(TrainingError, match="launcher of this rank has ended"):
        D.check_launcher("the model")


# ------------------------------------------------------------------ too few rows for the ranks
def test_cli_more_ranks_than_rows_is_a_usage_error_before_any_rank(tmp_path, cli):
    np.save(tmp_path / "three.npy", _table(3, 4))
    code, out, err = cli("train", tmp_path / "three.npy", "--nproc", 4, "--out", tmp_path / "m")
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 1 and "has 3 rows, too few for 4 ranks" in lines[0] and "--nproc 3" in lines[0], err
    assert "gloo" not in err and "training on" not in out
    assert not (tmp_path / "m").exists()


def test_fit_more_ranks_than_rows_raises_before_any_rank():
    with pytest.raises(ConfigError, match="X has 3 rows, too few for 4 ranks"):
        D.fit(aelab.Autoencoder(epochs=1), _table(3, 4), nproc=4)


def test_the_validation_split_must_leave_every_shard_rows_to_train_on():
    # 8 rows, half held out, 4 shards of 2: some seeds leave a shard no training row
    counts = {s: min(D.shard_training_rows(8, 4, 0.5, s)) for s in range(40)}
    bad = next(s for s, c in counts.items() if c == 0)
    good = next(s for s, c in counts.items() if c > 0)
    with pytest.raises(ConfigError, match=r"8 rows \(4 held out for validation\), too few for 4 ranks"):
        D.check_rows(8, 4, 0.5, seed=bad)
    D.check_rows(8, 4, 0.5, seed=good)
    with pytest.raises(ConfigError, match="too few for 4 ranks"):
        D.fit(aelab.Autoencoder(epochs=1, validation_fraction=0.5, random_state=bad), _table(8, 3), nproc=4)
    # an unknown seed (random_state=None) is checked in the ranks, the same way on every rank
    import torch

    from aelab.pipeline import equal_shares as _equal_shares
    from aelab.training import validation_split

    _, train_idx = validation_split(8, 0.5, torch.Generator().manual_seed(bad))
    for rank in range(4):
        with pytest.raises(DataError, match="leaves rank . no row to train on"):
            _equal_shares(train_idx, 8, Comm(rank, 4))


# ------------------------------------------------------------------ the rank that raised
@pytest.mark.slow
def test_fit_names_the_rank_that_raised_and_its_message(tmp_path):
    X = _table(2000)
    X[1500, 1] = np.nan  # rank 1's shard of the streamed file
    np.save(tmp_path / "bad.npy", X)
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingError) as info:
        D.fit(aelab.Autoencoder(epochs=2), aelab.io.open_array(tmp_path / "bad.npy"), nproc=2, threads=1)
    message = str(info.value)
    assert message.startswith("rank 1 of 2 failed: ") and "NaN" in message, message
    assert info.value.rank == 1 and info.value.exit_code == 2
    assert "gloo" not in message
    assert signal.getsignal(signal.SIGTERM) is handler  # the agent's signal handlers are gone again


@pytest.mark.slow
def test_cli_names_the_rank_that_raised_in_one_line(tmp_path):
    X = _table(2000)
    X[1500, 1] = np.nan
    np.save(tmp_path / "bad.npy", X)
    r = subprocess.run([sys.executable, "-m", "aelab", "train", str(tmp_path / "bad.npy"), "--stream", "always",
                        "--epochs", "2", "--nproc", "2", "--threads", "1", "--out", str(tmp_path / "m")],
                       capture_output=True, text=True, timeout=WAIT_S)
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("aelab train: error: rank 1 of 2 failed: ") and "NaN" in lines[0]
    assert "gloo" not in r.stderr and not (tmp_path / "m").exists()


def _rank_of(pid: int) -> int:
    with open(f"/proc/{pid}/environ", "rb") as fh:
        env = dict(kv.split(b"=", 1) for kv in fh.read().split(b"\0") if b"=" in kv)
    return int(env[b"RANK"])


@pytest.mark.slow
def test_a_rank_killed_by_a_signal_is_named(tmp_path):
    p, ranks = _start_training(tmp_path)
    victim = next(pid for pid in ranks if _rank_of(pid) == 1)
    os.kill(victim, signal.SIGKILL)  # as the OOM killer does: no message from the rank itself
    assert p.wait(timeout=WAIT_S) == 1
    assert _wait_gone(ranks) == []
    lines = (tmp_path / "stderr.txt").read_text().splitlines()
    assert lines == ["aelab train: error: rank 1 of 2 was killed by SIGKILL (every rank was stopped and nothing "
                     "was written)"], lines
    assert not (tmp_path / "model").exists()
    assert _left_in(tmp_path / "tmp") == []


@pytest.mark.slow
def test_sigkill_of_a_python_program_running_distributed_fit_ends_its_ranks(tmp_path):
    # aelab.distributed.fit starts its ranks with multiprocessing (spawn), not as commands. (A guard, not a
    # regression test: torch's spawn wrapper already asks for SIGINT at the parent's death; the ranks now
    # ask for SIGKILL, and SIGINT no longer raises KeyboardInterrupt in them.)
    np.save(tmp_path / "x.npy", _table())
    script = (f"import numpy as np, aelab, aelab.distributed as D\n"
              f"D.fit(aelab.Autoencoder(epochs=500), np.load({str(tmp_path / 'x.npy')!r}), nproc=2, threads=1,\n"
              f"      checkpoint_dir={str(tmp_path / 'ck')!r})\n"
              f"open({str(tmp_path / 'finished')!r}, 'w').close()\n")
    (tmp_path / "tmp").mkdir()
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True, env={**os.environ, "TMPDIR": str(tmp_path / "tmp")})
    deadline = time.monotonic() + WAIT_S
    while not (tmp_path / "ck" / "checkpoint.json").exists():
        assert p.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    ranks = []
    for pid in _children(p.pid):  # the ranks, beside multiprocessing's resource tracker
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            if b"spawn_main" in fh.read():
                ranks.append(pid)
    assert len(ranks) == 2
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=WAIT_S)
    assert _wait_gone(ranks) == []
    assert not (tmp_path / "finished").exists()
    D._sweep_launch_folders(str(tmp_path / "tmp"))
    assert _left_in(tmp_path / "tmp") == []
