"""Commands that write a model folder: ``train`` and ``threshold``."""

from __future__ import annotations

from pathlib import Path

from ..comm import world_from_env
from ..exceptions import ConfigError
from ._common import (add_command, add_data, add_model, add_stream, load_model, positive_int, progress, rate,
                      read_config, read_source, say, streamed, without_nproc)

#: --model choice -> (estimator class, preset parameters, description)
PRESETS = {
    "ae": ("Autoencoder", {}, "autoencoder"),
    "dae": ("Autoencoder", {"noise": 0.2}, "denoising autoencoder (noise=0.2)"),
    "sae": ("Autoencoder", {"sparsity": 1e-3}, "sparse autoencoder (L1 weight 1e-3 on the code)"),
    "linear": ("Autoencoder", {"linear": True}, "linear autoencoder (the PCA-equivalent)"),
    "vae": ("VAE", {}, "variational autoencoder"),
    "pca": ("PCA", {}, "PCA (closed form)"),
}


def register(sub) -> None:
    p = add_command(sub, "train", train, "train a model on DATA and save it",
                    "aelab train mnist:sample --model vae --latent-dim 2 --epochs 20 --out vae-model\n"
                    "aelab train events.parquet --model ae --config ae.toml --out ae-model",
                    description="Train a model on DATA and save it as a folder (config.json, weights.safetensors, "
                                "meta.json). --config FILE (TOML, YAML or JSON) sets any estimator parameter, "
                                "e.g. latent_dim = 8 or hidden = [256, 64]; flags override the file.")
    add_data(p, help="training data")
    add_stream(p)
    p.add_argument("--model", "-m", choices=PRESETS, default="ae",
                   help="; ".join(f"{k}: {v[2]}" for k, v in PRESETS.items()) + " (default: ae)")
    p.add_argument("--latent-dim", "-k", type=positive_int, metavar="K", help="size of the code (PCA: n_components)")
    p.add_argument("--epochs", type=positive_int, metavar="N", help="maximum training epochs (not for pca)")
    p.add_argument("--seed", type=int, metavar="S", help="random seed (random_state), for reproducible results")
    p.add_argument("--config", "-c", metavar="FILE", help="estimator parameters in a .toml, .yaml or .json file")
    p.add_argument("--novelty", action="store_true",
                   help="DATA holds normal samples only (clean training data): no trimmed loss, and tables get "
                        "the score knn; without it DATA may hide anomalies")
    p.add_argument("--input-kind", choices=("auto", "table", "image"),
                   help="how to read DATA: 'auto' (default) reads 3-D arrays whose values look like pixels "
                        "(uint8, in [0, 1], or whole numbers in [0, 255]) and non-negative 3-D arrays of at "
                        "least 8 x 8 (intensity images such as jet images) as images, and other 3-D arrays, "
                        "such as collider events (n, objects, features), as tables")
    from ..preprocessing import DEFAULT_INTENSITY, INTENSITY

    p.add_argument("--intensity", choices=INTENSITY, metavar="STEPS",
                   help="per-image steps for intensity images (non-negative images that are not pixels, such as "
                        f"jet images): one of {', '.join(INTENSITY)}; 'auto' (default) takes {DEFAULT_INTENSITY} "
                        "for them and none for other data (docs/physics.md)")
    p.add_argument("--out", "-o", required=True, metavar="MODEL", help="model folder to write (replaced only on success)")
    g = p.add_argument_group("scale and resume (see docs/scale.md)")
    g.add_argument("--nproc", type=positive_int, default=1, metavar="N",
                   help="data-parallel ranks on this machine (torch.distributed, gloo on CPU, NCCL on CUDA); "
                        "each reads 1/N of the rows; batch_size and --threads are per rank (default: "
                        "the cores shared evenly). Across machines run 'torchrun ... -m aelab train ...' instead")
    g.add_argument("--checkpoint-every", type=positive_int, metavar="K",
                   help="save the training state every K epochs (safetensors + JSON, atomic)")
    g.add_argument("--checkpoint-dir", metavar="DIR",
                   help="where --checkpoint-every writes (default: MODEL.checkpoint, or the --resume folder)")
    g.add_argument("--resume", metavar="CKPT",
                   help="continue an interrupted run from its checkpoint folder (same DATA and settings)")

    p = add_command(sub, "threshold", threshold, "set a model's threshold from known-normal data and save it",
                    "aelab threshold vae-model normal.npy --fpr 1e-3")
    add_model(p)
    add_data(p, "NORMAL_DATA", help="known-normal data")
    add_stream(p)
    rule = p.add_mutually_exclusive_group(required=True)
    rule.add_argument("--fpr", type=rate, help="target false-positive rate on NORMAL_DATA, e.g. 1e-3")
    rule.add_argument("--contamination", type=rate, help="share of NORMAL_DATA to flag (a percentile threshold)")


def _estimator(args):
    import aelab

    cls_name, preset, _ = PRESETS[args.model]
    cls = getattr(aelab, cls_name)
    valid = list(cls().get_params())
    flags = {"n_components" if args.model == "pca" else "latent_dim": args.latent_dim, "epochs": args.epochs,
             "random_state": args.seed, "verbose": progress(args) if "verbose" in valid else None,
             "input_kind": args.input_kind, "device": None if args.device == "auto" else args.device,
             "novelty": True if args.novelty else None, "intensity": args.intensity}
    if args.epochs is not None and "epochs" not in valid:
        raise ConfigError(f"--epochs does not apply to --model {args.model}: it is fitted in closed form. Drop --epochs.")
    # a config file may still use a renamed parameter's old name (the estimator warns and maps it)
    config = read_config(args.config, valid + list(cls._renamed_params))
    params = {**preset, **config, **{k: v for k, v in flags.items() if v is not None}}
    return cls(**params)


def train(args) -> int:
    from ..distributed import _check_fit_rows, check_launcher, default_threads, process_group, run_cli

    est = _estimator(args)
    out = Path(args.out)
    _check_outputs(args, out)
    if args.nproc > 1:
        if world_from_env() > 1:
            raise ConfigError("--nproc was given inside a torchrun job; drop --nproc (torchrun sets the ranks).")
        X = read_source(args.data, args.stream)  # bad data fails here, once, before any rank starts
        _check_fit_rows(est, X, args.nproc, what=f"DATA ({args.data})", option="--nproc ")
        threads = args.threads or default_threads(args.nproc)
        argv = without_nproc(args.argv) + ([] if args.threads else ["--threads", str(threads)])
        say(args, f"training on {args.nproc} ranks x {threads} CPU thread(s) (torch.distributed, "
                  f"{'NCCL' if est.device != 'cpu' and _cuda() else 'gloo'})")
        run_cli(args.nproc, argv, threads)
        return 0
    checkpoint_dir = args.checkpoint_dir or (
        (args.resume or f"{out}.checkpoint") if args.checkpoint_every else None)
    fit_kwargs = {"checkpoint_dir": checkpoint_dir, "checkpoint_every": args.checkpoint_every or 1,
                  "resume": args.resume}
    X = read_source(args.data, args.stream)
    with process_group() as comm:
        est.fit(X, **fit_kwargs)
        if comm.rank != 0:
            return 0
    check_launcher(f"the model {str(out)!r}")  # a rank of --nproc whose launcher ended writes nothing
    est.save(out)
    loss = {k: v[-1] for k, v in est.history_.items() if v}
    say(args, f"trained {type(est).__name__} on {len(X)} samples of shape {tuple(X.shape[1:])} "
              f"(read as {'images' if est.input_kind_ == 'image' else 'a table'}){streamed(X)}"
              + (f" for {len(est.history_['loss'])} epochs, " + ", ".join(f"{k} {v:.4g}" for k, v in loss.items())
                 if loss else "") + f"; threshold {est.threshold_:.4g}"
              + (f" (contamination estimated at {est.contamination_:.3g})" if est.contamination_ is not None else "")
              + f"; saved to {out}")
    return 0


def _check_outputs(args, out: Path) -> None:
    """Every folder the run will write is checked before any work (exit 2 with the fix)."""
    from .._fs import check_owned

    if args.checkpoint_dir and not args.checkpoint_every:
        raise ConfigError("--checkpoint-dir names where --checkpoint-every K saves the training state, but "
                          "--checkpoint-every was not given, so nothing would be saved; add --checkpoint-every 1 "
                          "(or drop --checkpoint-dir).")
    check_owned(out, "model")
    if args.checkpoint_every:
        ck = Path(args.checkpoint_dir or args.resume or f"{out}.checkpoint")
        a, b = out.resolve(), ck.resolve()
        if a == b or a in b.parents or b in a.parents:
            raise ConfigError(f"--checkpoint-dir {str(ck)!r} and --out {str(out)!r} are the same folder or one "
                              "holds the other; the model and the checkpoint need folders of their own. Give "
                              f"--checkpoint-dir another path, such as {str(out)}.checkpoint.")
        check_owned(ck, "checkpoint")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def threshold(args) -> int:
    est = load_model(args.model, args.device)
    X = read_source(args.normal_data, args.stream)
    est.set_threshold(X, fpr=args.fpr, contamination=args.contamination)
    est.save(args.model)
    rule = f"FPR {args.fpr:g}" if args.fpr else f"contamination {args.contamination:g}"
    swap = est.threshold_rule_.get("scores")  # rows of the fit were replaced by the calibration rows
    note = f"; rows of the fit replaced by the calibration rows: conformal threshold on {est.threshold_rule_['n']}" if swap else ""
    say(args, f"threshold {est.threshold_:.6g} ({rule} on {len(X)} normal samples{streamed(X)}{note}); "
              f"saved to {args.model}")
    return 0
