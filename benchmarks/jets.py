"""Jets both ways: top vs QCD on 40 x 40 Lund-plane images, each type in turn the normal one.

For each direction (train on QCD, top is the anomaly; train on top, QCD is the anomaly)
and each seed: train on a random 60% of the normal type, test on the other 40% against
as many jets of the other type. Models: aelab's Autoencoder (dense, the default, and
arch="conv"), VAE and PCA with their defaults (the conv network's epochs capped at 4,
--conv-epochs: a CPU run); the peers
scikit-learn IsolationForest, OneClassSVM (default settings; fitted on a random 2,000 of
the training rows, OCSVM being quadratic) and the k-nearest-neighbour distance (k = 5,
mean) on the flattened raw images (PyOD's AutoEncoder when pyod is installed); and the
total intensity of the image in both signs (the sign that works needs the answer).
Mean ROC AUC and TPR at FPR 1e-3 over the seeds.

    python benchmarks/jets.py --data ../shared/data/toptag_lund/lund_plane0_qcd_top.npz
    python benchmarks/jets.py --part remedies --data ...
    python benchmarks/jets.py --part densities --data ...

Writes benchmarks/results/jets.json and jets.md (after every run, so that a partial run
leaves its numbers). ``--part remedies`` measures, with the dense Autoencoder and the same
splits, the preprocessing choices (intensity= and scaler=) against every score, and two
scores computed here from the fitted model rather than offered by aelab: a Gaussian
mixture (4 components) on the training codes, and the complexity-normalised
reconstruction error (Serra et al., ICLR 2020, adapted: log mse minus its least-squares
prediction from the log number of lit pixels, fitted on the training rows), the sum of
the z-scored "emission" and "mse+latent" scores, and an AE-conditional emission density
(the image's intensity shares scored under 0.9 x the training density of lit pixels plus
0.1 x its own blurred reconstruction); writes jets_remedies.json and .md.
``--part densities`` measures, without a network, variants of the "emission" score (the
blur, the weights, the density it is scored under) and the other densities tried before
it was chosen; writes jets_densities.json and .md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import aelab
from aelab.metrics import roc_auc, tpr_at_fpr

OUT = Path(__file__).parent / "results"


def split(A, B, seed):
    r = np.random.default_rng(seed)
    ia = r.permutation(len(A))
    n_tr = int(0.6 * len(A))
    test_normal = A[ia[n_tr:]]
    ib = r.permutation(len(B))[: len(test_normal)]
    X_test = np.concatenate([test_normal, B[ib]])
    return A[ia[:n_tr]], X_test, np.r_[np.zeros(len(test_normal)), np.ones(len(ib))]


def models(epochs: int, conv_epochs: int, seed: int):
    """name -> (fit(X_train) -> score(X_test) callable)."""
    def est(make):
        def fit(X):
            m = make().fit(X)
            return m.decision_function
        return fit

    def sk(make, rows=None):
        def fit(X):
            Xf = X.reshape(len(X), -1)
            if rows and len(Xf) > rows:
                Xf = Xf[np.random.default_rng(seed).permutation(len(Xf))[:rows]]
            m = make().fit(Xf)
            return lambda T: -m.score_samples(T.reshape(len(T), -1))
        return fit

    def knn(X):
        from sklearn.neighbors import NearestNeighbors

        nn = NearestNeighbors(n_neighbors=5).fit(X.reshape(len(X), -1))
        return lambda T: nn.kneighbors(T.reshape(len(T), -1))[0].mean(axis=1)

    from sklearn.ensemble import IsolationForest
    from sklearn.svm import OneClassSVM

    out = {
        "aelab Autoencoder (dense)": est(lambda: aelab.Autoencoder(epochs=epochs, random_state=seed)),
        "aelab Autoencoder (dense), mse+latent, sum+sqrt": est(lambda: aelab.Autoencoder(
            epochs=epochs, random_state=seed, anomaly_score="mse+latent", intensity="sum+sqrt")),
        "aelab Autoencoder (conv)": est(lambda: aelab.Autoencoder(arch="conv", epochs=conv_epochs, random_state=seed)),
        "aelab VAE": est(lambda: aelab.VAE(epochs=epochs, random_state=seed)),
        "aelab PCA": est(lambda: aelab.PCA()),
        "IForest": sk(lambda: IsolationForest(random_state=seed)),
        "OCSVM": sk(lambda: OneClassSVM(), rows=2000),
        "KNN (k=5)": knn,
        "intensity sum": lambda X: (lambda T: T.reshape(len(T), -1).sum(axis=1)),
        "-intensity sum": lambda X: (lambda T: -T.reshape(len(T), -1).sum(axis=1)),
    }
    if importlib.util.find_spec("pyod") is not None:
        def pyod_ae(X):
            from pyod.models.auto_encoder import AutoEncoder

            m = AutoEncoder(random_state=seed, verbose=0).fit(X.reshape(len(X), -1))
            return lambda T: m.decision_function(T.reshape(len(T), -1))
        out["PyOD AutoEncoder"] = pyod_ae
    return out


def table(results: dict, names: list[str]) -> str:
    lines = ["| model | QCD-trained AUROC | top-trained AUROC | QCD-trained TPR@1e-3 | top-trained TPR@1e-3 | "
             "fit+score s |", "|---|---|---|---|---|---|"]
    for name in names:
        rows = {d: [r for r in results["runs"] if r["model"] == name and r["direction"] == d] for d in ("qcd", "top")}
        if not rows["qcd"] and not rows["top"]:
            continue

        def mean(d, key):
            v = [r[key] for r in rows[d]]
            return f"{np.mean(v):.3f} (n={len(v)})" if v else "-"

        secs = [r["seconds"] for d in rows for r in rows[d]]
        lines.append(f"| {name} | {mean('qcd', 'auroc')} | {mean('top', 'auroc')} | {mean('qcd', 'tpr_1e-3')} | "
                     f"{mean('top', 'tpr_1e-3')} | {np.mean(secs):.1f} |")
    return "\n".join(lines)


REMEDY_SETTINGS = {"sum+sqrt, pixel": {"intensity": "sum+sqrt", "scaler": "pixel"},
                   "sum, pixel": {"intensity": "sum", "scaler": "pixel"},
                   "sqrt, pixel (the default)": {"intensity": "sqrt", "scaler": "pixel"},
                   "none, minmax (images of pixels)": {"intensity": "none", "scaler": "minmax"},
                   "sqrt, minmax": {"intensity": "sqrt", "scaler": "minmax"}}
REMEDY_SCORES = ["emission+spectrum", "emission", "spectrum", "mse", "relative", "latent", "mse+latent", "relative+latent",
                 "gmm4 on codes", "complexity-normalised mse", "emission + mse+latent (z)", "AE-conditional emission density"]


def _blur(a, sigma):
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(a, (0,) * (a.ndim - 2) + (sigma, sigma))


def _shares(A):
    A = A.reshape(len(A), -1).astype(np.float64)
    return A / np.maximum(A.sum(1, keepdims=True), 1e-300)


def _lit_surprise(train, sigma):
    """-log of the blurred share of training images lighting each pixel (the "emission" score's density)."""
    n = len(train)
    return -np.log(_blur((((train > 0).sum(0) + 0.5) / (n + 1)), sigma).ravel())


def conditional_density(ae, X_train, X_test, mix=0.1, sigma=2.0):
    """The image's shares scored under (1 - mix) x the training lit-pixel density + mix x its own blurred
    reconstruction (in shares): the network's say on where this image's emissions should be."""
    m = np.exp(-_lit_surprise(X_train, sigma))
    m /= m.sum()
    rec = np.clip(ae.reconstruct(X_test), 0, None)
    rec = _blur(rec.reshape(len(rec), *X_test.shape[1:]).astype(np.float64), sigma)
    p = (1 - mix) * m + mix * _shares(rec)
    return (_shares(X_test) * -np.log(p)).sum(1)


def _spectrum(tr, te, ref, bins=12):
    """"spectrum" in numpy ((test, train) scores): sum_j q_j (-log p_jk), p_jk the blurred share of training
    images lighting pixel j with log(intensity / reference) in bin k of 12 between the training emissions' 0.1%
    and 99.9% quantiles (and one bin either side); reference "abs" (none: the pixel's own intensity, as aelab's head), "max" (the image's
    brightest pixel) or "sum" (its total)."""
    def emissions(A):
        A2 = A.reshape(len(A), -1).astype(np.float64)
        r, c = np.nonzero(A2)
        den = {"abs": np.ones(len(A2)), "max": A2.max(1), "sum": A2.sum(1)}[ref]
        return r, c, np.log(A2[r, c] / den[r]), A2[r, c] / A2.sum(1)[r]

    r, c, v, _ = emissions(tr)
    lo, hi = np.quantile(v, [1e-3, 1 - 1e-3])
    width = (hi - lo) / bins

    def k_of(v):
        t = (v - lo) / width
        return np.where(t < -1e-6, 0, np.where(t > bins + 1e-6, bins + 1, np.clip(np.floor(t), 0, bins - 1) + 1))

    D = int(np.prod(tr.shape[1:]))
    H = np.zeros((D, bins + 2))
    np.add.at(H, (c, k_of(v).astype(int)), 1)
    H = _blur(((H + 0.5) / (len(tr) + 1)).reshape(*tr.shape[1:], bins + 2).transpose(2, 0, 1), 2.0)
    H = H.transpose(1, 2, 0)
    from scipy.ndimage import gaussian_filter1d

    H[..., 1:-1] = gaussian_filter1d(H[..., 1:-1], 1.0, axis=-1)
    L = -np.log(H.reshape(D, bins + 2))

    def score(A):
        r, c, v, w = emissions(A)
        return np.bincount(r, w * L[c, k_of(v).astype(int)], minlength=len(A))

    return score(te), score(tr)


def densities(X, seeds):
    """{(variant, direction): [AUROC per seed]} of network-free densities of where the images are lit."""
    from sklearn.neighbors import NearestNeighbors

    out = {}
    for seed in range(seeds):
        for direction, other in (("qcd", "top"), ("top", "qcd")):
            tr, te, y = split(X[direction], X[other], seed)
            q, q_tr = _shares(te), _shares(tr)
            lit_te, lit_tr = te.reshape(len(te), -1) > 0, tr.reshape(len(tr), -1) > 0
            s, t = {}, {}
            for sigma in (1, 2, 3):
                L = _lit_surprise(tr, sigma)
                s[f"emission, blur {sigma} px{' (the default)' if sigma == 2 else ''}"] = q @ L
            L = _lit_surprise(tr, 2)
            t["emission"], s["emission"] = q_tr @ L, q @ L
            s["lit density, each lit pixel alike (mean surprise per emission)"] = \
                (lit_te @ L) / np.maximum(lit_te.sum(1), 1)
            for g in (2, 4):
                w = te.reshape(len(te), -1).astype(np.float64) ** g
                s[f"lit density, weights share^{g}"] = (w / np.maximum(w.sum(1, keepdims=True), 1e-300)) @ L
            p = ((lit_tr.sum(0) + 0.5) / (len(tr) + 1))
            s["Bernoulli likelihood of the lit pixels (no blur)"] = -(lit_te @ np.log(p) + (~lit_te) @ np.log(1 - p))
            m = _blur(q_tr.mean(0).reshape(tr.shape[1:]), 2).ravel() + 1e-9
            s["intensity density (cross-entropy of the shares under the mean share)"] = q @ -np.log(m / m.sum())
            F, Ft = np.sqrt(q_tr), np.sqrt(q)
            nn = NearestNeighbors(n_neighbors=51).fit(F)
            t["knn"] = nn.kneighbors(F)[0][:, 1:].mean(1)
            s["kNN (k=50) on sqrt(shares)"] = t_knn = nn.kneighbors(Ft, n_neighbors=50)[0].mean(1)
            z = {k: (v - t[k].mean()) / t[k].std() for k, v in (("emission", s["emission"]), ("knn", t_knn))}
            s["emission + kNN (z)"] = z["emission"] + z["knn"]
            for ref, what in (("abs", "the pixel's own intensity (aelab's \"spectrum\")"),
                              ("max", "intensity over the image's brightest"),
                              ("sum", "intensity over the image's total")):
                s[f"spectrum: where x log {what}"], t[f"spectrum {ref}"] = _spectrum(tr, te, ref)
                z[ref] = (s[f"spectrum: where x log {what}"] - t[f"spectrum {ref}"].mean()) / t[f"spectrum {ref}"].std()
            s["emission + spectrum (z): aelab's default"] = z["emission"] + z["abs"]
            s["emission + spectrum over the brightest (z)"] = z["emission"] + z["max"]
            for k, v in s.items():
                out.setdefault((k, direction), []).append(roc_auc(y, v))
            print(f"densities: seed {seed} {direction}-trained done", flush=True)
    return out


def remedies(X, seeds):
    """{(setting, score, direction): [AUROC per seed]} for the dense Autoencoder with default settings otherwise."""
    from sklearn.mixture import GaussianMixture

    out = {}
    for seed in range(seeds):
        for direction, other in (("qcd", "top"), ("top", "qcd")):
            X_train, X_test, y = split(X[direction], X[other], seed)
            lit_tr = np.log(np.maximum((X_train > 0).reshape(len(X_train), -1).sum(1), 1))
            lit_te = np.log(np.maximum((X_test > 0).reshape(len(X_test), -1).sum(1), 1))
            for name, kw in REMEDY_SETTINGS.items():
                ae = aelab.Autoencoder(random_state=seed, **kw).fit(X_train)
                s = {k: ae.decision_function(X_test, score=k) for k in REMEDY_SCORES[:8]}
                z = {}
                for k in ("emission", "mse+latent"):
                    t = ae.decision_function(X_train, score=k)
                    z[k] = (s[k] - t.mean()) / t.std()
                s["emission + mse+latent (z)"] = z["emission"] + z["mse+latent"]
                s["AE-conditional emission density"] = conditional_density(ae, X_train, X_test)
                gmm = GaussianMixture(4, random_state=seed, reg_covar=1e-4).fit(ae.transform(X_train))
                s["gmm4 on codes"] = -gmm.score_samples(ae.transform(X_test))
                e_tr = np.log(ae.decision_function(X_train, score="mse"))
                coef = np.polyfit(lit_tr, e_tr, 1)
                s["complexity-normalised mse"] = np.log(s["mse"]) - np.polyval(coef, lit_te)
                for k, v in s.items():
                    out.setdefault((name, k, direction), []).append(roc_auc(y, v))
            print(f"remedies: seed {seed} {direction}-trained done", flush=True)
    return out


def remedies_table(out) -> str:
    lines = ["| intensity, scaler | score | QCD-trained AUROC | top-trained AUROC | worse direction |", "|---|---|---|---|---|"]
    for name in REMEDY_SETTINGS:
        for k in REMEDY_SCORES:
            q, t = np.mean(out[(name, k, "qcd")]), np.mean(out[(name, k, "top")])
            lines.append(f"| {name} | {k} | {q:.3f} | {t:.3f} | {min(q, t):.3f} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data/toptag_lund/lund_plane0_qcd_top.npz")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=None,
                    help="epoch cap of the dense AE and the VAE (default: none, the estimators' own default)")
    ap.add_argument("--conv-epochs", type=int, default=4, help="epoch cap of the conv AE (slow on a CPU)")
    ap.add_argument("--only", nargs="*", help="run only these models")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--part", choices=("models", "remedies", "densities"), default="models")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    d = np.load(args.data)
    X = {"qcd": d["X_qcd"], "top": d["X_top"]}
    OUT.mkdir(exist_ok=True)
    if args.part == "densities":
        out = densities(X, args.seeds)
        names = list(dict.fromkeys(k for k, _ in out))
        (OUT / "jets_densities.json").write_text(json.dumps(
            {"seeds": args.seeds,
             "auroc": [{"variant": a, "direction": b, "per_seed": v} for (a, b), v in out.items()]}, indent=1))
        lines = ["| density (no network) | QCD-trained AUROC | top-trained AUROC | worse direction |",
                 "|---|---|---|---|"]
        for k in names:
            if k == "emission":
                continue
            a, b = np.mean(out[(k, "qcd")]), np.mean(out[(k, "top")])
            lines.append(f"| {k} | {a:.3f} | {b:.3f} | {min(a, b):.3f} |")
        text = "\n".join(lines)
        (OUT / "jets_densities.md").write_text("# Jets both ways: densities of where the images are lit "
                                               f"(benchmarks/jets.py --part densities, mean of {args.seeds} seeds)\n\n"
                                               f"{text}\n")
        print(text)
        return
    if args.part == "remedies":
        out = remedies(X, args.seeds)
        (OUT / "jets_remedies.json").write_text(json.dumps(
            {"seeds": args.seeds, "model": "aelab.Autoencoder() defaults but intensity= and scaler=",
             "auroc": [{"setting": a, "score": b, "direction": c, "per_seed": v} for (a, b, c), v in out.items()]},
            indent=1))
        text = remedies_table(out)
        (OUT / "jets_remedies.md").write_text("# Jets both ways: preprocessing and scores (benchmarks/jets.py "
                                              f"--part remedies, mean of {args.seeds} seeds)\n\n{text}\n")
        print(text)
        return
    names = list(models(1, 1, 0))
    results = {"data": str(args.data), "protocol": "train on 60% of the normal type; test on the rest of it against "
               "as many of the other type", "epochs": args.epochs, "conv_epochs": args.conv_epochs,
               "pyod": importlib.util.find_spec("pyod") is not None, "torch_threads": args.threads, "runs": []}
    OUT.mkdir(exist_ok=True)
    for seed in range(args.seeds):
        for direction, other in (("qcd", "top"), ("top", "qcd")):
            X_train, X_test, y = split(X[direction], X[other], seed)
            for name, fit in models(args.epochs, args.conv_epochs, seed).items():
                if args.only and name not in args.only:
                    continue
                t = time.perf_counter()
                s = fit(X_train)(X_test)
                secs = time.perf_counter() - t
                run = {"model": name, "direction": direction, "seed": seed, "auroc": roc_auc(y, s),
                       "tpr_1e-3": tpr_at_fpr(y, s, 1e-3), "seconds": secs}
                results["runs"].append(run)
                print(f"{direction}-trained seed {seed} {name:28s} AUROC {run['auroc']:.3f} "
                      f"TPR@1e-3 {run['tpr_1e-3']:.3f} ({secs:.0f} s)", flush=True)
                (OUT / "jets.json").write_text(json.dumps(results, indent=1))
                (OUT / "jets.md").write_text("# Jets both ways (benchmarks/jets.py)\n\n" + table(results, names) + "\n")
    print(table(results, names))


if __name__ == "__main__":
    main()
