"""Deployment speed: the whole anomaly score in torch eager against ONNX Runtime fp32 and int8.

Two models, in one process, every engine on the same number of CPU threads
(``torch.set_num_threads`` and ONNX Runtime's ``intra_op_num_threads`` equal):

* dense: an Autoencoder on 57-feature collider-shaped rows (low-rank Gaussian events plus
  noise, as benchmarks/streaming.py makes them), its table default score "mse+latent+knn"
  (k = 50 neighbours among 4,096 reference rows); anomalies for the int8 cost: events with
  five times the noise (0.5 instead of 0.1 off the events' 8-dimensional subspace);
* conv: the convolutional Autoencoder (arch="conv", channels (32, 64)) on the 5,000 MNIST
  digits that ship with aelab (``load_mnist(split="sample")``), trained on 2,000 of them
  (every digit but 7) for 2 epochs, score "relative+latent"; anomalies: the held-out 7s.

Engines: "torch eager" is ``est.decision_function`` (what the torch engine runs: input checks,
scaling in numpy, the network and the score); "torch graph" the same module that is exported
(:class:`aelab.export.onnx.ScoreGraph`) called in eager mode, without aelab's input checks;
"ORT fp32" and "ORT int8" the exported file (int8: dynamic for the dense model, static with
1,000 normal calibration rows for the conv one). Batch 4096: rows per second over all test
rows; batch 1: the median latency of single-row calls (rows/s = 1 / latency).

    python benchmarks/deploy.py [--threads 1]

Writes benchmarks/results/deploy.json and deploy.md.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import aelab
from aelab.export.onnx import ScoreGraph, export_onnx, int8_cost, onnx_session, quantize_int8

RESULTS = Path(__file__).parent / "results"


def collider(rows: int, rng, mixing) -> np.ndarray:
    """benchmarks/streaming.py's events: an 8-dimensional Gaussian signal mixed into 57 features, plus noise."""
    signal = rng.standard_normal((rows, 8), np.float32) @ mixing
    return signal + 0.1 * rng.standard_normal((rows, mixing.shape[1]), np.float32)


def timed(fn, X: np.ndarray, single: int) -> dict:
    """Rows/s at batches of 4096 over X (the best of 3 passes); median seconds of ``single`` one-row calls."""
    fn(X[:4096])  # warm-up
    best = math.inf
    for _ in range(3):
        t = time.perf_counter()
        for i in range(0, len(X), 4096):
            fn(X[i : i + 4096])
        best = min(best, time.perf_counter() - t)
    rate = len(X) / best
    for i in range(20):
        fn(X[i : i + 1])
    lat = []
    for i in range(single):
        t = time.perf_counter()
        fn(X[i : i + 1])
        lat.append(time.perf_counter() - t)
    lat = float(np.median(lat))
    return {"batch4096_rows_per_s": rate, "batch1_us_per_row": lat * 1e6, "batch1_rows_per_s": 1 / lat}


def measure(name: str, est, X_test, y_test, calibration, tmp: Path, single: int) -> dict:
    f32 = export_onnx(est, tmp / f"{name}.onnx")
    i8 = quantize_int8(f32, tmp / f"{name}-int8.onnx", calibration=calibration)
    graph = ScoreGraph(est.fitted_).eval()
    engines = {"torch eager": est.decision_function}

    @torch.no_grad()
    def torch_graph(x):
        return graph(torch.from_numpy(x)).numpy()

    engines["torch graph"] = torch_graph
    for label, path in (("ORT fp32", f32), ("ORT int8", i8)):
        session = onnx_session(path)
        engines[label] = lambda x, s=session: s.run(None, {"input": x})[0]
    X_test = np.ascontiguousarray(X_test, dtype=np.float32)
    speed = {k: timed(fn, X_test, single) for k, fn in engines.items()}
    cost = int8_cost(f32, i8, X_test, y_test)
    ref = est.decision_function(X_test)
    parity = float(np.max(np.abs(engines["ORT fp32"](X_test) - ref) / np.abs(ref)))
    out = {"score": est.score_, "rows": len(X_test), "speed": speed, "int8": cost, "ort_fp32_max_rel_diff": parity,
           "batch1_speedup_ort_vs_torch_eager": speed["torch eager"]["batch1_us_per_row"]
           / speed["ORT fp32"]["batch1_us_per_row"],
           "batch1_speedup_ort_vs_torch_graph": speed["torch graph"]["batch1_us_per_row"]
           / speed["ORT fp32"]["batch1_us_per_row"]}
    print(name, json.dumps(out, indent=1, default=str), flush=True)
    return out


def markdown(res: dict) -> str:
    lines = [f"# Deployment speed (benchmarks/deploy.py)\n",
             f"{res['threads']} threads for every engine (torch and ONNX Runtime intra-op), {res['cpu']}; "
             f"torch {res['torch']}, onnxruntime {res['onnxruntime']}.\n",
             "| model | engine | batch 4096 rows/s | batch 1 us/row | batch 1 rows/s |", "|---|---|---:|---:|---:|"]
    for name, r in res["models"].items():
        for eng, s in r["speed"].items():
            lines.append(f"| {name} ({r['score']}) | {eng} | {s['batch4096_rows_per_s']:,.0f} | "
                         f"{s['batch1_us_per_row']:.1f} | {s['batch1_rows_per_s']:,.0f} |")
    lines += ["", "| model | ORT fp32 vs torch: max rel diff | batch 1: ORT faster than torch eager / torch graph | "
              "int8: AUROC float -> int8 | TPR@1e-3 float -> int8 | TPR@1e-4 float -> int8 | size float -> int8 |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in res["models"].items():
        c = r["int8"]

        def pair(key):
            a, b = c[f"float_{key}"], c[f"int8_{key}"]
            return f"{a:.4f} -> {b:.4f}" if isinstance(a, float) else a

        lines.append(f"| {name} | {r['ort_fp32_max_rel_diff']:.1e} | {r['batch1_speedup_ort_vs_torch_eager']:.1f}x / "
                     f"{r['batch1_speedup_ort_vs_torch_graph']:.1f}x | {pair('auroc')} | {pair('tpr_at_fpr_0.001')} | "
                     f"{pair('tpr_at_fpr_0.0001')} | {c['float_bytes'] / 1024:,.0f} -> "
                     f"{c['int8_bytes'] / 1024:,.0f} KiB |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1,
                    help="threads of every engine (1: on a shared 2-core machine more oversubscribe the cores)")
    ap.add_argument("--train", type=int, default=10_000, help="training rows of the dense model")
    ap.add_argument("--test", type=int, default=10_000, help="normal test rows of the dense model (and 2%% anomalies)")
    ap.add_argument("--single", type=int, default=300, help="one-row calls timed at batch 1")
    ap.add_argument("--out", default=str(RESULTS / "deploy.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    import onnxruntime

    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(8, 57)).astype(np.float32)
    X = collider(args.train, rng, mixing)
    normal, n_anom = collider(args.test, rng, mixing), args.test // 50
    anomalies = collider(n_anom, rng, mixing) + 0.5 * rng.standard_normal((n_anom, 57), np.float32)
    X_test, y_test = np.concatenate([normal, anomalies]), np.r_[np.zeros(args.test), np.ones(n_anom)].astype(int)
    models = {}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        dense = aelab.Autoencoder(epochs=3, random_state=0).fit(X)
        print(f"dense fit {time.perf_counter() - t:.1f} s", flush=True)
        models["dense 57 features"] = measure("dense", dense, X_test, y_test, None, Path(tmp), args.single)

        D, digit = aelab.datasets.load_mnist(split="sample")
        idx = np.random.default_rng(0).permutation(len(D))
        train, test = idx[:2000], idx[2000:]
        train = train[digit[train] != 7]
        t = time.perf_counter()
        conv = aelab.Autoencoder(arch="conv", epochs=2, random_state=0).fit(D[train])
        print(f"conv fit {time.perf_counter() - t:.1f} s", flush=True)
        models["MNIST conv"] = measure("conv", conv, D[test], (digit[test] == 7).astype(int), D[train[:1000]],
                                       Path(tmp), args.single)
    res = {"threads": args.threads, "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
           "onnxruntime": onnxruntime.__version__, "aelab": aelab.__version__, "args": vars(args), "models": models}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, default=str))
    out.with_suffix(".md").write_text(markdown(res))
    print(markdown(res))
    return res


if __name__ == "__main__":
    main()
