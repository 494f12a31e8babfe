"""``aelab explain``: the features (pixels, objects) behind each flag, as a table and a summary."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..defaults import N_PERMUTATIONS
from ..exceptions import ConfigError, DataError
from ._common import add_command, add_data, add_model, load_model, positive_int, read_data, say

TABLE_SUFFIXES = (".csv", ".parquet")
COLUMNS = ("row", "rank", "feature", "value", "contribution")
SHOWN_ROWS = 5  # rows summarised on the console, most anomalous first


def register(sub) -> None:
    p = add_command(sub, "explain", explain, "the features (pixels, objects) behind each flag",
                    "aelab explain model events.csv --top 5 --out why.csv",
                    description="Contributions of every input value to the anomaly score of the flagged rows "
                                "(or --rows): the exact decomposition of the score ('error') or Shapley values "
                                "against training rows ('shapley'); see docs/explain.md. Writes a table with "
                                "the columns row, rank, feature, value, contribution and prints the top "
                                "features of the most anomalous rows.")
    add_model(p)
    add_data(p)
    p.add_argument("--rows", default="flagged", metavar="flagged|all|IDX",
                   help="which rows of DATA to explain: 'flagged' (default: score above the model's threshold), "
                        "'all', or row indices such as 3,17,40-59 (counted from 0)")
    p.add_argument("--top", type=positive_int, default=5, metavar="K",
                   help="contributions kept per row, largest first (default 5)")
    p.add_argument("--out", "-o", metavar="FILE", help="where to write the table (.csv or .parquet); "
                                                       "an existing file is replaced only on success")
    p.add_argument("--method", choices=("auto", "error", "shapley"), default="auto",
                   help="'error': exact decomposition of the score; 'shapley': Shapley values against "
                        "training rows; 'auto' (default): the best available for the model")
    p.add_argument("--background", metavar="DATA",
                   help="training rows for 'shapley' (default: the rows the model keeps, if any)")
    p.add_argument("--nearest", type=positive_int, metavar="N",
                   help="'shapley' against each row's N most similar background rows instead of all of them "
                        "(default: 20 for images, all for tables)")
    p.add_argument("--dependence", choices=("auto", "gaussian", "independent"), default="auto",
                   help="how 'shapley' fills the features outside a coalition: 'gaussian' (moved with the others "
                        "along the training rows' correlations; tables' default) or 'independent' (taken from a "
                        "training row as it is; images' default)")
    p.add_argument("--permutations", type=positive_int, default=N_PERMUTATIONS, metavar="N",
                   help=f"sampled permutations per row where Shapley values are sampled (default {N_PERMUTATIONS})")


def parse_rows(text: str, n: int, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Row indices named by --rows (sorted, unique)."""
    if text == "all":
        return np.arange(n)
    if text == "flagged":
        return np.flatnonzero(scores > threshold)
    picked = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                a, b = (int(v) for v in part.split("-", 1))
                picked.extend(range(a, b + 1))
            else:
                picked.append(int(part))
        except ValueError:
            raise ConfigError(f"--rows {text!r}: expected 'flagged', 'all' or row indices such as 3,17,40-59; "
                              f"{part!r} is not an index or a range.") from None
    idx = np.unique(np.asarray(picked, dtype=np.int64))
    bad = idx[(idx < 0) | (idx >= n)]
    if len(bad):
        raise DataError(f"--rows names row {int(bad[0])}, but DATA has {n} rows (indices 0 to {n - 1}).")
    return idx


def column_names(spec: str, n_columns: int) -> list[str] | None:
    """The column names of a .csv/.tsv header or a .parquet schema, when DATA has them."""
    path = Path(spec)
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv"):
            from ..io._formats import _first_row, _is_number

            first = _first_row(path, "," if suffix == ".csv" else "\t")
            names = None if first is None or any(_is_number(v) for v in first[1]) else [v.strip() for v in first[1]]
        elif suffix == ".parquet":
            from ..io._formats import open_parquet

            names = list(open_parquet(path).schema_arrow.names)
        else:
            return None
    except (OSError, DataError):
        return None
    return names if names is not None and len(names) == n_columns else None


def base_text(base) -> str:
    return f"{float(base):.4g}" if np.ndim(base) == 0 else f"one per row (mean {float(np.mean(base)):.4g})"


def write_table(path: Path, rows: list[dict]) -> None:
    """The explanation table as .csv or .parquet, atomically."""
    from ..io._common import atomic_path

    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".csv":
            with open(tmp, "w", encoding="utf-8", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(COLUMNS)
                for r in rows:
                    w.writerow([r["row"], r["rank"], r["feature"], repr(r["value"]), repr(r["contribution"])])
        else:
            from ..io._formats import parquet_modules

            pa, pq = parquet_modules("writing .parquet files")
            table = pa.table({c: [r[c] for r in rows] for c in COLUMNS})
            pq.write_table(table, tmp)


def explain(args) -> int:
    est = load_model(args.model, args.device)
    out = None
    if args.out is not None:
        out = Path(args.out)
        if out.suffix.lower() not in TABLE_SUFFIXES:
            raise DataError(f"--out {args.out!r}: the table is written as .csv or .parquet; give a file name "
                            "ending in one of those.")
        if out.is_dir() or not out.parent.is_dir():
            raise DataError(f"cannot write {args.out!r}: it is a folder or its folder does not exist.")
    X = read_data(args.data)
    background = read_data(args.background) if args.background else None
    scores = est.decision_function(X)
    rows = parse_rows(args.rows, len(X), scores, est.threshold_)
    if not len(rows):
        say(args, f"no rows to explain: none of the {len(X)} rows of {args.data} scores above the threshold "
                  f"{est.threshold_:.4g} (use --rows all or --rows IDX to explain others)")
        if out is not None:
            write_table(out, [])
        return 0
    e = est.explain(X[rows], method=args.method, background=background, n_permutations=args.permutations,
                    nearest="auto" if args.nearest is None else args.nearest, dependence=args.dependence)
    if e.feature_names is None:
        names = column_names(args.data, int(np.prod(X.shape[1:])))
        if names is not None:
            from dataclasses import replace

            e = replace(e, feature_names=names)
    table = e.table(X[rows], rows=rows, top=args.top)
    if out is not None:
        write_table(out, table)
    labels = e.labels()
    what = f"{e.method} ({e.algorithm})"
    say(args, f"explained {len(rows)} row(s) of {args.data} by {what}, score {e.score_name}, "
              f"base value {base_text(e.base_value)}" + (f" to {out}" if out is not None else ""))
    flat_x = np.asarray(X[rows], dtype=np.float64).reshape(len(rows), -1)
    for i in np.argsort(-e.score, kind="stable")[:SHOWN_ROWS]:
        top = e.top(args.top)[i]
        parts = ", ".join(f"{labels[j]}={flat_x[i, j]:.4g} ({e.flat[i, j]:+.3g})" for j in top)
        say(args, f"  row {rows[i]}: score {e.score[i]:.4g}; {parts}")
    return 0
