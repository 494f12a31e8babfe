"""Data parallelism on one machine: 1 process x 2 threads against 2 processes x 1 thread.

For each data set and global batch B (64, aelab's auto batch for large sets, and 1024,
the trigger recipe's), the same rows and seed are fitted both ways (one process with
batch_size B, two ranks with B / 2 each); each rank is launched by
torchrun's elastic agent (``aelab.distributed.launch``) and reports from inside:

* ``rows_per_s``: training rows x epochs / seconds of ``fit`` (process start-up excluded);
* ``allreduce_share``: the seconds one all-reduce of the model's gradient bytes takes
  (timed on its own, 200 times, in the same ranks), times the optimiser steps, over the
  fit's seconds: the part of a step spent communicating;
* ``peak_rss_mb`` per rank (VmHWM).

Data: the 57-feature collider-shaped events of benchmarks/streaming.py (in memory, a
memory-mapped .npy that each rank reads its shard of) and MNIST (the 60,000 training
digits of ../shared/data/mnist_idx when present, else the 5,000 bundled ones). Then a
2-rank streamed fit of the full 1.2 GB file (5.3 million rows, one epoch) reports the
peak memory per rank.

Run with nothing else running:  python benchmarks/distributed.py [--rows N] [--skip-stream]
Writes benchmarks/results/distributed.json and distributed.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from streaming import make_data, rss_mb  # noqa: E402


def worker(path: str, params: dict, stream: bool) -> dict:
    """One rank: fit, then time all-reduces of the gradient's size."""
    import torch
    import torch.distributed as dist

    import aelab
    from aelab.distributed import current, process_group

    torch.set_num_threads(int(os.environ["AELAB_THREADS"]))
    X = aelab.io.open_array(path) if stream else np.load(path, mmap_mode="r")
    with process_group() as comm:
        est = aelab.Autoencoder(**params)
        t0 = time.perf_counter()
        est.fit(X)
        fit_s = time.perf_counter() - t0
        n_params = sum(p.numel() for p in est.model_.parameters())
        allreduce_s = 0.0
        if comm.parallel:
            buf = torch.zeros(n_params)
            for _ in range(20):
                dist.all_reduce(buf)
            t0 = time.perf_counter()
            for _ in range(200):
                dist.all_reduce(buf)
            allreduce_s = (time.perf_counter() - t0) / 200
        n_train = len(X) * (1 - params.get("validation_fraction", 0.1))
        epochs = len(est.history_["loss"])
        steps = epochs * np.ceil(n_train / current().world / params["batch_size"])
        return {"rank": comm.rank, "fit_s": fit_s, "rows_per_s": n_train * epochs / fit_s, "epochs": epochs,
                "params": n_params, "allreduce_ms": 1e3 * allreduce_s,
                "allreduce_share": allreduce_s * steps / fit_s, "peak_rss_mb": rss_mb("VmHWM"),
                "final_loss": est.history_["loss"][-1]}


def compare(name: str, path: str, epochs: int, extra: dict, global_batch: int) -> dict:
    from aelab.distributed import launch

    out = {"global_batch": global_batch}
    for label, nproc, threads, batch in (("1 process x 2 threads", 1, 2, global_batch),
                                         ("2 processes x 1 thread", 2, 1, global_batch // 2)):
        params = {"epochs": epochs, "batch_size": batch, "random_state": 0, "early_stopping": False, **extra}
        ranks = launch(nproc, worker, (path, params, False), threads=threads)
        r0 = ranks[0]
        out[label] = {"nproc": nproc, "threads": threads, "batch_per_rank": batch, "rows_per_s": r0["rows_per_s"],
                      "fit_s": r0["fit_s"], "allreduce_ms": r0["allreduce_ms"],
                      "allreduce_share": r0["allreduce_share"], "final_loss": r0["final_loss"],
                      "peak_rss_mb": [ranks[r]["peak_rss_mb"] for r in sorted(ranks)], "params": r0["params"]}
        print(f"{name:9s} batch {global_batch:5d} {label:24s} {r0['rows_per_s']:10.0f} rows/s  all-reduce {r0['allreduce_ms']:.3f} ms "
              f"({100 * r0['allreduce_share']:.1f}% of the fit)  loss {r0['final_loss']:.4g}", flush=True)
    a, b = out["1 process x 2 threads"], out["2 processes x 1 thread"]
    out["ratio_2x1_over_1x2"] = b["rows_per_s"] / a["rows_per_s"]
    print(f"{name:9s} batch {global_batch:5d} 2x1 / 1x2 = {out['ratio_2x1_over_1x2']:.2f}", flush=True)
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=200_000, help="collider-shaped rows in memory (default 200,000)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--stream-rows", type=int, default=5_300_000, help="rows of the streamed file (1.2 GB)")
    ap.add_argument("--batches", type=int, nargs="+", default=[64, 1024],
                    help="global batches compared (default: 64, aelab's auto batch for large sets, and 1024, "
                         "the trigger recipe's)")
    ap.add_argument("--skip-stream", action="store_true",
                    help="skip the 1.2 GB streamed fit (its last result in distributed.json is kept)")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args(argv)
    import torch

    import aelab
    from aelab.distributed import launch

    work = Path(args.workdir or tempfile.mkdtemp(prefix="aelab-dist-"))
    work.mkdir(parents=True, exist_ok=True)
    results = {"cpu_count": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
               "aelab": aelab.__version__, "datasets": {}}
    collider = work / "collider.npy"
    make_data(collider, args.rows, 57)
    for b in args.batches:
        results["datasets"][f"collider, batch {b}"] = {"rows": args.rows, "features": 57,
                                                       **compare("collider", str(collider), args.epochs, {}, b)}
    mnist_dir = REPO.parent / "shared" / "data" / "mnist_idx"
    if mnist_dir.is_dir():
        X, _ = aelab.datasets.load_mnist("train", data_dir=str(mnist_dir), download=False)
    else:
        X, _ = aelab.datasets.load_mnist("sample")
    np.save(work / "mnist.npy", X)
    for b in args.batches:
        results["datasets"][f"mnist, batch {b}"] = {"rows": len(X), "shape": list(X.shape[1:]),
                                                    **compare("mnist", str(work / "mnist.npy"), args.epochs, {}, b)}
    previous = RESULTS / "distributed.json"
    if args.skip_stream and previous.exists() and "stream_2_ranks" in json.loads(previous.read_text()):
        results["stream_2_ranks"] = json.loads(previous.read_text())["stream_2_ranks"]
    if not args.skip_stream:
        big = work / "stream.npy"
        if not big.exists():
            make_data(big, args.stream_rows, 57)
        params = {"epochs": 1, "batch_size": 256, "random_state": 0, "early_stopping": False,
                  "validation_fraction": 0.0}
        ranks = launch(2, worker, (str(big), params, True), threads=1)
        results["stream_2_ranks"] = {"rows": args.stream_rows, "file_mb": big.stat().st_size / 2**20,
                                     "batch_per_rank": 256, "fit_s": ranks[0]["fit_s"],
                                     "rows_per_s": ranks[0]["rows_per_s"],
                                     "peak_rss_mb": [ranks[r]["peak_rss_mb"] for r in sorted(ranks)]}
        print(f"streamed  2 ranks on {results['stream_2_ranks']['file_mb']:.0f} MB: peak RSS per rank "
              f"{results['stream_2_ranks']['peak_rss_mb']} MB, {ranks[0]['rows_per_s']:.0f} rows/s", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "distributed.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = ["| data, global batch | layout | batch per rank | rows/s | all-reduce per step | share of fit "
             "| peak RSS per rank (MB) |", "|---|---|---|---|---|---|---|"]
    for name, d in results["datasets"].items():
        for label in ("1 process x 2 threads", "2 processes x 1 thread"):
            r = d[label]
            lines.append(f"| {name} | {label} | {r['batch_per_rank']} | {r['rows_per_s']:,.0f} | "
                         f"{r['allreduce_ms']:.3f} ms | {100 * r['allreduce_share']:.1f}% | "
                         f"{', '.join(f'{m:.0f}' for m in r['peak_rss_mb'])} |")
        lines.append(f"| {name} | **2x1 / 1x2** | | **{d['ratio_2x1_over_1x2']:.2f}x** | | | |")
    if "stream_2_ranks" in results:
        s = results["stream_2_ranks"]
        lines.append(f"| streamed {s['file_mb']:.0f} MB file | 2 processes x 1 thread | 256 | {s['rows_per_s']:,.0f} | "
                     f"| | {', '.join(f'{m:.0f}' for m in s['peak_rss_mb'])} |")
    (RESULTS / "distributed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return results


if __name__ == "__main__":
    main()
