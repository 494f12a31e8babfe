"""Anomaly-detection benchmark: aelab's defaults against scikit-learn and PyOD, same run.

(a) One-class MNIST, the Deep SVDD protocol (Ruff et al. 2018): for each digit c, train
    on the class-c images of the official training split only, test on the whole official
    test split (c normal, the nine other digits anomalous); ROC AUC per class and mean.
(b) The 17 ODDS tables of PyOD's benchmark: 60/40 random split, standard scaler fitted
    on the training part, fit on the (contaminated) training part, ROC AUC on the test
    part, averaged over 10 splits.

Every model runs with its default settings; fit-plus-score seconds are reported beside
every AUC. PyOD is a benchmark-only dependency (pip install 'aelab[bench]').

    python benchmarks/anomaly.py --part mnist --mnist-dir ../shared/data/mnist_idx
    python benchmarks/anomaly.py --part odds --odds-dir ../shared/data/odds_mat

Writes benchmarks/results/anomaly_<part>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np

import aelab
from aelab.metrics import roc_auc

ODDS17 = ["arrhythmia", "cardio", "glass", "ionosphere", "letter", "lympho", "mnist", "musk", "optdigits",
          "pendigits", "pima", "satellite", "satimage-2", "shuttle", "vertebral", "vowels", "wbc"]


def _pyod(name):
    def make(seed):
        if name == "PyOD-AE":
            from pyod.models.auto_encoder import AutoEncoder

            return AutoEncoder(random_state=seed, verbose=0)
        if name == "PyOD-VAE":
            from pyod.models.vae import VAE

            return VAE(random_state=seed, verbose=0)
        from pyod.models.pca import PCA

        return PCA(random_state=seed)
    return make


def _sk(name):
    def make(seed):
        from sklearn.ensemble import IsolationForest
        from sklearn.neighbors import LocalOutlierFactor
        from sklearn.svm import OneClassSVM

        return {"IForest": lambda: IsolationForest(random_state=seed),
                "OCSVM": lambda: OneClassSVM(),
                "LOF": lambda: LocalOutlierFactor(novelty=True)}[name]()
    return make


MODELS = {
    "aelab-AE": lambda seed: aelab.Autoencoder(random_state=seed),
    "aelab-VAE": lambda seed: aelab.VAE(random_state=seed),
    "aelab-PCA": lambda seed: aelab.PCA(random_state=seed),
    "IForest": _sk("IForest"), "OCSVM": _sk("OCSVM"), "LOF": _sk("LOF"),
    "PyOD-AE": _pyod("PyOD-AE"), "PyOD-VAE": _pyod("PyOD-VAE"), "PyOD-PCA": _pyod("PyOD-PCA"),
}


def fit_score(name: str, seed: int, X_train, X_test) -> tuple[np.ndarray, float]:
    """Fit a fresh default model and return (test scores, higher = more anomalous), seconds."""
    t = time.perf_counter()
    model = MODELS[name](seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name.startswith("aelab"):
            model.fit(X_train)
            s = model.decision_function(X_test)
        else:
            Xtr = X_train.reshape(len(X_train), -1)
            Xte = X_test.reshape(len(X_test), -1)
            model.fit(Xtr)
            s = model.decision_function(Xte)
            if name in ("IForest", "OCSVM", "LOF"):
                s = -s  # scikit-learn: higher = more normal
    return np.asarray(s, dtype=np.float64), time.perf_counter() - t


def run_mnist(args) -> dict:
    Xtr, ytr = aelab.datasets.load_mnist("train", data_dir=args.mnist_dir, download=False)
    Xte, yte = aelab.datasets.load_mnist("test", data_dir=args.mnist_dir, download=False)
    res = {}
    for c in args.digits:
        train = Xtr[ytr == c][: args.max_train]
        y = (yte != c).astype(int)
        flat_tr, flat_te = train.reshape(len(train), -1) / 255.0, Xte.reshape(len(Xte), -1) / 255.0
        for name in args.models:
            a, b = (train, Xte) if name.startswith("aelab") else (flat_tr, flat_te)
            s, sec = fit_score(name, args.seed, a, b)
            res.setdefault(name, {})[str(c)] = {"auc": roc_auc(y, s), "seconds": sec}
            print(f"digit {c} {name:>10}: AUC {res[name][str(c)]['auc']:.4f}  {sec:7.1f} s", flush=True)
    return res


def run_odds(args) -> dict:
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    res = {}
    for ds in args.datasets:
        X, y = aelab.datasets.load_odds(str(Path(args.odds_dir) / f"{ds}.mat"))
        for name in args.models:
            aucs, secs = [], []
            for split in range(args.splits):
                Xa, Xb, ya, yb = train_test_split(X, y, test_size=0.4, random_state=split)
                sc = StandardScaler().fit(Xa)
                s, sec = fit_score(name, split, sc.transform(Xa).astype(np.float32), sc.transform(Xb).astype(np.float32))
                aucs.append(roc_auc(yb, s))
                secs.append(sec)
            res.setdefault(name, {})[ds] = {"auc": float(np.mean(aucs)), "auc_std": float(np.std(aucs)),
                                            "seconds": float(np.mean(secs))}
            print(f"{ds:>11} {name:>10}: AUC {np.mean(aucs):.4f} ± {np.std(aucs):.3f}  {np.mean(secs):6.2f} s",
                  flush=True)
    return res


def markdown(res: dict, title: str, row_label: str) -> str:
    """Table: one row per digit / data set, AUC and fit+score seconds per model; best AUC in bold."""
    names = list(res)
    keys = list(next(iter(res.values())))
    lines = [f"### {title}", "", f"| {row_label} | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for k in keys:
        best = max(res[n][k]["auc"] for n in names)
        cells = [(f"**{res[n][k]['auc']:.3f}**" if res[n][k]["auc"] == best else f"{res[n][k]['auc']:.3f}")
                 + f" ({res[n][k]['seconds']:.1f}s)" for n in names]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    means = {n: np.mean([v["auc"] for v in res[n].values()]) for n in names}
    tsum = {n: np.sum([v["seconds"] for v in res[n].values()]) for n in names}
    lines.append("| **mean AUC** | " + " | ".join(f"**{means[n]:.4f}**" for n in names) + " |")
    lines.append("| seconds, sum of rows | " + " | ".join(f"{tsum[n]:.0f}" for n in names) + " |")
    return "\n".join(lines) + "\n"


def environment() -> dict:
    import platform

    import sklearn
    import torch

    try:
        import pyod

        pyod_version = pyod.__version__
    except ImportError:  # pragma: no cover - benchmark extra missing
        pyod_version = None
    return {"aelab": aelab.__version__, "torch": torch.__version__, "sklearn": sklearn.__version__,
            "pyod": pyod_version, "python": platform.python_version(), "cpu_count": __import__("os").cpu_count(),
            "torch_threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["mnist", "odds"], required=True)
    ap.add_argument("--mnist-dir", default="../shared/data/mnist_idx")
    ap.add_argument("--odds-dir", default="../shared/data/odds_mat")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--digits", nargs="+", type=int, default=list(range(10)))
    ap.add_argument("--datasets", nargs="+", default=ODDS17)
    ap.add_argument("--splits", type=int, default=10)
    ap.add_argument("--max-train", type=int, default=None, help="cap on training images per digit (quick runs)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)
    res = run_mnist(args) if args.part == "mnist" else run_odds(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"anomaly_{args.part}.json"
    store = {"args": vars(args), "environment": environment(), "results": res}
    if path.exists():  # a rerun of some models keeps the other models' columns, and says so
        old = json.loads(path.read_text())
        rows = set(next(iter(res.values())))  # the same digits or data sets only
        kept = {n: r for n, r in old.get("results", {}).items() if n not in res and set(r) == rows}
        if kept:
            store["results"] = {n: res.get(n, kept.get(n)) for n in old["results"] if n in res or n in kept}
            store["results"].update({n: r for n, r in res.items() if n not in store["results"]})
            store["rerun"] = {"models": list(res), "kept_from": old.get("environment", {}).get("date")}
    path.write_text(json.dumps(store, indent=2))
    merged = store["results"]
    if args.part == "mnist":
        md = markdown(merged, "One-class MNIST (ROC AUC, fit+score seconds)", "digit")
    else:
        md = markdown(merged, f"ODDS ({args.splits} splits, mean test ROC AUC, mean fit+score seconds per split)",
                      "data set")
    if "rerun" in store:
        md += (f"\nRerun on {store['environment']['date']}: {', '.join(store['rerun']['models'])}; the other columns "
               f"from the run of {store['rerun']['kept_from']}.\n")
    (out / f"anomaly_{args.part}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
