"""One self-contained HTML report: sections of text, tables and figures.

The file needs nothing else: figures are PNG images embedded as base64 data
URIs, the CSS is inline, there is no JavaScript and no network request. Open it
in any browser, attach it to an e-mail, or keep it next to a trained model.

>>> from aelab.report import Section, write_report
>>> write_report("report.html", [Section("Results", "Two numbers.", tables={"scores": [{"auc": 0.97}]})])  # doctest: +SKIP
"""

from __future__ import annotations

import json

import base64
import html
import io
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Section", "format_table", "render_html", "write_report", "model_report", "why_flagged"]

Rows = Sequence[Mapping[str, Any]]


@dataclass
class Section:
    """One part of a report.

    ``text`` is plain text (blank lines separate paragraphs); ``tables`` maps a
    caption to rows (a list of dicts, one per row, sharing their keys as
    columns); ``figures`` maps a caption to a matplotlib Figure.
    """

    title: str
    text: str = ""
    tables: dict[str, Rows] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)


def _fmt(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value)


def _columns(rows: Rows) -> list[str]:
    return list(dict.fromkeys(key for row in rows for key in row))


def format_table(rows: Rows, title: str | None = None) -> str:
    """Rows (a list of dicts) as an aligned plain-text table for the console; numbers right-aligned."""
    cols = _columns(rows)
    values = [[row.get(c, "") for c in cols] for row in rows]
    cells = [cols] + [[_fmt(v) for v in r] for r in values]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cols))]
    numeric = [[False] * len(cols)] + [[isinstance(v, (int, float, np.number)) for v in r] for r in values]
    lines = ["  ".join((c.rjust(w) if num else c.ljust(w)) for c, w, num in zip(r, widths, nums)).rstrip()
             for r, nums in zip(cells, numeric)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(([title] if title else []) + lines)


def _png_data_uri(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _table_html(caption: str, rows: Rows) -> str:
    cols = _columns(rows)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(row.get(c, '')))}</td>" for c in cols) + "</tr>" for row in rows
    )
    return f"<table><caption>{html.escape(caption)}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #345;padding-bottom:.2em}
h2{margin-top:2em;border-bottom:1px solid #ccc;padding-bottom:.1em}
nav ol{columns:2}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}
caption{text-align:left;font-weight:600;padding:.3em 0}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#eef2f6}
td:first-child,th:first-child{text-align:left}
figure{margin:1em 0;display:inline-block;vertical-align:top}
figure img{max-width:100%;height:auto;border:1px solid #ddd}
figcaption{font-size:.85em;color:#555}
footer{margin-top:3em;font-size:.8em;color:#777}
"""


def render_html(sections: Sequence[Section], title: str = "aelab report") -> str:
    """The report as one HTML string (figures rendered to embedded PNGs)."""
    from ._version import __version__

    parts = []
    for i, sec in enumerate(sections):
        paras = "".join(f"<p>{html.escape(p.strip())}</p>" for p in sec.text.split("\n\n") if p.strip())
        tables = "".join(_table_html(cap, rows) for cap, rows in sec.tables.items() if rows)
        figures = "".join(
            f'<figure><img src="{_png_data_uri(fig)}" alt="{html.escape(cap, quote=True)}">'
            f"<figcaption>{html.escape(cap)}</figcaption></figure>"
            for cap, fig in sec.figures.items()
        )
        parts.append(f'<section id="s{i}"><h2>{html.escape(sec.title)}</h2>{paras}{tables}{figures}</section>')
    nav = "".join(f'<li><a href="#s{i}">{html.escape(s.title)}</a></li>' for i, s in enumerate(sections))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><nav><ol>{nav}</ol></nav>{''.join(parts)}"
        f"<footer>Written by aelab {html.escape(__version__)}.</footer></body></html>\n"
    )


def write_report(path: str | os.PathLike, sections: Sequence[Section], title: str = "aelab report") -> Path:
    """Write the report to ``path`` atomically: an existing file is replaced only once the new one is complete."""
    from .io._common import atomic_path

    text = render_html(sections, title)  # render first: a failing figure leaves the old file untouched
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def detection_rows(y_true: Any, scores: Any, fprs: Sequence[float] = (1e-2, 1e-3, 1e-4, 1e-5)) -> list[dict]:
    """ROC AUC, average precision and the TPR at each FPR as table rows (one per metric).

    An FPR below 1/(number of normal samples) cannot be measured on this data; its
    row says how many normal samples it would need instead of giving a number.
    """
    from .metrics import average_precision, roc_auc, tpr_at_fpr

    n_normal = int(np.sum(np.asarray(y_true) == 0))
    rows = [
        {"metric": "ROC AUC", "value": float(roc_auc(y_true, scores))},
        {"metric": "average precision", "value": float(average_precision(y_true, scores))},
    ]
    for f in fprs:
        value: Any = float(tpr_at_fpr(y_true, scores, f)) if f * n_normal >= 1 else (
            f"n/a: needs {math.ceil(1 / f):,} normal samples, has {n_normal:,}")
        rows.append({"metric": f"TPR at FPR {f:g}", "value": value})
    return rows


def model_report(estimator: Any, X: Any, labels: Any = None, *, max_points: int = 3000) -> list[Section]:
    """Report sections for a fitted estimator on data ``X``.

    Always: the model's settings, the score distribution and the latent space;
    reconstructions when ``X`` holds images; the training curves when the model
    has a training history; the ROC curve and detection metrics when ``labels``
    are binary (1 = anomaly). Other labels (digit classes, ...) colour the
    histograms and the latent scatter.
    """
    from . import plots
    from ._columns import NamedArray, feature_names
    from ._validation import check_array

    names = feature_names(X)
    X = check_array(X)
    if names is not None and X.ndim == 2 and X.shape[1] == len(names):  # the model checks the columns
        X = NamedArray(X, names)
    y = None if labels is None else np.asarray(labels).ravel()
    if y is not None and len(y) != len(X):
        from .exceptions import DataError

        raise DataError(f"labels has {len(y)} entries but X has {len(X)} rows; pass one label per row of X.")
    scores = np.asarray(estimator.decision_function(X), dtype=float)
    threshold = getattr(estimator, "threshold_", None)
    params = {k: v for k, v in estimator.get_params().items() if not callable(v)}
    overview = [{"samples": len(X), "input shape": str(tuple(X.shape[1:])), "mean score": float(scores.mean())}]
    if threshold is not None:
        overview[0].update(threshold=float(threshold), flagged=float(np.mean(scores > threshold)))
    sections = [
        Section(
            f"Model: {type(estimator).__name__}",
            "The model's settings and how it scores this data. Higher scores are more anomalous; "
            "rows above the threshold are flagged as anomalies.",
            tables={"data and scores": overview, "settings": [{"parameter": k, "value": v} for k, v in params.items()]},
        )
    ]
    # reconstructions are drawn for what the model read as images (the fitted layout), never for tables
    images = plots.as_images(X) if estimator.input_kind_ == "image" else None
    if images is not None:
        rec = estimator.reconstruct(X[:10])
        sections.append(
            Section(
                "Reconstructions",
                "The first inputs (top) and the model's reconstructions of them (bottom). "
                "What the bottleneck cannot carry is lost: blur, fine strokes, unusual shapes.",
                figures={"originals and reconstructions": plots.reconstruction_grid(X[:10], rec)},
            )
        )
    binary = y is not None and set(np.unique(y).tolist()) == {0, 1}
    score_sec = Section(
        "Anomaly scores",
        "The distribution of the anomaly score" + (" per class" if y is not None else "") + " on a log scale.",
        figures={"score histogram": plots.score_histogram(
            scores, y, threshold=threshold, names={0: "normal (0)", 1: "anomaly (1)"} if binary else None)},
    )
    if binary:
        score_sec.text += " Label 1 marks the anomalies: the ROC curve shows how well the score separates them."
        score_sec.tables["detection metrics"] = detection_rows(y, scores)
        score_sec.figures["ROC curve (log FPR)"] = plots.roc_curves(y, {str(estimator.score_): scores})
    sections.append(score_sec)
    decisions = decision_section(estimator, scores, y if binary else None)
    if decisions is not None:
        sections.append(decisions)
    sections.append(why_flagged(estimator, X, scores))
    keep = np.random.default_rng(0).permutation(len(X))[:max_points]
    Z = estimator.transform(X[keep])
    sections.append(
        Section(
            "Latent space",
            f"The {Z.shape[1]}-dimensional codes of {len(keep)} inputs"
            + (", shown on their first two principal components." if Z.shape[1] > 2 else "."),
            figures={"latent codes": plots.latent_scatter(Z, None if y is None else y[keep])},
        )
    )
    history = getattr(estimator, "history_", None) or {}
    if any(len(v) for v in history.values()):
        sections.append(
            Section(
                "Training",
                "Loss per epoch on the training data and on the held-out validation part.",
                figures={"training curves": plots.training_curves(history)},
            )
        )
    return sections


def decision_section(estimator: Any, scores: np.ndarray, y: np.ndarray | None = None) -> Section | None:
    """The conformal p-values of the rows and the flags under each rule (threshold, fpr, fdr); None without
    held-out calibration scores (PCA's are its training rows until ``calibrate``: no guarantee to show).
    ``y``: 0/1 labels, which add the false share among the flags and the anomalies found."""
    from . import plots
    from .conformal import assumption, bh_flags, estimate_contamination, pvalues

    f = estimator.fitted_
    cal = f.calibration
    if cal is None or len(cal) == 0 or len(scores) < 2 or f.calibration_info.get("source") == "training":
        return None
    p = pvalues(scores, cal)
    rules = {f"threshold_ ({json.dumps(f.threshold_rule)})": scores > f.threshold}
    for a in (0.01, 0.001):
        rules[f"fpr <= {a:g}"] = p <= a
    for q in (0.05, 0.1):
        rules[f"fdr <= {q:g} (Benjamini-Hochberg)"] = bh_flags(p, q).astype(bool)
    rows = []
    for name, flag in rules.items():
        row = {"rule": name, "flagged": int(flag.sum()), "share": float(flag.mean())}
        if y is not None:
            row["normal among flags"] = float((flag & (y == 0)).sum() / max(flag.sum(), 1))
            row["anomalies found"] = float(flag[y == 1].mean()) if (y == 1).any() else float("nan")
        rows.append(row)
    clean = f.calibration_info.get("clean", False)
    groups = {"all rows": p} if y is None else {"normal (0)": p[y == 0], "anomaly (1)": p[y == 1]}
    text = ("Conformal p-values against the model's calibration scores: the share of normal rows that look at "
            "least as anomalous. Normal rows have uniform p-values; anomalies pile up near 0. The rule fpr <= a "
            "flags at most a share a of fresh normal rows; fdr <= q keeps the expected share of normal rows among "
            f"the flags at most q. Both hold {assumption(f)}.")
    if clean:
        text += f" Estimated share of anomalies in these rows (Storey): {estimate_contamination(scores, cal):.3f}."
    return Section("Decisions with guarantees", text,
                   tables={"flags under each rule": rows},
                   figures={"p-value histogram": plots.histograms({k: v for k, v in groups.items() if v.size},
                                                                  bins=20, log=False, xlabel="conformal p-value",
                                                                  title="p-values")})
def why_flagged(estimator: Any, X: Any, scores: np.ndarray, n: int = 5, top: int = 3) -> Section:
    """"Why flagged": the ``n`` most anomalous rows explained (``estimator.explain``, method "auto").

    Tables: each row's ``top`` features, their values and where they lie against the training
    data (in training standard deviations from the mean for standardised columns, else within
    the training range, 0 = minimum, 1 = maximum). Images: the image, its reconstruction and
    the attribution map side by side; the map holds Shapley values against the 20 most similar
    unflagged images of X (up to 200 of them) where X has at least 20, else the "error" decomposition
    (intensity images: always the exact per-pixel split of their density score).
    """
    from . import plots

    rows = np.argsort(-scores, kind="stable")[:n]
    background = None
    if estimator.input_kind_ == "image":  # images: Shapley values against the unflagged images most like each
        threshold = getattr(estimator, "threshold_", None)
        calm = np.flatnonzero(scores < threshold)[:200] if threshold is not None else np.zeros(0, int)
        background = X[calm] if len(calm) >= 20 else None
    e = estimator.explain(X[rows], background=background)
    how = f"{e.method} ({e.algorithm}"
    how += ", exact)" if e.exact else ", sampled)"
    text = (f"The {len(rows)} most anomalous rows and the inputs behind their scores, by {how}: each row's "
            f"contributions add up to its score minus the base value {float(np.mean(e.base_value)):.4g}. "
            "See docs/explain.md.")
    if estimator.input_kind_ == "image" and plots.as_images(X[rows]) is not None:
        rec = estimator.reconstruct(X[rows])
        return Section("Why flagged", text, figures={
            "most anomalous inputs, reconstructions and contributions":
                plots.attribution_rows(X[rows], rec, e.contributions, n=n)})
    scaled = estimator.fitted_.scaler.transform(np.asarray(X[rows])).reshape(len(rows), -1)
    unit = "sd from the training mean" if estimator.fitted_.scaler.kind == "standard" else "in the training range"
    labels = e.labels()
    values = np.asarray(X[rows], dtype=np.float64).reshape(len(rows), -1)
    table = []
    for i, idx in enumerate(e.top(top)):
        for rank, j in enumerate(idx, 1):
            table.append({"row": int(rows[i]), "score": float(e.score[i]), "rank": rank, "feature": labels[j],
                          "value": float(values[i, j]), f"scaled ({unit})": float(scaled[i, j]),
                          "contribution": float(e.flat[i, j])})
    return Section("Why flagged", text, tables={"top features of the most anomalous rows": table})
