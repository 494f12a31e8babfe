"""What the neighbour term of the table defaults costs: scoring time and peak memory on a large table.

Fits an Autoencoder (1 epoch: the network's quality does not matter here) on N training
rows of a 10-column table, then scores M rows, once with the table default
("mse+latent+knn", k = 50 over at most 4,096 reference rows) and once with the score
without the neighbour term ("mse+latent"), each in a fresh process; reports the seconds
and the peak resident memory of each and their ratio.

    python benchmarks/knn_cost.py --train 200000 --score 1000000

Writes benchmarks/results/knn_cost.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
import aelab
n_train, n_score, score = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rng = np.random.default_rng(0)
W = rng.normal(size=(4, 10))
X = (rng.normal(size=(n_train, 4)) @ W + 0.1 * rng.normal(size=(n_train, 10))).astype(np.float32)
t = time.perf_counter()
est = aelab.Autoencoder(epochs=1, batch_size=1024, anomaly_score=score, random_state=0).fit(X)
fit_s = time.perf_counter() - t
del X
Y = (rng.normal(size=(n_score, 4)) @ W + 0.1 * rng.normal(size=(n_score, 10))).astype(np.float32)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
s = est.decision_function(Y)
score_s = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"score": score, "fit_s": fit_s, "score_s": score_s, "rows_per_s": n_score / score_s,
                  "peak_rss_mb": peak / 1024, "scoring_growth_mb": (peak - base) / 1024,
                  "threads": torch.get_num_threads()}))
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=200_000)
    ap.add_argument("--score", type=int, default=1_000_000)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "knn_cost.json"))
    args = ap.parse_args(argv)
    rows = {}
    for score in ("mse+latent", "mse+latent+knn"):
        out = subprocess.run([sys.executable, "-c", CHILD, str(args.train), str(args.score), score],
                             capture_output=True, text=True, check=True).stdout
        rows[score] = json.loads(out.strip().splitlines()[-1])
        print(rows[score], flush=True)
    ratio = {"score_time": rows["mse+latent+knn"]["score_s"] / rows["mse+latent"]["score_s"],
             "peak_rss": rows["mse+latent+knn"]["peak_rss_mb"] / rows["mse+latent"]["peak_rss_mb"]}
    print(f"neighbour term: scoring {ratio['score_time']:.1f}x the time, peak memory {ratio['peak_rss']:.2f}x")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "results": rows, "ratio": ratio}, indent=2))


if __name__ == "__main__":
    main()
