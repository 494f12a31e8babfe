"""The ``aelab`` command line: thin commands over the library (see docs/cli.md).

Each command parses its arguments, calls one library function and returns an
exit code: 0 on success, 2 for bad usage or bad input (with a one-line message
saying what was wrong and how to fix it), 1 for an unexpected failure.
"""

from __future__ import annotations

import sys

from . import conformal, demo, explain, export, latent, score, train, trigger
from ._common import Parser, run

__all__ = ["main", "build_parser"]


def build_parser() -> Parser:
    from .._version import __version__

    parser = Parser(prog="aelab", description="Autoencoders for unsupervised learning and anomaly detection.",
                    epilog="examples:\n  aelab demo --out demo-output\n"
                           "  aelab train mnist:sample --model vae --out vae-model\n"
                           "  aelab score vae-model mnist:test --out scores.npy\n\n"
                           "Run 'aelab COMMAND --help' for a command's options and an example.")
    parser.add_argument("--version", action="version", version=f"aelab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (demo, train, score, latent, export, trigger, conformal, explain):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``aelab`` with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else 0
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
