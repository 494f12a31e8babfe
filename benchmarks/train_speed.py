"""Training throughput of ``fit`` against the best hand-written PyTorch loop, per variant.

For each variant (dense AE with the default trim and with trim=0, denoising, sparse,
VAE, convolutional AE) aelab's ``fit`` and a hand-written loop train the *same
network* (built from the same ModelConfig, same seed) on the same 5,000 MNIST digits,
batch 256, no validation, no early stopping, scaler "none": the loop a careful engineer
writes, with ``torch.optim.Adam(fused=True)``, the variant's plain loss (no trim, no
clipping) and nothing else per step. The dense AE is also timed against the same loop
with the default (foreach) Adam. The two are run alternately, ``--repeats`` times, and
the medians compared; achieved GFLOP/s are set against torch.mm's peak measured in the
same run (dense models; FLOPs = 6 x MACs per sample).

The headline ratio times aelab's training loop (``aelab.training.train``, wrapped with a
timer here); the whole ``fit`` is reported beside it.

Run with nothing else running:  python benchmarks/train_speed.py [--device cuda]
Writes benchmarks/results/train_speed.json and train_speed.md.
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
import torch.nn.functional as F

import aelab
from aelab.models import build_model

RESULTS = Path(__file__).resolve().parent / "results"

COMMON = dict(validation_fraction=0, early_stopping=False, scaler="none", lr=1e-3)
VARIANTS = {
    "dense AE (default trim)": dict(arch="dense", hidden=(256, 64), latent_dim=16),
    "dense AE (trim=0)": dict(arch="dense", hidden=(256, 64), latent_dim=16, trim=0),
    "denoising AE": dict(arch="dense", hidden=(256, 64), latent_dim=16, noise=0.2),
    "sparse AE": dict(arch="dense", hidden=(256, 64), latent_dim=16, sparsity=1e-3),
    "VAE": dict(cls="VAE", arch="dense", hidden=(256, 64), latent_dim=16),
    "conv AE": dict(arch="conv", channels=(32, 64), latent_dim=16),
}


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def estimator(spec: dict, epochs: int, batch: int, seed: int, device: str):
    spec = dict(spec)
    cls = getattr(aelab, spec.pop("cls", "Autoencoder"))
    return cls(**spec, **COMMON, epochs=epochs, batch_size=batch, random_state=seed, device=device)


_LOOP = {}


def _timed_train(*args, **kwargs):
    """aelab's training loop, timed: the step's speed apart from fit's statistics passes."""
    t = time.perf_counter()
    out = _TRAIN(*args, **kwargs)
    _sync(args[4])
    _LOOP["seconds"] = time.perf_counter() - t
    return out


_TRAIN, aelab.pipeline.train = aelab.pipeline.train, _timed_train


def aelab_fit(X, spec, epochs, batch, seed, device) -> tuple[float, float]:
    """(seconds of the whole fit, seconds of its training loop)."""
    est = estimator(spec, epochs, batch, seed, device)
    t = time.perf_counter()
    est.fit(X)
    _sync(device)
    return time.perf_counter() - t, _LOOP["seconds"]


def default_split(X, epochs: int, repeats: int, device: str) -> dict:
    """A fit with every default on ``X`` (n, d): seconds of the whole fit and of its training loop."""
    fits, loops = [], []
    aelab.Autoencoder(epochs=1, device=device).fit(X[:512])  # warm-up
    for r in range(repeats):
        est = aelab.Autoencoder(epochs=epochs, random_state=r, device=device)
        t = time.perf_counter()
        est.fit(X)
        _sync(device)
        fits.append(time.perf_counter() - t)
        loops.append(_LOOP["seconds"])
    fit_s, loop_s = statistics.median(fits), statistics.median(loops)
    print(f"default fit {fit_s:.2f} s, training loop {loop_s:.2f} s: {100 * (1 - loop_s / fit_s):.1f}% outside",
          flush=True)
    return {"shape": list(X.shape), "fit_seconds": fits, "loop_seconds": loops, "fit_s": fit_s, "loop_s": loop_s,
            "outside_share": 1 - loop_s / fit_s, "score": est.score_}


def hand_loop(Xt: torch.Tensor, cfg, spec: dict, epochs: int, batch: int, seed: int, fused: bool = True) -> float:
    """The best plain loop: the same network, fused Adam, the variant's loss, no extras."""
    torch.manual_seed(seed)
    model = build_model(cfg).to(Xt.device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused) if fused else \
        torch.optim.Adam(model.parameters(), lr=1e-3)
    noise, sparsity, vae = spec.get("noise", 0.0), spec.get("sparsity", 0.0), spec.get("cls") == "VAE"
    n = Xt.shape[0]
    t = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(n, device=Xt.device)
        for i in range(0, n, batch):
            xb = Xt[perm[i : i + batch]]
            xin = xb + noise * torch.randn_like(xb) if noise else xb
            out = model(xin, sample=vae)
            if vae:  # Gaussian decoder (output identity): 0.5 * squared error summed + KL
                loss = (0.5 * (out.x_hat - xb).square().flatten(1).sum(1)
                        + 0.5 * (out.mu.square() + out.logvar.exp() - 1 - out.logvar).sum(1)).mean()
            else:
                loss = F.mse_loss(out.x_hat, xb)
                if sparsity:
                    loss = loss + sparsity * out.z.abs().sum(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    _sync(Xt.device)
    return time.perf_counter() - t


def mm_peak(device: str, n: int = 2048, reps: int = 10) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    best = float("inf")
    for _ in range(reps):
        _sync(device)
        t = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), help="subset of: " + ", ".join(VARIANTS))
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("--out", default=str(RESULTS / "train_speed.json"))
    args = ap.parse_args(argv)

    X, _ = aelab.datasets.load_mnist("sample")
    Xf = (X / 255.0).astype(np.float32)  # (n, 28, 28): images, the dense or conv network per variant
    Xt_flat = torch.from_numpy(Xf.reshape(len(Xf), -1)).to(args.device)
    Xt_img = torch.from_numpy(Xf[:, None]).to(args.device)
    n = len(Xf) * args.epochs
    peak = mm_peak(args.device)
    res = {"samples_per_fit": n, "epochs": args.epochs, "batch": args.batch, "device": args.device,
           "threads": torch.get_num_threads(), "torch": torch.__version__, "aelab": aelab.__version__,
           "machine": platform.processor() or platform.machine(), "mm_peak_gflops": peak, "variants": {}}
    for name in args.variants:
        spec = VARIANTS[name]
        cfg = estimator(spec, 1, args.batch, 0, args.device).fit(Xf[:512]).fitted_.model_cfg
        Xt = Xt_img if cfg.arch == "conv" else Xt_flat
        macs = aelab.nn.cost(build_model(cfg), tuple(cfg.input_shape), latency_runs=1)["macs"]
        refs = {"fused": lambda r: hand_loop(Xt, cfg, spec, args.epochs, args.batch, r)}
        if name.startswith("dense AE (trim=0)"):
            refs["plain Adam"] = lambda r: hand_loop(Xt, cfg, spec, args.epochs, args.batch, r, fused=False)
        aelab_fit(Xf, spec, 1, args.batch, 0, args.device)  # warm-up both
        refs["fused"](0)
        times = {"aelab": [], "aelab fit": [], **{k: [] for k in refs}}
        for r in range(args.repeats):
            fit_s, loop_s = aelab_fit(Xf, spec, args.epochs, args.batch, r, args.device)
            times["aelab"].append(loop_s)
            times["aelab fit"].append(fit_s)
            for k, f in refs.items():
                times[k].append(f(r))
        sps = {k: n / statistics.median(v) for k, v in times.items()}
        row = {"seconds": times, "samples_per_s": sps, "ratio_aelab_over_fused_loop": sps["aelab"] / sps["fused"],
               "ratio_aelab_fit_over_fused_loop": sps["aelab fit"] / sps["fused"]}
        if "plain Adam" in sps:
            row["ratio_aelab_over_plain_adam_loop"] = sps["aelab"] / sps["plain Adam"]
        if macs:
            row["aelab_gflops"] = sps["aelab"] * 6 * macs / 1e9
            row["fraction_of_mm_peak"] = row["aelab_gflops"] / peak
        res["variants"][name] = row
        print(f"{name:24s} aelab loop {sps['aelab']:8.0f}/s  fused loop {sps['fused']:8.0f}/s  "
              f"ratio {row['ratio_aelab_over_fused_loop']:.3f}  (whole fit {row['ratio_aelab_fit_over_fused_loop']:.3f})"
              + (f"  ({100 * row['fraction_of_mm_peak']:.0f}% of mm peak)" if macs else ""), flush=True)
    res["default_fit"] = default_split(Xf.reshape(len(Xf), -1), args.epochs, args.repeats, args.device)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    lines = [f"{args.device}, {res['threads']} threads, batch {args.batch}, {args.epochs} epochs of 5,000 digits; "
             f"torch.mm peak {peak:.0f} GFLOP/s", "",
             "| variant | aelab training loop samples/s | fused-Adam loop samples/s | aelab / loop | whole fit / loop "
             "| GFLOP/s (share of mm peak) |",
             "|---|---|---|---|---|---|"]
    for name, row in res["variants"].items():
        s = row["samples_per_s"]
        g = f"{row['aelab_gflops']:.0f} ({100 * row['fraction_of_mm_peak']:.0f}%)" if "aelab_gflops" in row else ""
        lines.append(f"| {name} | {s['aelab']:,.0f} | {s['fused']:,.0f} | **{row['ratio_aelab_over_fused_loop']:.3f}** "
                     f"| {row['ratio_aelab_fit_over_fused_loop']:.3f} | {g} |")
        if "plain Adam" in s:
            lines.append(f"| (same, against a plain-Adam loop) | | {s['plain Adam']:,.0f} | "
                         f"{row['ratio_aelab_over_plain_adam_loop']:.3f} | | |")
    lines += ["", "The training loop is aelab's step (``aelab.training.train``); the whole fit adds the statistics "
              "passes the hand loop does not make (layout and scaler statistics, and the post-fit pass that "
              "computes the code Gaussian, the training scores and the threshold)."]
    d = res["default_fit"]
    lines += ["", f"**A default fit** (`aelab.Autoencoder(epochs={args.epochs})`, every other setting its default: "
              f"validation split, early stopping, scaler, trimmed loss, score, threshold and calibration) on the "
              f"5,000 digits as a {d['shape'][0]:,} x {d['shape'][1]} table: whole fit {d['fit_s']:.2f} s, training "
              f"loop {d['loop_s']:.2f} s (medians of {len(d['fit_seconds'])}), so "
              f"**{100 * d['outside_share']:.1f}%** of the fit is spent outside the training loop."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return res


if __name__ == "__main__":
    main()
