"""``python -m aelab`` as a real process: exit codes, streams, and no traceback for bad input."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

SRC = Path(__file__).resolve().parents[1] / "src"


def aelab(*argv, cwd):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "aelab", *map(str, argv)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_version_and_help(tmp_path):
    proc = aelab("--version", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("aelab ")
    proc = aelab("score", "--help", cwd=tmp_path)
    assert proc.returncode == 0 and "example:" in proc.stdout


def test_train_and_score_end_to_end(tmp_path):
    X = np.random.default_rng(0).normal(size=(80, 4)).astype(np.float32)
    np.save(tmp_path / "X.npy", X)
    proc = aelab("train", "X.npy", "--epochs", 1, "-k", 2, "--out", "model", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no progress bar when stderr is not a terminal
    proc = aelab("score", "model", "X.npy", "--out", "scores.csv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len((tmp_path / "scores.csv").read_text().splitlines()) == 80


def test_bad_input_exit_2_one_line_no_traceback(tmp_path):
    (tmp_path / "scores.csv").write_text("precious")
    proc = aelab("score", "no-model", "X.npy", "--out", "scores.csv", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("aelab score: error: no model folder at 'no-model'")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert (tmp_path / "scores.csv").read_text() == "precious"


def test_usage_error_exit_2(tmp_path):
    proc = aelab("generate", "model", "-n", "many", "--out", "g.npy", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == ("aelab generate: error: argument -n: expected a positive integer, got 'many'. "
                           "See 'aelab generate --help'.\n")
