"""The trigger workflow on the synthetic ADC2021 sample: bit-width scan (post-training and fine-tuned),
hls4ml emulation parity and throughput.

Trains the dense preset (57-32-16-3) on background, then on a test sample of 10^6 background
and 3 x 10,000 signal events emulates the firmware score at each width W of ap_fixed<W,I>
(aelab's PyTorch emulation of hls4ml's arithmetic, checked bit for bit against hls4ml's
compiled C emulation in tests/test_trigger.py) and tabulates AUROC and TPR at FPR 1e-5
relative to float: after plain rounding of the trained weights (post-training) and after
quantisation-aware fine-tuning at that width. hls4ml parity and throughput at <16,6> and
<8,3> come from real hls4ml projects compiled with g++, and so does a convolutional autoencoder
on MNIST digits (28x28, channels-last firmware; compiling it takes minutes).

Writes benchmarks/results/trigger.json and trigger.md. Run: python benchmarks/trigger.py [--quick]
(one CPU thread; about 10 minutes, --quick about 1).
"""

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import aelab
from aelab.export import hls as H, quantize as Q

OUT = Path(__file__).resolve().parent / "results"



def _metrics(y, s, fpr):
    """(AUROC, TPR at ``fpr``) from aelab's public metrics."""
    from aelab.metrics import roc_auc, tpr_at_fpr

    return roc_auc(y, s), tpr_at_fpr(y, s, fpr)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    n_train, n_test, n_sig = (50_000, 100_000, 2_000) if args.quick else (500_000, 1_000_000, 10_000)
    t0 = time.time()
    P, labels = aelab.datasets.make_adc2021(n_train + n_test, n_sig, random_state=0)
    X = P[:, :, :3].reshape(len(P), -1)
    del P
    Xtr, Xte, yte = X[:n_train], X[n_train:], labels[n_train:]
    t = time.time()
    ae = aelab.presets.adc2021(epochs=5, random_state=0).fit(Xtr)
    fit_s = time.time() - t
    y = yte > 0
    bits = list(range(4, 17))
    pick = np.random.default_rng(0).permutation(len(Xte))[:50_000]
    probe = Q.bit_scan(ae, Xte[pick], y[pick], bits=[16], weight_integer_bits="auto", fpr=1e-3)
    I, Iw = probe["integer_bits"], probe["weight_integer_bits"]
    tuned, ft_s = {}, {}
    for w in bits:  # fine-tuned at each width, on a subset of the training background
        t = time.time()
        tuned[w] = Q.finetune(ae, Xtr[:100_000], f"ap_fixed<{w},{I}>", epochs=2, batch_size=256,
                              weight_precision=f"ap_fixed<{w},{Iw}>", random_state=0)
        ft_s[w] = time.time() - t
    scan = Q.bit_scan(ae, Xte, y, bits=bits, integer_bits=I, weight_integer_bits=Iw, fpr=1e-5)
    for r in scan["rows"]:  # each width's own fine-tuned model
        s = Q.firmware_scores(tuned[r["bits"]], Xte, r["precision"], weight_precision=r["weight_precision"])
        auc, tpr = _metrics(y, s, 1e-5)
        r.update(finetuned_auroc=auc, finetuned_tpr=tpr, finetuned_auroc_rel=auc / scan["float"]["auroc"],
                 finetuned_tpr_rel=tpr / scan["float"]["tpr"] if scan["float"]["tpr"] else float("nan"))
    xs = ae.fitted_.to_net(Xte).astype(np.float64)
    baseline = dict(zip(("auroc", "tpr"), _metrics(y, np.square(xs).sum(1), 1e-5)))  # no network: |x|^2
    per_signal = {}
    for name, code in aelab.datasets.ADC2021_SIGNALS.items():
        m = (yte == 0) | (yte == code)
        s = Q.firmware_scores(ae, Xte[m])
        per_signal[name] = dict(zip(("auroc", "tpr_1e-5"), _metrics(yte[m] > 0, s, 1e-5)))
    parity = {}
    bg = Xte[yte == 0][:100_000]
    for prec in ("ap_fixed<16,6>", "ap_fixed<16,6,AP_RND,AP_SAT>", "ap_fixed<8,3>"):
        with tempfile.TemporaryDirectory() as tmp:
            t = time.time()
            rep = H.to_hls(ae, Path(tmp) / "p", prec, X=bg[:10_000])
            build = time.time() - t
            t = time.time()
            H._predict(rep["hls_model"], ae.fitted_, bg, Q.parse_precision(prec))
            pred = time.time() - t
        t = time.time()
        Q.emulate(ae, bg, prec)
        emu = time.time() - t
        parity[prec] = {**rep["parity"], "convert_and_compile_s": build, "hls_predict_rows_per_s": len(bg) / pred,
                        "torch_emulation_rows_per_s": len(bg) / emu}
    conv = conv_parity(args.quick)
    result = {"n_train": n_train, "n_test_background": int((yte == 0).sum()), "n_test_signal": int(y.sum()),
              "fit_s": fit_s, "finetune_s": ft_s, "integer_bits": I, "weight_integer_bits": Iw,
              "baseline_sum_of_squares": baseline, "scan": scan, "per_signal_float": per_signal,
              "hls_parity": parity, "conv_hls": conv, "total_s": time.time() - t0, "torch": torch.__version__,
              "python": platform.python_version(), "machine": platform.machine()}
    OUT.mkdir(exist_ok=True)
    (OUT / "trigger.json").write_text(json.dumps(result, indent=1, default=float))
    lines = [f"# Trigger benchmark (synthetic ADC2021: train {n_train:,} background; test "
             f"{result['n_test_background']:,} background + {result['n_test_signal']:,} signal; 1 CPU thread)", "",
             f"Float model: AUROC {scan['float']['auroc']:.4f}, TPR at FPR 1e-5 {scan['float']['tpr']:.4f}; "
             f"without a network, the sum of squared scaled inputs: AUROC {baseline['auroc']:.4f}, TPR "
             f"{baseline['tpr']:.4f}. Data ap_fixed<W,{I}>, weights ap_fixed<W,{Iw}> (integer bits from the "
             "float model's ranges), accumulators auto.", "",
             "| W | AUROC post-training | TPR@1e-5 post-training | TPR / float | AUROC fine-tuned "
             "| TPR@1e-5 fine-tuned | TPR / float | adders (da4ml estimate) |", "|---|---|---|---|---|---|---|---|"]
    for r in scan["rows"]:
        cost = f"{r['adder_cost_estimate']:,.0f}" if "adder_cost_estimate" in r else "(no da4ml)"
        lines.append(f"| {r['bits']} | {r['auroc']:.4f} | {r['tpr']:.4f} | {r['tpr_rel']:.3f} | "
                     f"{r['finetuned_auroc']:.4f} | {r['finetuned_tpr']:.4f} | {r['finetuned_tpr_rel']:.3f} | {cost} |")
    lines += ["", "Smallest width from which every width is within 5% of float (post-training): "
              f"{scan['smallest']}.", "",
              "Per signal (float): " + ", ".join(f"{k} AUROC {v['auroc']:.3f} TPR {v['tpr_1e-5']:.3f}"
                                                 for k, v in per_signal.items()), "",
              "| hls4ml precision | score vs float: mean / median / p99 | hls4ml vs PyTorch emulation: mean / max "
              "| convert+compile s | hls4ml rows/s | PyTorch emulation rows/s |", "|---|---|---|---|---|---|"]
    for prec, v in parity.items():
        f, e = v["vs_float"], v["vs_torch_emulation"]
        lines.append(f"| {prec.replace('<', '&lt;').replace('>', '&gt;')} | {f['mean']:.3%} / {f['median']:.3%} / "
                     f"{f['p99']:.3%} | {e['mean']:.4%} / {e['max']:.4%} | {v['convert_and_compile_s']:.1f} | "
                     f"{v['hls_predict_rows_per_s']:,.0f} | {v['torch_emulation_rows_per_s']:,.0f} |")
    c = conv
    lines += ["", f"Convolutional autoencoder (MNIST {c['shape']}, plain backbone, channels {c['channels']}, latent "
              f"{c['latent_dim']}, sigmoid output; trained on {c['n_train']} zeros, scored on {c['n_test']} digits) "
              f"as hls4ml firmware at {c['precision']}, channels-last in and out:", "",
              "| convert+compile s | score vs float: mean / median / p99 | vs PyTorch emulation: mean / max "
              "| AUROC (0 vs rest) firmware / float | hls4ml rows/s |", "|---|---|---|---|---|",
              f"| {c['convert_and_compile_s']:.0f} | {c['vs_float']['mean']:.3%} / {c['vs_float']['median']:.3%} / "
              f"{c['vs_float']['p99']:.3%} | {c['vs_torch_emulation']['mean']:.3%} / "
              f"{c['vs_torch_emulation']['max']:.3%} | {c['auroc_firmware']:.4f} / {c['auroc_float']:.4f} | "
              f"{c['hls_predict_rows_per_s']:,.0f} |"]
    (OUT / "trigger.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def conv_parity(quick: bool) -> dict:
    """A convolutional autoencoder on MNIST digits through hls4ml: compile time and parity (the sigmoid output
    is a lookup table in hls4ml, so the PyTorch emulation is close there, not exact)."""
    from aelab.metrics import roc_auc

    X, y = aelab.datasets.load_mnist("sample")
    rng = np.random.default_rng(0)
    zeros, test = np.flatnonzero(y == 0), rng.permutation(len(X))[: 500 if quick else 2000]
    train = np.setdiff1d(zeros, test)
    channels, k, p = (8, 16), 8, "ap_fixed<16,6>"
    ae = aelab.Autoencoder(arch="conv", channels=channels, latent_dim=k, epochs=5 if quick else 20,
                           anomaly_score="mse", random_state=0).fit(X[train])
    with tempfile.TemporaryDirectory() as tmp:
        t = time.time()
        rep = H.to_hls(ae, Path(tmp) / "conv", p, X=X[test])
        build = time.time() - t
        t = time.time()
        hls, _ = H._predict(rep["hls_model"], ae.fitted_, X[test], Q.parse_precision(p))
        pred = time.time() - t
    label = y[test] != 0
    return {"shape": "28x28", "channels": list(channels), "latent_dim": k, "precision": p, "n_train": int(len(train)),
            "n_test": int(len(test)), "convert_and_compile_s": build, "hls_predict_rows_per_s": len(test) / pred,
            **{key: rep["parity"][key] for key in ("vs_float", "vs_torch_emulation", "torch_emulation_vs_float")},
            "auroc_firmware": roc_auc(label, hls), "auroc_float": roc_auc(label, Q.firmware_scores(ae, X[test]))}


if __name__ == "__main__":
    main()
