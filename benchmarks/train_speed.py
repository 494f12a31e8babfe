"""Training throughput of aelab.Autoencoder.fit against a minimal hand-written PyTorch loop.

Same dense model (784-256-64-16-64-256-784, ReLU, sigmoid output, MSE, Adam lr 1e-3,
batch 256, no validation, no early stopping), same data, same process; the two are run
alternately and the median of ``--repeats`` runs is compared. Also reports achieved
GFLOP/s against the torch.mm peak measured in the same run.

Run with nothing else busy on the machine:  python benchmarks/train_speed.py
Writes benchmarks/results/train_speed.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import aelab

SIZES = [784, 256, 64, 16, 64, 256, 784]


def hand_model() -> nn.Module:
    layers = []
    for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        layers.append(nn.Linear(a, b))
        if i == 2:
            continue  # linear code layer, as in aelab
        layers.append(nn.ReLU() if i < len(SIZES) - 2 else nn.Sigmoid())
    return nn.Sequential(*layers)


def hand_loop(X: torch.Tensor, epochs: int, batch: int, seed: int) -> float:
    torch.manual_seed(seed)
    model = hand_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    t = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(X.shape[0])
        for i in range(0, X.shape[0], batch):
            xb = X[perm[i : i + batch]]
            loss = nn.functional.mse_loss(model(xb), xb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return time.perf_counter() - t


def aelab_fit(X: np.ndarray, epochs: int, batch: int, seed: int) -> float:
    est = aelab.Autoencoder(arch="dense", hidden=(256, 64), latent_dim=16, batch_size=batch, lr=1e-3,
                            epochs=epochs, validation_fraction=0, early_stopping=False, scaler="none",
                            random_state=seed, device="cpu")
    t = time.perf_counter()
    est.fit(X)
    return time.perf_counter() - t


def mm_peak(n: int = 2048, reps: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_speed.json"))
    args = ap.parse_args(argv)

    X, _ = aelab.datasets.load_mnist("sample") if hasattr(aelab, "datasets") else (None, None)
    Xf = (X.reshape(len(X), -1) / 255.0).astype(np.float32)
    Xt = torch.from_numpy(Xf)
    n = len(Xf) * args.epochs
    hand_loop(Xt, 1, args.batch, 0)  # warm-up both paths
    aelab_fit(Xf, 1, args.batch, 0)
    hand_t, aelab_t = [], []
    for r in range(args.repeats):
        hand_t.append(hand_loop(Xt, args.epochs, args.batch, r))
        aelab_t.append(aelab_fit(Xf, args.epochs, args.batch, r))
    peak = mm_peak()
    macs = sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:]))
    flops_per_sample = 6 * macs  # forward (2 MACs -> FLOPs) + backward (twice the forward)
    hand_sps, aelab_sps = n / statistics.median(hand_t), n / statistics.median(aelab_t)
    res = {
        "samples": n, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "hand_seconds": hand_t, "aelab_seconds": aelab_t,
        "hand_samples_per_s": hand_sps, "aelab_samples_per_s": aelab_sps,
        "ratio_aelab_over_hand": aelab_sps / hand_sps,
        "mm_peak_gflops": peak,
        "hand_gflops": hand_sps * flops_per_sample / 1e9, "aelab_gflops": aelab_sps * flops_per_sample / 1e9,
    }
    res["hand_fraction_of_peak"] = res["hand_gflops"] / peak
    res["aelab_fraction_of_peak"] = res["aelab_gflops"] / peak
    for k, v in res.items():
        print(f"{k:>24}: {v if not isinstance(v, float) else round(v, 4)}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
