"""One-class MNIST with each convolutional backbone at a comparable parameter budget.

For every digit d, a convolutional autoencoder is trained on training images of d only,
then scores the test set: digit d is normal, the other nine are anomalies. The table
lists ROC AUC per digit and on average, parameters, MACs per image and fit time.

The backbones differ a lot in cost at equal widths (inception is ~8x cheaper than vgg),
so each gets the encoder widths ``(w, 2w)`` whose whole model (encoder, the two latent
Linear layers, decoder) comes closest to ``--budget`` parameters.

    python benchmarks/backbones.py                                   # full: 10 digits
    python benchmarks/backbones.py --digits 0 --epochs 1 --max-train 1000 --max-test 2000

Writes benchmarks/results/backbones.json and benchmarks/results/backbones.md.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import aelab
from aelab.nn import BACKBONES, build_decoder, build_encoder, cost

HERE = Path(__file__).resolve().parent
WIDTHS = range(4, 129)


def read_idx(path: Path) -> np.ndarray:
    """Read a (gzipped) IDX file: big-endian dims after a 4-byte magic number."""
    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    ndim = raw[3]
    shape = np.frombuffer(raw, ">u4", ndim, 4).astype(int)
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load(split: str, data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        from aelab.datasets import load_mnist
    except ImportError:  # the script predates aelab.datasets: read the IDX files directly
        prefix = "train" if split == "train" else "t10k"
        return (read_idx(data_dir / f"{prefix}-images-idx3-ubyte.gz"),
                read_idx(data_dir / f"{prefix}-labels-idx1-ubyte.gz"))
    return load_mnist(split, data_dir=data_dir, download=False)


def model_params(backbone: str, channels: tuple[int, ...], latent_dim: int, hw=(28, 28)) -> int:
    """Parameters of the conv autoencoder: encoder, Linear to/from the code, decoder."""
    s = 2 ** len(channels)
    n_feat = channels[-1] * math.ceil(hw[0] / s) * math.ceil(hw[1] / s)
    convs = nn.ModuleList([build_encoder(backbone, 1, channels), build_decoder(backbone, channels, 1)])
    return sum(p.numel() for p in convs.parameters()) + 2 * n_feat * latent_dim + latent_dim + n_feat


def channels_for_budget(backbone: str, budget: int, latent_dim: int) -> tuple[int, int]:
    return min(((w, 2 * w) for w in WIDTHS),
               key=lambda c: abs(model_params(backbone, c, latent_dim) - budget))


def run(args) -> dict:
    X_train, y_train = load("train", args.data_dir)
    X_test, y_test = load("test", args.data_dir)
    if args.max_test:
        idx = np.random.default_rng(0).permutation(len(X_test))[: args.max_test]
        X_test, y_test = X_test[idx], y_test[idx]
    rows = []
    for backbone in BACKBONES:
        channels = channels_for_budget(backbone, args.budget, args.latent_dim)
        row = {"backbone": backbone, "channels": list(channels), "auc": {}, "fit_seconds": {}}
        for digit in args.digits:
            X = X_train[y_train == digit][: args.max_train]
            est = aelab.Autoencoder(latent_dim=args.latent_dim, arch="conv", channels=channels,
                                    backbone=backbone, epochs=args.epochs, random_state=args.seed)
            start = time.perf_counter()
            est.fit(X)
            row["fit_seconds"][digit] = round(time.perf_counter() - start, 2)
            scores = est.decision_function(X_test)
            row["auc"][digit] = round(aelab.metrics.roc_auc(y_test != digit, scores), 4)
            c = cost(est, latency_runs=10)
            row.update(params=c["params"], macs=c["macs"], latency_ms=round(c["latency_ms"], 3))
            print(f"{backbone:10} digit {digit}  AUC {row['auc'][digit]:.4f}  "
                  f"fit {row['fit_seconds'][digit]:.1f} s", flush=True)
        row["mean_auc"] = round(float(np.mean(list(row["auc"].values()))), 4)
        rows.append(row)
    return {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "environment": {"aelab": aelab.__version__, "torch": torch.__version__,
                        "machine": platform.machine(), "threads": torch.get_num_threads()},
        "results": rows,
    }


def markdown(result: dict) -> str:
    s = result["settings"]
    digits = s["digits"]
    lines = [
        "# Conv backbones on one-class MNIST",
        "",
        f"Train on one digit (at most {s['max_train']} images, {s['epochs']} epochs, latent "
        f"{s['latent_dim']}), score the test set ({s['max_test'] or 'all'} images); ROC AUC with "
        f"the other digits as anomalies. Budget about {s['budget']:,} parameters.",
        "",
        "| backbone | channels | params | MACs / image | latency ms | mean AUC | "
        + " | ".join(f"AUC {d}" for d in digits) + " | fit s (mean) |",
        "|---|---|---:|---:|---:|---:|" + "---:|" * len(digits) + "---:|",
    ]
    for r in result["results"]:
        fit = np.mean(list(r["fit_seconds"].values()))
        lines.append(
            f"| {r['backbone']} | {tuple(r['channels'])} | {r['params']:,} | {r['macs']:,} | "
            f"{r['latency_ms']} | {r['mean_auc']:.4f} | "
            + " | ".join(f"{r['auc'][d]:.4f}" for d in digits) + f" | {fit:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=HERE.parent / ".." / "shared" / "data" / "mnist_idx",
                        help="folder with the MNIST IDX files (default: ../shared/data/mnist_idx)")
    parser.add_argument("--digits", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--max-train", type=int, default=6000, help="training images per digit")
    parser.add_argument("--max-test", type=int, default=0, help="test images (0: all 10,000)")
    parser.add_argument("--budget", type=int, default=100_000, help="target parameter count")
    parser.add_argument("--latent-dim", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (0: torch's default; 1 is faster on a busy machine)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "backbones.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "backbones.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
