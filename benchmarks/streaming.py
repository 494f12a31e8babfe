"""Streaming data larger than memory: peak memory and throughput of fit and scoring on an ArraySource.

Creates a float32 ``.npy`` of ``--rows`` x ``--features`` synthetic events (default
5,300,000 x 57, about 1.2 GB; the size of the ADC2021 background set), then runs
each task in its own subprocess, so that the peak resident memory (VmHWM) belongs
to that task alone:

* ``train``:  ``aelab.Autoencoder(epochs=1, validation_fraction=0, early_stopping=False).fit(source)``
  on ``aelab.io.open_array(path)``, then saves the model;
* ``stream``: ``aelab.latent.score_to_file(est, source, out.npy)``, chunk by chunk;
* ``memory``: the same rows loaded whole with ``np.load`` and scored with ``decision_function``;
* ``cli``:    ``aelab score model data.npy --out scores.npy``, which streams a file this large by itself.

The three scorings must agree. Each task reports its wall time, rows per second, the
resident memory right after the imports and the peak during the task.

Run:  python benchmarks/streaming.py [--rows N] [--features D] [--workdir DIR] [--device cpu]
Writes benchmarks/results/streaming.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "streaming.json"


def rss_mb(field: str) -> float:
    """VmRSS / VmHWM of this process in MB, from /proc (Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _version(pkg: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(pkg)
    except PackageNotFoundError:
        return None


def make_data(path: Path, rows: int, features: int, seed: int = 0) -> None:
    """Low-rank Gaussian events plus noise, written chunk by chunk (never all in memory)."""
    from aelab.io import write_rows

    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(8, features)).astype(np.float32)
    with write_rows(path, rows, (features,), np.float32) as out:
        for start in range(0, rows, 262_144):
            n = min(262_144, rows - start)
            signal = rng.standard_normal((n, 8), np.float32) @ mixing
            out.write(signal + 0.1 * rng.standard_normal((n, features), np.float32))


def child(task: str, workdir: Path, device: str) -> dict:
    """Run one task in this (fresh) process and return its measurements."""
    import aelab
    from aelab.io import open_array
    from aelab.latent import score_to_file

    data, model = workdir / "data.npy", workdir / "model"
    rss_start = rss_mb("VmRSS")
    start = time.perf_counter()
    if task == "train":
        est = aelab.Autoencoder(epochs=1, validation_fraction=0, early_stopping=False, random_state=0, device=device)
        est.fit(open_array(data))
        est.save(model)
    elif task == "stream":
        score_to_file(aelab.load(model, device=device), open_array(data), workdir / "scores_stream.npy")
    elif task == "memory":
        X = np.load(data)
        np.save(workdir / "scores_memory.npy", aelab.load(model, device=device).decision_function(X))
    elif task == "cli":
        from aelab.cli import main as cli

        if cli(["score", str(model), str(data), "--out", str(workdir / "scores_cli.npy"), "--quiet"]):
            raise SystemExit("aelab score failed")
    else:
        raise SystemExit(f"unknown task {task!r}")
    wall = time.perf_counter() - start
    rows = int(np.load(data, mmap_mode="r").shape[0])
    return {
        "task": task,
        "wall_s": round(wall, 2),
        "rows_per_s": round(rows / wall),
        "rss_after_imports_mb": round(rss_start, 1),
        "peak_rss_mb": round(rss_mb("VmHWM"), 1),
    }


def run_child(task: str, args) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, __file__, "--child", task, "--workdir", str(args.workdir), "--device", args.device]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"task {task!r} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_300_000)
    parser.add_argument("--features", type=int, default=57)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "aelab-streaming",
                        help="where the data, model and scores go (the data file is reused when its shape fits)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.workdir, args.device)))
        return {}

    sys.path.insert(0, str(REPO / "src"))
    args.workdir.mkdir(parents=True, exist_ok=True)
    data = args.workdir / "data.npy"
    existing = np.load(data, mmap_mode="r").shape if data.exists() else None
    if existing != (args.rows, args.features):
        print(f"writing {args.rows} x {args.features} float32 to {data} ...", flush=True)
        make_data(data, args.rows, args.features)
    tasks = {task: run_child(task, args) for task in ("train", "stream", "memory", "cli")}
    for task in tasks.values():
        print(f"{task['task']:>7}: {task['wall_s']:8.2f} s  {task['rows_per_s']:>10,} rows/s  "
              f"peak RSS {task['peak_rss_mb']:8.1f} MB (after imports {task['rss_after_imports_mb']:.1f} MB)")
    stream, memory = np.load(args.workdir / "scores_stream.npy"), np.load(args.workdir / "scores_memory.npy")
    max_rel_diff = max(float(np.max(np.abs(other - memory) / np.maximum(np.abs(memory), 1e-12)))
                       for other in (stream, np.load(args.workdir / "scores_cli.npy")))
    result = {
        "rows": args.rows,
        "features": args.features,
        "data_mb": round(data.stat().st_size / 2**20, 1),
        "device": args.device,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "versions": {pkg: _version(pkg) for pkg in ("aelab", "torch", "numpy", "scikit-learn", "pandas")},
        "machine": platform.machine(),
        "tasks": tasks,
        "stream_vs_memory_throughput": round(tasks["stream"]["rows_per_s"] / tasks["memory"]["rows_per_s"], 3),
        "cli_vs_memory_throughput": round(tasks["cli"]["rows_per_s"] / tasks["memory"]["rows_per_s"], 3),
        "scores_max_relative_difference": max_rel_diff,
    }
    print(f"data {result['data_mb']} MB; streamed scoring runs at {result['stream_vs_memory_throughput']:.2f}x "
          f"the in-memory rate; scores agree to {max_rel_diff:.1e} (relative)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return result


if __name__ == "__main__":
    main()
