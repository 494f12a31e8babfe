"""``aelab demo``: the MNIST tutorial end to end."""

from __future__ import annotations

from ._common import add_command, progress


def register(sub) -> None:
    p = add_command(sub, "demo", demo, "the MNIST tutorial end to end; writes DIR/report.html",
                    "aelab demo --out demo-output\naelab demo --quick --out /tmp/demo",
                    description="Compression, denoising, sparsity, clustering, anomaly detection and generation "
                                "on 5,000 real MNIST digits (or the full MNIST from --data-dir), in about two "
                                "minutes on two CPU cores. Prints a summary table per step and writes "
                                "DIR/report.html with every figure. See docs/tutorial.md.")
    p.add_argument("--out", "-o", default="demo-output", metavar="DIR", help="output folder (default: demo-output)")
    p.add_argument("--quick", action="store_true", help="a few seconds' version with tiny models, for testing")
    p.add_argument("--data-dir", metavar="DIR", help="folder with the MNIST IDX files, to use the full 70,000 digits")


def demo(args) -> int:
    from ..tutorial import run_tutorial

    # one thread unless --threads: the fastest for these small models
    run_tutorial(args.out, quick=args.quick, data_dir=args.data_dir, progress=progress(args),
                 echo=None if args.quiet else print, threads=args.threads or 1, device=args.device)
    return 0
