"""Do the thresholds hold on fresh data? False-positive rate, BH's FDR and power, contamination estimates.

Data: a few ADBench tables of ../shared/data and one-class MNIST (digit 0 normal, other digits
anomalies), each in two protocols, 3 seeds (a short run: the machine is shared).

  normal-only   fit on 50% of the normal rows (``novelty=True``); 20% of them are clean
                calibration rows; the other 30% and all anomalies are the test batch.
  contaminated  fit on 50% of the normal rows plus half of the anomalies (``novelty=False``,
                the default); calibration and test rows as above, with the other anomalies.

Measured, on the fresh normal rows of the test batch, the realised false-positive rate at
the targets 1e-1, 1e-2, 1e-3 of four thresholds:

  old        aelab before issue 26: the order-statistic rule on the scores of the training rows
             passed back through ``decision_function`` (``set_threshold(X_train, fpr)`` on main).
  new        ``set_threshold(X_train, fpr)`` now: the training rows are recognised and replaced by
             the validation rows fit held out (conformal threshold).
  conformal  ``predict(X, fpr=a)`` after ``calibrate(X_cal)`` on the clean calibration rows.
  pyod       PyOD's contamination rule with contamination = a: the (1 - a) percentile of the
             training scores (``decision_scores_``).

``new`` against ``conformal`` measures what early stopping on the validation rows costs.
Then Benjamini-Hochberg at q = 0.05 and 0.1 on the test batch (clean calibration): realised
FDR (false flags / flags) and power; and the contamination: the fit's estimate
(``contamination="auto"``, contaminated protocol) and the batch's estimate (Storey on the
p-values, clean calibration) against the truth.

    python benchmarks/calibration.py [--data-dir ../shared/data] [--seeds 3] [--epochs 20]

Writes benchmarks/results/calibration.json and calibration.md.
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import aelab
import aelab.conformal
from aelab.thresholds import threshold_from_contamination, threshold_from_fpr

TABLES = ("6_cardio", "20_letter", "28_pendigits", "31_satimage-2", "32_shuttle")
TARGETS = (1e-1, 1e-2, 1e-3)
QS = (0.05, 0.1)
RULES = ("old", "new", "conformal", "pyod")


def load(data_dir: Path, name: str):
    if name == "mnist":
        raw = gzip.open(data_dir / "mnist_idx" / "train-images-idx3-ubyte.gz").read()
        X = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)
        y = np.frombuffer(gzip.open(data_dir / "mnist_idx" / "train-labels-idx1-ubyte.gz").read(), np.uint8, offset=8)
        rng = np.random.default_rng(0)
        normal = np.flatnonzero(y == 0)
        other = rng.choice(np.flatnonzero(y != 0), 600, replace=False)
        idx = np.r_[normal, other]
        return X[idx], (y[idx] != 0).astype(int)
    d = np.load(data_dir / "adbench_classical" / f"{name}.npz")
    return d["X"].astype(np.float32), d["y"].astype(int)


def split(y, protocol, seed):
    rng = np.random.default_rng(seed)
    normal, anom = rng.permutation(np.flatnonzero(y == 0)), rng.permutation(np.flatnonzero(y == 1))
    a, b = int(0.5 * len(normal)), int(0.7 * len(normal))
    train, cal, test_n = normal[:a], normal[a:b], normal[b:]
    if protocol == "contaminated":
        half = len(anom) // 2
        train, test_a = np.r_[train, anom[:half]], anom[half:]
    else:
        test_a = anom
    return rng.permutation(train), cal, test_n, test_a


def one(X, y, protocol, seed, epochs):
    train, cal, test_n, test_a = split(y, protocol, seed)
    novelty = protocol == "normal-only"
    t0 = time.perf_counter()
    est = aelab.Autoencoder(novelty=novelty, contamination="auto", epochs=epochs, random_state=seed).fit(X[train])
    fit_s = time.perf_counter() - t0
    s_train = est.decision_function(X[train])  # what set_threshold(X_train) scored on main
    s_n, s_a = est.decision_function(X[test_n]), est.decision_function(X[test_a])
    out = {"n_train": len(train), "n_cal_validation": len(est.calibration_scores_), "n_cal": len(cal),
           "n_test_normal": len(test_n), "n_test_anomalies": len(test_a), "fit_s": round(fit_s, 2),
           "score": est.score_, "fpr": {}, "bh": {}}
    thresholds = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for a in TARGETS:
            thresholds[("old", a)] = threshold_from_fpr(s_train, a)
            est.set_threshold(X[train], fpr=a)
            thresholds[("new", a)] = est.threshold_
            thresholds[("pyod", a)] = threshold_from_contamination(est.decision_scores_, min(a, 0.5))
        contamination_fit = est.contamination_
        s_val = est.calibration_scores_  # the validation rows early stopping looked at
        est.calibrate(X[cal])
        for a in TARGETS:
            thresholds[("conformal", a)] = aelab.conformal.conformal_threshold(est.calibration_scores_, a)
    for (rule, a), t in thresholds.items():
        out["fpr"][f"{rule}@{a:g}"] = float((s_n > t).mean())
    # early stopping: the validation rows' p-values against clean rows; exchangeable rows give a mean of about 0.5
    # (1/2 + 1/(2(n+1))), a larger mean means the network fits them better than fresh rows
    out["early_stopping"] = {"mean_p_validation": float(aelab.conformal.pvalues(s_val, est.calibration_scores_).mean()),
                             "mean_p_fresh": float(aelab.conformal.pvalues(s_n, est.calibration_scores_).mean()),
                             "n_validation": int(len(s_val)), "epochs_run": len(est.history_["loss"])}
    s = np.r_[s_n, s_a]
    is_a = np.r_[np.zeros(len(s_n), bool), np.ones(len(s_a), bool)]
    p = aelab.conformal.pvalues(s, est.calibration_scores_)
    for q in QS:
        flag = aelab.conformal.bh_flags(p, q).astype(bool)
        out["bh"][f"{q:g}"] = {"fdp": float((flag & ~is_a).sum() / max(flag.sum(), 1)),
                               "power": float(flag[is_a].mean()) if is_a.any() else None}
    truth_train = float(y[train].mean())
    out["contamination"] = {"fit_estimate": float(contamination_fit), "fit_truth": truth_train,
                            "batch_estimate": aelab.conformal.estimate_contamination(s, est.calibration_scores_),
                            "batch_truth": float(is_a.mean())}
    return out


def summarise(rows: list[dict]) -> str:
    lines = ["# Calibration: do the thresholds hold on fresh normal rows?", "",
             "Realised false-positive rate on the fresh normal rows of the test batch, mean over seeds "
             "(in brackets: the largest seed). Targets 0.1 / 0.01 / 0.001. `old`: the empirical threshold on "
             "the training rows (main before issue 26); `new`: `set_threshold(X_train, fpr)` now (validation "
             "rows, conformal); `conformal`: `predict(X, fpr=a)` after `calibrate` on clean held-out rows; "
             "`pyod`: the contamination percentile of the training scores. Timings were taken on a busy, "
             "shared 2-core machine.", ""]
    header = "| data | protocol | n_cal (val / clean) | " + " | ".join(f"{r} @{a:g}" for a in TARGETS for r in RULES) + " |"
    lines += [header, "|" + "---|" * (3 + len(TARGETS) * len(RULES))]
    groups = {}
    for r in rows:
        groups.setdefault((r["data"], r["protocol"]), []).append(r)
    for (data, protocol), rs in groups.items():
        cells = []
        for a in TARGETS:
            for rule in RULES:
                v = [r["fpr"][f"{rule}@{a:g}"] for r in rs]
                cells.append(f"{np.mean(v):.4f} ({max(v):.3f})")
        lines.append(f"| {data} | {protocol} | {rs[0]['n_cal_validation']} / {rs[0]['n_cal']} | " + " | ".join(cells) + " |")
    lines += ["", "Benjamini-Hochberg on the test batch (clean calibration rows): realised FDR (mean false share "
              "among the flags) and power (share of anomalies flagged), mean over seeds.", "",
              "| data | protocol | FDR @0.05 | power @0.05 | FDR @0.1 | power @0.1 |", "|---|---|---|---|---|---|"]
    for (data, protocol), rs in groups.items():
        cells = []
        for q in QS:
            cells.append(f"{np.mean([r['bh'][f'{q:g}']['fdp'] for r in rs]):.3f}")
            cells.append(f"{np.mean([r['bh'][f'{q:g}']['power'] for r in rs]):.3f}")
        lines.append(f"| {data} | {protocol} | " + " | ".join(cells) + " |")
    lines += ["", "Early stopping: the mean conformal p-value of the validation rows (the default calibration rows, "
              "on which early stopping chose the epoch) against the clean calibration rows, beside that of the "
              "fresh normal rows; normal-only protocol, mean over seeds. Exchangeable rows give about 0.5; a "
              "larger value means the network fits its validation rows better than fresh rows.", "",
              "| data | n_validation | mean p (validation) | mean p (fresh normal) | epochs run |", "|---|---|---|---|---|"]
    for (data, protocol), rs in groups.items():
        if protocol != "normal-only":
            continue
        e = [r["early_stopping"] for r in rs]
        lines.append(f"| {data} | {e[0]['n_validation']} | {np.mean([x['mean_p_validation'] for x in e]):.3f} | "
                     f"{np.mean([x['mean_p_fresh'] for x in e]):.3f} | {np.mean([x['epochs_run'] for x in e]):.1f} |")
    lines += ["", "Contamination: the fit's estimate (`contamination=\"auto\"`: robust null on the training "
              "scores) and the test batch's (Storey on the conformal p-values, clean calibration), mean over "
              "seeds, against the truth.", "",
              "| data | protocol | fit estimate | fit truth | batch estimate | batch truth |", "|---|---|---|---|---|---|"]
    for (data, protocol), rs in groups.items():
        c = [np.mean([r["contamination"][k] for r in rs]) for k in ("fit_estimate", "fit_truth", "batch_estimate",
                                                                      "batch_truth")]
        lines.append(f"| {data} | {protocol} | " + " | ".join(f"{v:.3f}" for v in c) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--data", nargs="*", default=list(TABLES) + ["mnist"])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "calibration"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    data_dir = Path(args.data_dir)
    rows = []
    for name in args.data:
        X, y = load(data_dir, name)
        for protocol in ("normal-only", "contaminated"):
            for seed in range(args.seeds):
                r = {"data": name, "protocol": protocol, "seed": seed, **one(X, y, protocol, seed, args.epochs)}
                rows.append(r)
                f = r["fpr"]
                print(f"{name:14s} {protocol:12s} seed {seed}: fpr@0.1 old {f['old@0.1']:.3f} new {f['new@0.1']:.3f} "
                      f"conformal {f['conformal@0.1']:.3f} pyod {f['pyod@0.1']:.3f}; @0.01 old {f['old@0.01']:.4f} "
                      f"new {f['new@0.01']:.4f} conformal {f['conformal@0.01']:.4f}; contamination fit "
                      f"{r['contamination']['fit_estimate']:.3f}/{r['contamination']['fit_truth']:.3f} "
                      f"({r['fit_s']} s)", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"seeds": args.seeds, "epochs": args.epochs, "torch_threads": 1, "aelab": aelab.__version__,
            "note": "short run on a busy shared 2-core machine"}
    from aelab.io._common import atomic_path

    with atomic_path(out.with_suffix(".json")) as tmp:
        Path(tmp).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    with atomic_path(out.with_suffix(".md")) as tmp:
        Path(tmp).write_text(summarise(rows))
    print(summarise(rows))


if __name__ == "__main__":
    main()
