"""Scoring speed of every score of a dense model on large tables, against the rate of its cheapest fitted score.

For tables of 10 and 57 columns (rows from a 4-factor Gaussian model plus noise), fits an
Autoencoder on --train rows (1 epoch: the network's quality does not matter here), with the
table default (``knn``, 8 bags of 16 rows: may be contaminated) and with ``novelty=True`` (``knn+isolation``),
then scores --score rows with every score the model offers, each in a fresh process:

* engines ``torch`` (``decision_function``) and ``onnxruntime`` (the exported ONNX graph,
  the same head module), each at 1 and 2 threads;
* ``2 ranks``: ``aelab score MODEL DATA.npy --nproc 2`` against ``--nproc 1`` on the same
  file, whole command, file reading and writing included (2 threads in all);
* the rows per second (the fastest of --repeats passes), the peak resident memory of the scoring process, and the rate of
  each score over the rate of ``mse+latent`` in the same configuration (the network plus the
  code's Mahalanobis distance: the rate a score without neighbours reaches);
* ``torch.mm``'s GFLOP/s (2048 x 2048) at the same thread counts, measured in the same run, so
  two runs on different machines can be compared.

Run with nothing else running:

    python benchmarks/score_speed.py [--train 200000] [--score 1000000] [--widths 10 57]

Writes benchmarks/results/score_speed.json and score_speed.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SCORES = ["mse", "mae", "relative", "latent", "mse+latent", "relative+latent", "knn", "mse+latent+knn"]
CLEAN_SCORES = ["knn", "mse+knn", "isolation", "knn+isolation"]  # the novelty=True model: 4,096 rows, k = 5, a forest

DATA = r"""
import numpy as np
def table(n, d, seed):
    rng = np.random.default_rng(seed)
    W = np.random.default_rng(0).normal(size=(4, d))
    return (rng.normal(size=(n, 4)) @ W + 0.1 * rng.normal(size=(n, d))).astype(np.float32)
"""

FIT = DATA + r"""
import sys, aelab
n, d, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
X = table(n, d, 1)
aelab.Autoencoder(epochs=1, batch_size=1024, random_state=0).fit(X).save(out + "/default")
aelab.Autoencoder(epochs=1, batch_size=1024, random_state=0, novelty=True).fit(X).save(out + "/clean")
np.save(out + "/score.npy", table(int(sys.argv[4]), d, 2))
"""

SCORE = r"""
import json, resource, sys, time
import numpy as np, torch
import aelab
from aelab.export.onnx import onnx_scores
model, data, score, engine, threads, repeats = sys.argv[1:7]
torch.set_num_threads(int(threads))
est = aelab.load(model)
Y = np.load(data)
run = (lambda X: est.decision_function(X, score=score)) if engine == "torch" else (
    lambda X: onnx_scores(est.fitted_, X, score))
run(Y[:8192])  # warm-up (and the ONNX export, for onnxruntime)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
sec = float("inf")
for _ in range(int(repeats)):  # the fastest of a few passes: the least disturbed by other processes
    t = time.perf_counter()
    s = run(Y)
    sec = min(sec, time.perf_counter() - t)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
assert s.shape == (len(Y),) and np.isfinite(s).all()
print(json.dumps({"seconds": sec, "rows_per_s": len(Y) / sec, "peak_rss_mb": peak / 1024,
                  "growth_mb": (peak - base) / 1024}))
"""

MM = r"""
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
torch.mm(a, b)
best = min((lambda t: (torch.mm(a, b), time.perf_counter() - t)[1])(time.perf_counter()) for _ in range(10))
print(json.dumps({"gflops": 2 * 2048 ** 3 / best / 1e9}))
"""


def child(code: str, *args) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1]) if out.stdout.strip() else {}


def ranks(model: Path, data: Path, score: str, nproc: int, tmp: Path) -> float:
    """Seconds of the whole `aelab score --nproc` command (2 threads in all)."""
    out = tmp / f"s-{nproc}.npy"
    cmd = [sys.executable, "-m", "aelab", "score", str(model), str(data), "--score", score, "--out", str(out),
           "--nproc", str(nproc), "--threads", str(2 // nproc), "--quiet"]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    sec = time.perf_counter() - t
    out.unlink()
    return sec


def table_md(res: dict) -> str:
    lines = [f"{res['machine']}; {res['args']['score']:,} rows scored, models fitted on {res['args']['train']:,}; "
             "rate = rows/s, x = rate / rate of mse+latent in the same configuration", ""]
    for d, per in res["widths"].items():
        cfgs = list(per["runs"])
        lines += [f"### {d} columns (torch.mm: " + ", ".join(f"{t} thread(s) {g:.0f} GFLOP/s" for t, g in
                                                     per["mm_gflops"].items()) + ")", "",
                  "| score | " + " | ".join(cfgs) + " |", "|---|" + "---|" * len(cfgs)]
        for s in per["runs"][cfgs[0]]:
            cells = []
            for c in cfgs:
                r = per["runs"][c].get(s)
                cells.append("" if r is None else f"{r['rows_per_s']:,.0f} ({r['vs_mse_latent']:.2f}x, "
                             f"{r['peak_rss_mb']:.0f} MB)")
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
        rk = per["ranks"]
        lines += ["", "`aelab score --nproc` (whole command, 2 threads in all): " + "; ".join(
            f"{s}: 1 rank {v['1']:.2f} s, 2 ranks {v['2']:.2f} s" for s, v in rk.items()), ""]
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=200_000)
    ap.add_argument("--score", type=int, default=1_000_000)
    ap.add_argument("--widths", type=int, nargs="+", default=[10, 57])
    ap.add_argument("--engines", nargs="+", default=["torch", "onnxruntime"])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3, help="passes per score; the fastest counts")
    ap.add_argument("--out", default=str(RESULTS / "score_speed.json"))
    args = ap.parse_args(argv)
    res = {"args": vars(args), "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "widths": {}}
    for d in args.widths:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            child(FIT, args.train, d, tmp, args.score)
            per = {"mm_gflops": {t: child(MM, t)["gflops"] for t in args.threads}, "runs": {}, "ranks": {}}
            for engine in args.engines:
                for t in args.threads:
                    cfg = f"{engine}, {t} thread(s)"
                    runs = per["runs"].setdefault(cfg, {})
                    for model, scores in (("default", SCORES), ("clean", CLEAN_SCORES)):
                        for s in scores:
                            label = s if model == "default" else f"{s} (novelty=True)"
                            runs[label] = child(SCORE, tmp / model, tmp / "score.npy", s, engine, t, args.repeats)
                            print(d, cfg, label, {k: round(v, 3) for k, v in runs[label].items()}, flush=True)
                    ref = runs["mse+latent"]["rows_per_s"]
                    for r in runs.values():
                        r["vs_mse_latent"] = r["rows_per_s"] / ref
            for s in ("mse+latent", "knn"):
                per["ranks"][s] = {str(p): ranks(tmp / "default", tmp / "score.npy", s, p, tmp) for p in (1, 2)}
                print(d, "ranks", s, per["ranks"][s], flush=True)
        res["widths"][str(d)] = per
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    md = table_md(res)
    out.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
