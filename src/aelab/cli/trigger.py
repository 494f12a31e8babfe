"""``aelab quantize-scan``: what a fixed-point (FPGA) version of the model loses at the trigger's operating point."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..exceptions import ConfigError
from ._common import add_command, add_data, add_model, check_out, load_model, rate, read_data, read_labels, say


def bits_range(text: str) -> list[int]:
    """'4..16', '4,6,8' or '8': fixed-point widths."""
    try:
        if ".." in text:
            lo, hi = (int(v) for v in text.split(".."))
            out = list(range(lo, hi + 1))
        else:
            out = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected widths such as 4..16 or 4,6,8,16, got {text!r}") from None
    if not out or min(out) < 2 or max(out) > 32:
        raise argparse.ArgumentTypeError(f"expected widths between 2 and 32 such as 4..16, got {text!r}")
    return out


def integer_bits(text: str):
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number of integer bits such as 6, "
                                         f"got {text!r}") from None


def weight_bits(text: str):
    return text if text == "same" else integer_bits(text)


def register(sub) -> None:
    p = add_command(sub, "quantize-scan", quantize_scan, "AUROC and TPR at FPR 1e-5 against fixed-point width",
                    "aelab quantize-scan trigger-model events.npy --labels labels.npy --bits 4..16 --out scan.md",
                    description="Emulate the model's firmware (hls4ml arithmetic: ap_fixed<W,I>, truncation and "
                                "wrap-around unless the type says otherwise) at each width W and tabulate the "
                                "AUROC and the true-positive rate at the trigger's false-positive rate against the "
                                "float model's; names the smallest width from which every wider one is within the "
                                "tolerance. Labels: 0 for background, anything above 0 is an anomaly.")
    add_model(p)
    add_data(p, help="rows to score, background and anomalies")
    p.add_argument("--labels", required=True, metavar="FILE", help="labels, one per row of DATA (0 = background)")
    p.add_argument("--bits", type=bits_range, default=list(range(4, 17)), metavar="W",
                   help="widths to emulate: 4..16 (default) or a list such as 6,8,16")
    p.add_argument("--integer-bits", type=integer_bits, default="auto", metavar="I",
                   help="integer bits I of ap_fixed<W,I>, sign included (default 'auto': enough for the largest "
                        "input, weight and activation of the float model on DATA)")
    p.add_argument("--weight-integer-bits", type=weight_bits, default="same", metavar="Iw",
                   help="integer bits of the weights and biases: 'same' as the data (default), 'auto' (the fewest "
                        "that hold the largest weight) or a number")
    p.add_argument("--accum", choices=("auto", "same"), default="auto",
                   help="'auto' (default): accumulators as wide as the sums need, as hls4ml infers them; "
                        "'same': every product and sum at the width too")
    p.add_argument("--fpr", type=rate, default=1e-5, help="the false-positive rate of the operating point (1e-5)")
    p.add_argument("--tolerance", type=rate, default=0.05,
                   help="relative loss of AUROC and TPR allowed for the smallest width named (default 0.05)")
    p.add_argument("--engine", choices=("torch", "hls4ml"), default="torch",
                   help="'torch' (default): aelab's PyTorch fixed-point emulation; 'hls4ml': convert and compile "
                        "each width with hls4ml and g++ (4-8 s a width; extra hls)")
    p.add_argument("--adder-cost", choices=("auto", "on", "off"), default="auto",
                   help="da4ml's estimate of the adder cost at each width (about a second per layer and width): "
                        "'auto' (default) when da4ml is installed, 'on' requires it (extra hls), 'off'")
    p.add_argument("--out", "-o", metavar="FILE", help="also write the table: .json (all numbers) or .md")
    p.add_argument("--plot", metavar="FILE.png", help="also draw AUROC and TPR relative to float against the width "
                                                      "(.png, .pdf or .svg; extra plots)")


def quantize_scan(args) -> int:
    from ..export.quantize import bit_scan, format_scan

    out = Path(args.out) if args.out else None
    if out is not None and out.suffix.lower() not in (".json", ".md"):
        raise ConfigError(f"--out {args.out!r} must end in .json or .md.")
    if args.plot and Path(args.plot).suffix.lower() not in (".png", ".pdf", ".svg"):
        raise ConfigError(f"--plot {args.plot!r} must end in .png, .pdf or .svg.")
    for path in (out, args.plot):  # a missing folder fails here, not after the scan
        if path is not None:
            check_out(path, (".json", ".md", ".png", ".pdf", ".svg"))
    est = load_model(args.model, args.device)
    X = read_data(args.data)
    y = read_labels(args.labels, len(X)) > 0
    scan = bit_scan(est, X, y, bits=args.bits, integer_bits=args.integer_bits,
                    weight_integer_bits=args.weight_integer_bits, accum=args.accum, fpr=args.fpr,
                    tolerance=args.tolerance, engine=args.engine,
                    adder_cost={"auto": "auto", "on": True, "off": False}[args.adder_cost])
    table = format_scan(scan)
    print(table)
    if args.plot:
        from ..export.quantize import plot_scan

        from .._fs import atomic_path

        with atomic_path(args.plot) as tmp:
            plot_scan(scan).savefig(tmp, format=Path(args.plot).suffix[1:].lower())
        say(args, f"wrote {args.plot}")
    if out is not None:
        from .._fs import atomic_path

        with atomic_path(out) as tmp:
            tmp.write_text(json.dumps(scan, indent=1) if out.suffix.lower() == ".json" else table + "\n",
                           encoding="utf-8")
        say(args, f"wrote {out}")
    return 0
