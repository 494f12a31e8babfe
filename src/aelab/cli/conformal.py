"""Decisions with guarantees on the command line: ``aelab calibrate`` and ``aelab score --pvalues | --fpr | --fdr``."""

from __future__ import annotations

from ._common import add_command, add_data, add_model, add_stream, load_model, rate, read_source, say, streamed


def register(sub) -> None:
    p = add_command(sub, "calibrate", calibrate, "replace a model's calibration rows by known-normal data and save it",
                    "aelab calibrate ae-model normal.npy",
                    description="Score NORMAL_DATA (clean rows the model was not fitted on) and keep the scores as "
                                "the model's calibration set: the conformal p-values of 'aelab score --pvalues', "
                                "--fpr and --fdr are computed against it. Rows that were part of the fit are "
                                "recognised and left out.")
    add_model(p)
    add_data(p, "NORMAL_DATA", help="known-normal data the model was not fitted on")
    add_stream(p)


def add_rules(p) -> None:
    """score's --pvalues / --fpr / --fdr (mutually exclusive)."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--pvalues", action="store_true",
                   help="write conformal p-values (small = anomalous) instead of scores")
    g.add_argument("--fpr", type=rate, metavar="A",
                   help="write 0/1 flags whose false-positive rate on fresh normal rows is at most A")
    g.add_argument("--fdr", type=rate, metavar="Q",
                   help="write 0/1 flags by Benjamini-Hochberg: the expected share of normal rows among the "
                        "flags is at most Q")


def wants_rule(args) -> bool:
    return bool(getattr(args, "pvalues", False) or getattr(args, "fpr", None) or getattr(args, "fdr", None))


def check_rule_args(est, args) -> None:
    """Before scoring: the rules need the model's default score and its calibration rows."""
    from ..conformal import require_calibration
    from ..exceptions import ConfigError

    if args.score and args.score != est.score_:
        raise ConfigError(f"--pvalues, --fpr and --fdr compare the model's default score ({est.score_}) with its "
                          f"calibration scores; --score {args.score} has none. Drop --score.")
    require_calibration(est.fitted_, "--pvalues, --fpr and --fdr")


def decide(est, X, scores, args):
    """(array to write, summary sentence) of score's --pvalues / --fpr / --fdr on the rows X."""
    import numpy as np

    from ..conformal import assumption, flags, guarantee_note, pvalues, warn_fit_rows

    f = est.fitted_
    warn_fit_rows(f, X)
    if args.pvalues:
        p = pvalues(scores, f.calibration)
        return p, (f"{len(p)} conformal p-values (smallest possible {1 / (len(f.calibration) + 1):.3g}, median "
                   f"{float(np.median(p)):.3g}); a fresh normal row has P(p <= a) <= a for every a, {assumption(f)}")
    rule, level = ("fpr", args.fpr) if args.fpr else ("fdr", args.fdr)
    out = flags(f, scores, **{rule: level})
    return out, f"{len(out)} 0/1 flags, {int(out.sum())} flagged ({out.mean():.2%}); guarantee: {guarantee_note(f, rule, level)}"


def calibrate(args) -> int:
    est = load_model(args.model, args.device)
    X = read_source(args.normal_data, args.stream)
    est.calibrate(X)
    est.save(args.model)
    n = len(est.calibration_scores_)
    say(args, f"calibrated {args.model} on {n} normal rows{streamed(X)}: p-values resolve down to {1 / (n + 1):.3g}, "
              f"and --fpr A needs A >= {1 / (n + 1):.3g} to flag anything; saved to {args.model}")
    return 0
