"""Do the explanations name the planted features? Hit rates and time per 1,000 rows of est.explain.

Three cases with planted anomalies, each explained by raw per-feature reconstruction error
(``feature_errors``), ``method="error"`` and ``method="shapley"``:

(a) correlated tables of 57 features, two designs: 19 triplets (a, b, c = (a + b) / sqrt 2),
    where moving a or b by 3 sd breaks the relation and the reconstruction puts most of the error
    on the hub c (Takeishi's case); and 6 latent factors plus noise, where one or two features
    move off the factors' plane while staying within their usual range;
(b) a real table (ODDS/ADBench cardio, 21 features; --real for another ``.npz``): held-out normal
    rows with one or two random features shifted by 3 standard deviations;
(c) MNIST digits with a 6 x 6 white patch pasted at a random place (a 28 x 28 dense autoencoder
    trained on the 5,000 bundled digits; Shapley values per 4 x 4 patch).

Hit rate: the share of the planted features (pixels) found among each row's top-k attributions,
k = the number planted (a precision at k), and the share of rows whose top attribution is a
planted one. Time: seconds per 1,000 rows of explain() itself, for the 57-feature table.

    python benchmarks/explain.py [--rows 1000] [--data ../shared/data]

Writes benchmarks/results/explain.json and explain.md. PyOD has no explanation for these
models (its explain_outlier covers KNN/LOF), and is not installed here, so it is not compared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

import aelab
from aelab.defaults import N_PERMUTATIONS
from aelab.explain import NEAREST_IMAGES

HERE = Path(__file__).parent


def hits(attr: np.ndarray, planted: list[np.ndarray]) -> tuple[float, float]:
    """(mean precision at k = |planted|, share of rows whose top attribution is planted)."""
    flat = attr.reshape(len(attr), -1)
    prec, top1 = [], []
    for a, p in zip(flat, planted):
        order = np.argsort(-a, kind="stable")
        prec.append(np.isin(order[: len(p)], p).mean())
        top1.append(order[0] in p)
    return float(np.mean(prec)), float(np.mean(top1))


def run_methods(est, Xa, planted, perms: int, background=None, patch="auto") -> dict:
    """Each method's (precision at k, top-1, wall seconds, CPU seconds of this process)."""
    out = {}
    clock = time.process_time
    t, c = time.perf_counter(), clock()
    raw = est.feature_errors(Xa)
    out["raw error"] = (*hits(raw, planted), time.perf_counter() - t, clock() - c)
    t, c = time.perf_counter(), clock()
    e = est.explain(Xa, method="error")
    out["error"] = (*hits(e.contributions, planted), time.perf_counter() - t, clock() - c)
    table = not est.fitted_.layout.image
    # the defaults (nearest="auto": all background rows for tables, 20 nearest for images), the other
    # background, interventional values for tables, and Shapley values of the mse score alone: the score
    # that raw per-feature error decomposes, so the like-for-like comparison of the two methods
    runs = [("auto", "auto", None), (20 if table else None, "auto", None)]
    runs += [("auto", "independent", None)] if table else []
    runs += [("auto", "auto", "mse")] if est.fitted_.score != "mse" else []
    for nearest, dependence, score in runs:
        t, c = time.perf_counter(), clock()
        s = est.explain(Xa, method="shapley", background=background, n_permutations=perms, patch=patch,
                        nearest=nearest, dependence=dependence, score=score)
        dt, dc = time.perf_counter() - t, clock() - c
        assert np.allclose(s.base_value + s.flat.sum(1), s.score, rtol=1e-6)  # efficiency, checked
        where = ("" if nearest == "auto" else ", all background rows" if nearest is None else f", {nearest} nearest")
        if nearest == "auto" and not table:
            where = f", {NEAREST_IMAGES} nearest (default)"
        name = f"shapley{' of mse' if score else ''}{where} ({s.algorithm})"
        out[name] = (*hits(s.contributions, planted), dt, dc)
    return {k: {"precision_at_k": v[0], "top1": v[1], "seconds": v[2], "s_per_1000_rows": 1000 * v[2] / len(Xa),
                "cpu_s_per_1000_rows": 1000 * v[3] / len(Xa)} for k, v in out.items()}


def _triplets(rng, n, t=19):
    """57 features in 19 triplets (a, b, c = (a + b) / sqrt 2 + noise sd 0.1), a and b independent N(0, 1)."""
    a, b = rng.normal(size=(2, n, t))
    c = (a + b) / np.sqrt(2) + 0.1 * rng.normal(size=(n, t))
    return np.stack([a, b, c], axis=2).reshape(n, 3 * t)


def correlated(rows: int, perms: int, design: str, seed: int = 0) -> dict:
    """(a) "triplets": one or two of the a/b features of random triplets moved by 3 sd, which breaks
    c = (a + b) / sqrt 2 (the reconstruction puts most of the error on c, the hub);
    "factors": 57 features from 6 latent factors plus noise (sd 0.3); one or two features moved by
    1.8 (6 noise sds, under one marginal sd of about 2.5), off the factors' plane."""
    rng = np.random.default_rng(seed)
    d = 57
    if design == "triplets":
        X, Xa = _triplets(rng, 4000), _triplets(rng, rows)
        rank = 38
    else:
        rank = 6
        W = rng.normal(size=(rank, d))
        X = rng.normal(size=(4000, rank)) @ W + 0.3 * rng.normal(size=(4000, d))
        Xa = rng.normal(size=(rows, rank)) @ W + 0.3 * rng.normal(size=(rows, d))
    planted = []
    for i in range(rows):
        m = int(rng.integers(1, 3))
        if design == "triplets":
            p = 3 * rng.choice(d // 3, m, replace=False) + rng.integers(0, 2, size=m)
            Xa[i, p] += rng.choice([-1, 1], m) * 3.0
        else:
            p = rng.choice(d, m, replace=False)
            Xa[i, p] += rng.choice([-1, 1], m) * 1.8
        planted.append(p)
    X, Xa = X.astype(np.float32), Xa.astype(np.float32)
    res = {}
    for name, est in [("Autoencoder", aelab.Autoencoder(random_state=0, epochs=30)),
                      (f"PCA({rank})", aelab.PCA(n_components=rank, anomaly_score="mse"))]:
        est.fit(X)
        bg = None if est.fitted_.knn_ref is not None else X[:1000]
        res[name] = {"score": est.score_, **run_methods(est, Xa, planted, perms, background=bg)}
        print(design, name, json.dumps(res[name]), flush=True)
    return res


def real(path: Path, rows: int, perms: int, seed: int = 0) -> dict:
    d = np.load(path)
    X, y = d["X"].astype(np.float64), d["y"].ravel()
    rng = np.random.default_rng(seed)
    normal = rng.permutation(np.flatnonzero(y == 0))
    train, test = normal[: int(0.7 * len(normal))], normal[int(0.7 * len(normal)):][:rows]
    Xt, Xa = X[train].astype(np.float32), X[test].copy()
    sd = Xt.std(axis=0) + 1e-12
    planted = []
    for i in range(len(Xa)):
        m = int(rng.integers(1, 3))
        p = rng.choice(X.shape[1], m, replace=False)
        Xa[i, p] += rng.choice([-1, 1], m) * 3 * sd[p]
        planted.append(p)
    est = aelab.Autoencoder(random_state=0).fit(Xt)
    res = {"data": path.name, "rows": int(len(Xa)), "features": int(X.shape[1]), "score": est.score_,
           **run_methods(est, Xa.astype(np.float32), planted, perms)}
    print(path.name, json.dumps(res), flush=True)
    return res


def mnist(rows: int, perms: int, seed: int = 0) -> dict:
    from aelab.datasets import load_mnist

    X, _ = load_mnist()
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(X))
    train, test = X[idx[:4000]], X[idx[4000:4000 + rows]].copy()
    planted = []
    for i in range(len(test)):
        r, c = rng.integers(0, 22, size=2)
        test[i, r : r + 6, c : c + 6] = 255
        rr, cc = np.meshgrid(np.arange(r, r + 6), np.arange(c, c + 6), indexing="ij")
        planted.append((rr * 28 + cc).ravel())
    est = aelab.Autoencoder(latent_dim=16, epochs=10, random_state=0).fit(train)
    res = {"rows": int(len(test)), "score": est.score_,
           **run_methods(est, test, planted, perms, background=train[:200], patch=4)}
    print("mnist", json.dumps(res), flush=True)
    return res


def markdown(res: dict) -> str:
    lines = ["# est.explain: do the attributions name the planted features?", "",
             f"{res['machine']}, at the end {res['load_average_at_end']:.1f}. {res['note']}", "",
             "Precision at k: the share of the planted features among each row's k largest attributions "
             "(k = number planted); top-1: rows whose largest attribution is planted; "
             "s/1000: wall seconds per 1,000 rows of that explanation; CPU s/1000: CPU seconds of the process "
             "(all threads) per 1,000 rows, less sensitive to other jobs: on an idle machine wall time is about "
             "CPU time / threads.", ""]

    def table(title, block):
        lines.extend([f"### {title}", "", "| model | method | precision at k | top-1 | s / 1000 rows | CPU s / 1000 |",
                      "|---|---|---|---|---|---|"])
        for model, r in block.items():
            for m, v in r.items():
                if isinstance(v, dict):
                    lines.append(f"| {model} ({r['score']}) | {m} | {v['precision_at_k']:.3f} | {v['top1']:.3f} | "
                                 f"{v['s_per_1000_rows']:.1f} | {v['cpu_s_per_1000_rows']:.1f} |")
        lines.append("")

    table(f"(a) correlated tables: 19 triplets c = (a + b) / sqrt 2, 57 features, {res['rows']} rows; a or b "
          "of 1-2 triplets moved by 3 sd", res["correlated"])
    table(f"(a2) correlated tables: 6 factors, 57 features, {res['factor_rows']} rows; 1-2 features moved off "
          "the factors' plane", res["factors"])
    table(f"(b) real table ({res['real']['data']}, {res['real']['features']} features), known features "
          "shifted by 3 sd", {"Autoencoder": res["real"]})
    table("(c) MNIST digits with a pasted 6x6 patch", {"Autoencoder": res["mnist"]})
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1000, help="anomalous rows of the 57-feature table")
    ap.add_argument("--factor-rows", type=int, default=300)
    ap.add_argument("--real-rows", type=int, default=300)
    ap.add_argument("--mnist-rows", type=int, default=100)
    ap.add_argument("--permutations", type=int, default=N_PERMUTATIONS)
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--real", default="adbench_classical/6_cardio.npz")
    ap.add_argument("--out", default=str(HERE / "results" / "explain.json"))
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    res = {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
                      f"load average at the start {os.getloadavg()[0]:.1f}",
           "note": "Timings with nothing else running on the 2-core machine (load average above).",
           "rows": args.rows, "permutations": args.permutations}
    res["correlated"] = correlated(args.rows, args.permutations, "triplets")
    res["factor_rows"] = args.factor_rows
    res["factors"] = correlated(args.factor_rows, args.permutations, "factors")
    res["real"] = real(Path(args.data) / args.real, args.real_rows, args.permutations)
    res["mnist"] = mnist(args.mnist_rows, args.permutations)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    res["load_average_at_end"] = os.getloadavg()[0]
    out.write_text(json.dumps(res, indent=2))
    out.with_suffix(".md").write_text(markdown(res) + "\n")
    print(markdown(res))


if __name__ == "__main__":
    main()
