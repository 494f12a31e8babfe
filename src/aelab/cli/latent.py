"""Commands on the latent space: ``encode``, ``decode``, ``generate`` and ``cluster``."""

from __future__ import annotations

from pathlib import Path

from .._validation import is_source
from ..io.streaming import ROW_STREAM_EXTENSIONS
from ._common import (add_command, add_data, add_labels, add_model, add_out, add_stream, check_out, load_model,
                      positive_int, read_data, read_labels, read_source, say, streamed, write_out)


def register(sub) -> None:
    p = add_command(sub, "encode", encode, "the latent code of every row of DATA",
                    "aelab encode vae-model mnist:test --out codes.npy")
    add_model(p)
    add_data(p)
    add_out(p, "the codes, one row per sample")
    add_stream(p)

    p = add_command(sub, "decode", decode, "decode latent codes back to data",
                    "aelab decode vae-model codes.npy --out decoded.npy")
    add_model(p)
    add_data(p, "CODES", help="latent codes, one row of latent_dim numbers per sample")
    add_out(p, "the decoded samples (tables get one flattened row per sample)")

    p = add_command(sub, "generate", generate, "new samples from the model",
                    "aelab generate vae-model -n 64 --seed 0 --out samples.npy",
                    description="New samples: decoded draws from the prior N(0, I) for a VAE, from a Gaussian "
                                "fitted to the training codes for an autoencoder or PCA.")
    add_model(p)
    p.add_argument("-n", type=positive_int, required=True, metavar="N", help="how many samples")
    p.add_argument("--seed", type=int, metavar="S", help="random seed, for reproducible samples")
    add_out(p, "the samples (tables get one flattened row per sample)")

    p = add_command(sub, "cluster", cluster, "k-means clustering in the latent space",
                    "aelab cluster vae-model mnist:sample --k 10 --labels mnist:sample --out clusters.npy")
    add_model(p)
    add_data(p)
    p.add_argument("--k", type=positive_int, required=True, metavar="K", help="number of clusters")
    add_labels(p, "true classes, to score the clusters (ARI, NMI)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed of k-means (default: 0)")
    add_out(p, "the cluster index of each row", required=False)


def encode(args) -> int:
    from ..latent import encode_to_file

    est = load_model(args.model, args.device)
    check_out(args.out)
    X = read_source(args.data, args.stream)
    if is_source(X) and Path(args.out).suffix.lower() in ROW_STREAM_EXTENSIONS:
        encode_to_file(est, X, args.out)  # chunk by chunk into the file: memory stays bounded
        shape = (len(X), est.model_cfg_.latent_dim)
    else:
        Z = est.transform(X)
        write_out(args.out, Z)
        shape = Z.shape
    say(args, f"wrote {shape[0]} codes of {shape[1]} dimensions{streamed(X)} to {args.out}")
    return 0


def decode(args) -> int:
    est = load_model(args.model, args.device)
    check_out(args.out)
    X = est.inverse_transform(read_data(args.codes))
    write_out(args.out, X)
    say(args, f"wrote {len(X)} decoded samples of shape {X.shape[1:]} to {args.out}")
    return 0


def generate(args) -> int:
    est = load_model(args.model, args.device)
    check_out(args.out)
    X = est.sample(args.n, random_state=args.seed)
    write_out(args.out, X)
    say(args, f"wrote {len(X)} samples of shape {X.shape[1:]} to {args.out}")
    return 0


def cluster(args) -> int:
    from ..latent import cluster as cluster_codes
    from ..report import format_table

    est = load_model(args.model, args.device)
    if args.out:
        check_out(args.out)
    X = read_data(args.data)
    result = cluster_codes(est, X, args.k, labels=read_labels(args.labels, len(X)), random_state=args.seed)
    if args.out:
        write_out(args.out, result["labels"])
    print(format_table([{k: v for k, v in result.items() if k != "labels"}]))
    return 0
