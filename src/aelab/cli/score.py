"""Commands that apply a saved model: ``score``, ``evaluate``, ``report`` and ``cost``."""

from __future__ import annotations

import re

from ..comm import world_from_env
from ..scoring import SCORES
from . import conformal
from ._common import (add_command, add_data, add_labels, add_model, add_out, add_stream, check_out, load_model,
                      positive_int, read_data, read_labels, read_source, say, streamed, without_nproc, write_out)


def _add_score(p) -> None:
    p.add_argument("--score", choices=SCORES, help="anomaly score (default: the model's; mu_norm, kl, elbo need a VAE)")


def _add_engine(p) -> None:
    p.add_argument("--engine", choices=("torch", "onnxruntime", "auto"), default="torch",
                   help="what computes the scores: 'torch' (default), 'onnxruntime' (the model exported to ONNX "
                        "in memory; extra aelab[onnx]) or 'auto' (onnxruntime when installed, the model is on "
                        "the CPU and DATA has 150,000 rows or more; 2,000 for conv models)")


def _scores(est, X, args, n_total: int | None = None):
    """(scores, engine) from the engine --engine names; both agree to 1e-5 relative. ``n_total``: the rows
    of the whole data set ("auto" picks the engine by it, so every rank of --nproc picks the same)."""
    from ..export.onnx import onnx_scores, pick_engine

    engine = pick_engine(args.engine, est.fitted_, len(X) if n_total is None else n_total)
    if engine == "torch":
        return est.decision_function(X, score=args.score), engine
    from .._columns import check_feature_names

    check_feature_names(X, est.fitted_.feature_names, type(est).__name__)
    return onnx_scores(est.fitted_, X, args.score, owner=type(est).__name__), engine


def register(sub) -> None:
    p = add_command(sub, "score", score, "one anomaly score per row of DATA (higher = more anomalous)",
                    "aelab score vae-model events.parquet --out scores.csv")
    add_model(p)
    add_data(p)
    add_out(p, "the scores")
    _add_score(p)
    add_stream(p)
    _add_engine(p)
    conformal.add_rules(p)
    p.add_argument("--nproc", type=positive_int, default=1, metavar="N",
                   help="score in N processes on this machine, each its own range of rows (torch.distributed); "
                        "the scores are the same bit for bit and in row order, assembled into one --out file at "
                        "the end. Across machines run 'torchrun ... -m aelab score ...' instead")

    p = add_command(sub, "evaluate", evaluate, "detection metrics of the model's scores against known labels",
                    "aelab evaluate vae-model test.npy --labels test-labels.npy",
                    description="ROC AUC, average precision and the true-positive rate at false-positive rates "
                                "1e-2, 1e-3, 1e-4 and 1e-5, from the model's scores on DATA and 0/1 labels "
                                "(1 = anomaly).")
    add_model(p)
    add_data(p)
    p.add_argument("--labels", required=True, metavar="FILE", help="0/1 labels (1 = anomaly), one per row of DATA")
    _add_score(p)
    add_stream(p)
    _add_engine(p)

    p = add_command(sub, "report", report, "a self-contained HTML report of the model on DATA",
                    "aelab report vae-model mnist:test --labels mnist:test --out report.html")
    add_model(p)
    add_data(p)
    add_labels(p, "labels to colour the plots by; 0/1 labels (1 = anomaly) also give a ROC curve")
    p.add_argument("--out", "-o", required=True, metavar="FILE.html", help="the HTML file to write")
    p.add_argument("--title", default=None, help="the report's title")

    p = add_command(sub, "cost", cost, "parameters, MACs, activation memory and latency per sample",
                    "aelab cost vae-model")
    add_model(p)


def score(args) -> int:
    if args.nproc > 1:
        return _launch(args)
    est = load_model(args.model, args.device)
    check_out(args.out)
    X = read_source(args.data, args.stream)
    if conformal.wants_rule(args):
        conformal.check_rule_args(est, args)
    # A streamed X is scored chunk by chunk; only the scores (8 bytes a row) are held.
    if world_from_env() > 1:  # one rank of --nproc or torchrun: its range of rows; rank 0 assembles them
        scores, engine = _rank_scores(est, X, args)
        if scores is None:
            return 0
    else:
        scores, engine = _scores(est, X, args)
    if conformal.wants_rule(args):
        out, summary = conformal.decide(est, X, scores, args)
        write_out(args.out, out)
        say(args, f"wrote {args.out}{streamed(X)}: {summary}")
        return 0
    write_out(args.out, scores)
    say(args, f"wrote {len(scores)} {args.score or est.score_} scores{streamed(X)} by {engine} to {args.out} "
              f"(mean {scores.mean():.4g}, {_above(est, scores, args.score)})")
    return 0


def _parts(out, pid: int):
    """The folder where the ranks of one scoring job leave their parts: a temporary sibling of --out, named
    so that the next write to --out removes it if the job died (aelab._fs.clean_stale)."""
    from pathlib import Path

    out = Path(out)
    return out.parent / f".{out.name}.aelab-tmp-{pid}-parts"


_PART = re.compile(r"\.?rank-\d+\.npy(\.aelab-tmp-\d+-.*)?")  # a rank's part, or its temporary file


def _remove_parts(folder) -> None:
    """Remove the parts the ranks wrote (and their temporary files), then the folder if nothing else is in it:
    a file aelab did not write there is left as it is."""
    import contextlib
    import os

    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if _PART.fullmatch(name):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(folder, name))
    with contextlib.suppress(OSError):
        os.rmdir(folder)


def row_ranges(n: int, world: int) -> list[int]:
    """Where each rank's rows start, and n: contiguous ranges of whole EVAL_ROWS blocks, so that every row meets
    the batch it meets in one process (float32 products are blocked by batch) and the scores agree bit for bit."""
    from ..fitted import EVAL_ROWS

    blocks = -(-n // EVAL_ROWS)
    return [min(n, (blocks * r // world) * EVAL_ROWS) for r in range(world)] + [n]


def _launch(args) -> int:
    """--nproc N: every input is checked here, once, before the ranks start; then N ranks score."""
    import os

    from ..distributed import default_threads, run_cli
    from ..exceptions import ConfigError

    if world_from_env() > 1:
        raise ConfigError("--nproc was given inside a torchrun job; drop --nproc (torchrun sets the ranks).")
    est = load_model(args.model, args.device)
    check_out(args.out)
    X = read_source(args.data, args.stream)
    if conformal.wants_rule(args):
        conformal.check_rule_args(est, args)
    del est, X
    threads = args.threads or default_threads(args.nproc)
    argv = without_nproc(args.argv) + ([] if args.threads else ["--threads", str(threads)])
    say(args, f"scoring in {args.nproc} ranks x {threads} CPU thread(s)")
    try:
        run_cli(args.nproc, argv, threads)
    finally:  # the parts of ranks that failed (the ranks' parent is this process)
        _remove_parts(_parts(args.out, os.getpid()))
    return 0


def _rank_scores(est, X, args):
    """This rank's scores written as a part; on rank 0, after every rank has written, all the scores in row
    order (else None). A rank that fails stops the job before rank 0 assembles anything."""
    import os

    import numpy as np

    from .._fs import atomic_path
    from .._validation import is_source
    from ..distributed import check_launcher, process_group

    n = len(X)
    with process_group() as comm:
        bounds = row_ranges(n, comm.world)
        start, stop = bounds[comm.rank], bounds[comm.rank + 1]
        part = X.rows(start, stop) if is_source(X) else X[start:stop]
        if stop > start:
            scores, engine = _scores(est, part, args, n_total=n)
        else:
            scores, engine = np.empty(0, dtype=np.float64), args.engine
        # named after rank 0's parent (the launcher of --nproc, or torchrun's agent on rank 0's machine): one
        # folder for the job, on every machine that shares the output's file system
        from pathlib import Path

        folder = Path(comm.broadcast(str(_parts(args.out, os.getppid()))))
        folder.mkdir(exist_ok=True)
        with atomic_path(folder / f"rank-{comm.rank}.npy") as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, np.asarray(scores, dtype=np.float64))
        comm.gather(None)  # every rank has written its part
        if comm.rank != 0:
            return None, engine
        check_launcher(f"the scores {str(args.out)!r}")
        scores = np.concatenate([np.load(folder / f"rank-{r}.npy") for r in range(comm.world)])
        _remove_parts(folder)
    return scores, f"{engine} in {comm.world} ranks"


def _above(est, scores, score) -> str:
    """The share of rows above the threshold of the score asked for; the model's threshold is for its
    default score only, so another score has none."""
    if score is not None and score != est.score_:
        return (f"no threshold for the {score} score: the model's threshold {est.threshold_:.4g} is for its "
                f"default score {est.score_}")
    return f"{(scores > est.threshold_).mean():.2%} above the threshold {est.threshold_:.4g}"


def evaluate(args) -> int:
    from ..report import detection_rows, format_table

    est = load_model(args.model, args.device)
    X = read_source(args.data, args.stream)
    y = read_labels(args.labels, len(X))
    print(format_table(detection_rows(y, _scores(est, X, args)[0])))
    return 0


def report(args) -> int:
    from ..report import model_report, write_report

    est = load_model(args.model, args.device)
    check_out(args.out, (".html", ".htm"))
    X = read_data(args.data)
    sections = model_report(est, X, read_labels(args.labels, len(X)))
    write_report(args.out, sections, title=args.title or f"aelab report: {args.model} on {args.data}")
    say(args, f"wrote {args.out} ({len(sections)} sections)")
    return 0


def cost(args) -> int:
    from ..nn import cost as model_cost, format_cost

    est = load_model(args.model, args.device)
    print(format_cost(model_cost(est)))
    return 0
