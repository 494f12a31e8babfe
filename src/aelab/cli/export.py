"""``aelab export``: the model as one ONNX file (optionally int8, with its cost) or an hls4ml project."""

from __future__ import annotations

from pathlib import Path

from ..scoring import SCORES
from ._common import add_command, add_model, load_model, read_data, read_labels, say

FORMATS = ("onnx", "hls4ml")
QUANTIZE = ("none", "int8")


def register(sub) -> None:
    from ..export.onnx import OUTPUTS

    p = add_command(sub, "export", export, "the model as one ONNX file (raw input to score) or an hls4ml project",
                    "aelab export ae-model --format onnx --out model.onnx\n"
                    "aelab export ae-model --format onnx --quantize int8 --calibration test.npy "
                    "--labels test-labels.npy --out model-int8.onnx\n"
                    "aelab export ae-model --format hls4ml --precision 'ap_fixed<16,6>' --out hls-project",
                    description="ONNX: one self-contained file whose graph takes raw rows (float32, the shape and "
                                "units of training) and returns the model's anomaly score (or the reconstruction "
                                "or the latent code): scaler, network and fitted score statistics inside. "
                                "--quantize int8 writes an int8 model and prints what it costs against the float "
                                "one. hls4ml: a project folder for FPGA synthesis.")
    add_model(p)
    p.add_argument("--format", choices=FORMATS, default="onnx", help="'onnx' (default) or 'hls4ml'")
    p.add_argument("--out", "-o", required=True, metavar="PATH",
                   help="the .onnx file to write (replaced only on success), or the hls4ml project folder")
    g = p.add_argument_group("onnx")
    g.add_argument("--output", choices=OUTPUTS, default="score",
                   help="what the graph returns: 'score' (default; decision_function), 'reconstruction', 'latent' or "
                        "'attribution' (the score split over the inputs, as explain(method='error'))")
    g.add_argument("--score", choices=SCORES, help="anomaly score of the graph (default: the model's)")
    g.add_argument("--quantize", choices=QUANTIZE, default="none",
                   help="'int8': ONNX Runtime quantisation, dynamic for dense networks, static for conv ones")
    g.add_argument("--calibration", metavar="DATA",
                   help="rows in the model's input shape: calibrate static int8 (needed for conv models; rows "
                        "labelled 0 when --labels is given) and measure int8 against float; for hls4ml, the rows "
                        "of its parity report")
    g.add_argument("--labels", metavar="FILE",
                   help="0/1 labels (1 = anomaly) of the --calibration rows: AUROC and TPR at FPR 1e-3/1e-4 of int8")
    g = p.add_argument_group("hls4ml")
    g.add_argument("--precision", metavar="'ap_fixed<W,I>'", help="fixed-point type of weights and activations")
    g.add_argument("--reuse-factor", type=int, metavar="N", help="multipliers shared N ways (latency vs area)")
    g.add_argument("--io-type", choices=("io_parallel", "io_stream"), help="hls4ml I/O type")
    g.add_argument("--backend", metavar="NAME", help="hls4ml backend, such as Vitis or Vivado")


def export(args) -> int:
    from ..exceptions import ConfigError

    est = load_model(args.model, args.device)
    other = {"onnx": ("precision", "reuse_factor", "io_type", "backend"),
             "hls4ml": ("score", "labels")}[args.format]
    given = [name for name in other if getattr(args, name) is not None]
    given += [n for n, default in (("output", "score"), ("quantize", "none"))
              if args.format == "hls4ml" and getattr(args, n) != default]
    if given:
        other_format = FORMATS[1 - FORMATS.index(args.format)]
        raise ConfigError(f"{', '.join('--' + g.replace('_', '-') for g in given)}: option(s) of --format "
                          f"{other_format}, not {args.format}; drop them or pass --format {other_format}.")
    if args.format == "hls4ml":
        from ..export.hls import format_parity, to_hls

        options = {"precision": args.precision, "reuse_factor": args.reuse_factor, "io_type": args.io_type,
                   "backend": args.backend}
        X = _calibration(est, args.calibration)  # rows for the parity report
        report = to_hls(est, args.out, X=X, **{k: v for k, v in options.items() if v is not None})
        say(args, f"wrote the hls4ml project {args.out} ({report['precision']}, accumulators {report['accum']})")
        print(format_parity(report))
        return 0
    from ..export.onnx import (check_onnx_path, require_onnx, export_onnx, format_int8_cost, int8_cost,
                               quantize_int8)

    out = check_onnx_path(args.out)
    for module in ("onnx", "onnxscript") + (("onnxruntime",) if args.quantize == "int8" else ()):
        require_onnx(module)
    if args.quantize == "none":
        if args.calibration or args.labels:
            raise ConfigError("--calibration and --labels go with --quantize int8.")
        export_onnx(est, out, args.output, args.score)
        say(args, f"wrote {out} ({out.stat().st_size / 1024:,.1f} KiB; input {list(est.input_shape_)} float32, "
                  f"output {args.output}{'' if args.output != 'score' else ' ' + (args.score or est.score_)})")
        return 0
    if args.labels and not args.calibration:
        raise ConfigError("--labels are the labels of the --calibration rows; pass --calibration DATA too.")
    X = _calibration(est, args.calibration)
    y = read_labels(args.labels, len(X)) if args.labels else None
    import shutil
    import tempfile

    from .._fs import atomic_path

    with tempfile.TemporaryDirectory() as tmp:
        float_path = export_onnx(est, Path(tmp) / "float.onnx", args.output, args.score)
        int8_path = quantize_int8(float_path, Path(tmp) / "int8.onnx",
                                  None if X is None else X if y is None else X[y == 0])
        cost = int8_cost(float_path, int8_path, X, y) if X is not None and args.output == "score" else None
        with atomic_path(out) as part:  # the user's file is replaced only once everything above succeeded
            shutil.copyfile(int8_path, part)
        say(args, f"wrote {out} (int8; float {float_path.stat().st_size / 1024:,.1f} KiB, "
                  f"int8 {out.stat().st_size / 1024:,.1f} KiB)")
        if cost is not None:
            print(format_int8_cost(cost))
    return 0


def _calibration(est, spec):
    """The --calibration rows, checked against the model's input shape before any work."""
    if spec is None:
        return None
    from .._validation import check_array, check_sample_shape

    X = check_array(read_data(spec), name=f"--calibration {spec}", dtype=None)
    check_sample_shape(X, tuple(est.input_shape_), "the model", name=f"--calibration {spec}")
    return X
