"""What every command shares: argument types, reading data and models, errors and exit codes."""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..exceptions import AelabError, ConfigError, DataError, TrainingError, require

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
BUILTIN_DATA = ("mnist:sample", "mnist:train", "mnist:test")

#: Formats read lazily, a chunk at a time (aelab.io.open_array), and so streamed when large.
STREAMABLE = (".npy", ".h5", ".hdf5", ".parquet")
#: Files of a streamable format at least this large are streamed by --stream auto
#: (environment variable AELAB_STREAM_BYTES overrides it).
STREAM_BYTES = 256 * 2**20


class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors and examples kept as written in the epilog."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}. See '{self.prog} --help'.\n")


def options() -> argparse.ArgumentParser:
    """The options every command takes."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("general")
    g.add_argument("--quiet", "-q", action="store_true", help="no progress bars or summaries, only errors")
    g.add_argument("--debug", action="store_true", help="show the full traceback when something fails")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where models run: 'auto' (default) takes CUDA when present, or $AELAB_DEVICE when set")
    g.add_argument("--threads", type=positive_int, metavar="N",
                   help="CPU threads for PyTorch (default: PyTorch's own choice, one per core)")
    return p


def add_command(sub, name: str, func: Callable, help: str, example: str, description: str | None = None):
    """A subcommand with the shared options; ``example`` goes into its --help epilog."""
    p = sub.add_parser(name, help=help, description=textwrap.fill(description or help, 79), parents=[options()],
                       epilog="example:\n  " + example.strip().replace("\n", "\n  "))
    p.set_defaults(func=func)
    return p


# ---------------------------------------------------------------- argument types
def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def rate(text: str) -> float:
    """A number in (0, 1), such as a false-positive rate."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1 such as 1e-3, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number strictly between 0 and 1 such as 1e-3, got {text!r}")
    return value


def add_data(p: argparse.ArgumentParser, name: str = "DATA", help: str = "input data") -> None:
    p.add_argument(name.lower(), metavar=name,
                   help=f"{help}: a .npy/.npz/.csv/.tsv/.parquet/.h5 file, an image folder, or {', '.join(BUILTIN_DATA)}")


def add_stream(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stream", choices=("auto", "always", "never"), default="auto",
                   help="read DATA a chunk at a time instead of loading it whole: 'auto' (default) streams "
                        f".npy, .h5 and .parquet files of {STREAM_BYTES // 2**20} MiB or more "
                        "(AELAB_STREAM_BYTES sets the size), so memory stays bounded whatever the file size")


def add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="a model folder written by 'aelab train'")


def add_out(p: argparse.ArgumentParser, what: str, required: bool = True) -> None:
    p.add_argument("--out", "-o", required=required, metavar="FILE",
                   help=f"where to write {what} (.npy, .csv, .parquet, .npz, .tsv or .h5, by extension); "
                        "an existing file is replaced only on success")


def add_labels(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--labels", metavar="FILE", help=f"{help}: a file with one label per row of DATA, or a built-in name")


def without_nproc(argv: list[str]) -> list[str]:
    """``argv`` without its --nproc option: what each rank of a launched command runs."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


# ---------------------------------------------------------------- reading and writing
def read_data(spec: str, labels: bool = False) -> np.ndarray:
    """The array (or, with ``labels=True``, the labels) named by a path or a built-in name."""
    if spec in BUILTIN_DATA:
        from ..datasets import load_mnist

        X, y = load_mnist(split=spec.split(":")[1])
        return y if labels else X
    if spec.startswith("mnist:"):
        raise DataError(f"unknown built-in data {spec!r}; use one of {', '.join(BUILTIN_DATA)}.")
    from ..io import read_array

    arr = np.asarray(read_array(spec))
    if not labels and arr.ndim == 2:  # a CSV header or a Parquet schema: fit records the names, scoring checks them
        from .._columns import NamedArray, file_column_names

        names = file_column_names(spec)
        if names is not None and len(names) == arr.shape[1]:
            arr = NamedArray(arr, names)
    if labels:
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 1:
            raise DataError(f"labels in {spec!r} have shape {arr.shape}; expected one value per row (a single column).")
    return arr


def stream_bytes() -> int:
    """The file size from which ``--stream auto`` streams: $AELAB_STREAM_BYTES, else STREAM_BYTES."""
    text = os.environ.get("AELAB_STREAM_BYTES", "").strip()
    if not text:
        return STREAM_BYTES
    try:
        value = int(float(text))
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigError(f"AELAB_STREAM_BYTES={text!r} is not a size in bytes; set it to a whole number "
                          f"such as {STREAM_BYTES} ({STREAM_BYTES // 2**20} MiB) or unset it.")
    return value


def read_source(spec: str, stream: str = "auto"):
    """DATA for commands that can stream it: a chunked ``ArraySource`` or an in-memory array.

    ``stream="auto"`` streams .npy, .h5/.hdf5 and .parquet files of at least :func:`stream_bytes`
    bytes, ``"always"`` streams any file of those formats, ``"never"`` loads the data whole.
    """
    if stream == "never" or spec in BUILTIN_DATA or spec.startswith("mnist:"):
        return read_data(spec)
    path = Path(spec)
    if path.suffix.lower() not in STREAMABLE or path.is_dir():
        if stream == "always":
            raise ConfigError(f"--stream always reads {', '.join(STREAMABLE)} files a chunk at a time, but DATA is "
                              f"{spec!r}. Convert it (aelab.io.write_array) or use --stream auto.")
        return read_data(spec)
    if stream == "auto" and (not path.is_file() or path.stat().st_size < stream_bytes()):
        return read_data(spec)
    from ..io import open_array

    return open_array(path)


def streamed(X) -> str:
    """A note for the summary line when X was streamed."""
    from .._validation import is_source

    return f", streamed in chunks of {X.chunk_rows} rows" if is_source(X) else ""


def read_labels(spec: str | None, n: int) -> np.ndarray | None:
    if spec is None:
        return None
    y = read_data(spec, labels=True)
    if len(y) != n:
        raise DataError(f"--labels has {len(y)} rows but the data has {n}; pass one label per row of the data.")
    return y


def load_model(path: str, device: str = "auto"):
    from ..estimators import load

    return load(path, device=device)


def check_out(path: str | Path, suffixes: tuple[str, ...] | None = None) -> Path:
    """Fail early (before any work) when an output file cannot be written."""
    from ..io._common import WRITE_EXTENSIONS, suffix_of

    path = Path(path)
    suffix_of(path, suffixes or WRITE_EXTENSIONS, "write")
    if path.is_dir():
        raise DataError(f"cannot write {str(path)!r}: it is a folder. Give a file name such as {path / 'out.npy'}.")
    if not path.parent.is_dir():
        raise DataError(f"cannot write {str(path)!r}: the folder {str(path.parent)!r} does not exist. Create it first.")
    return path


def write_out(path: str | Path, array: np.ndarray) -> None:
    """Write atomically; tables (.csv/.tsv/.parquet) get one flattened row per sample."""
    from ..io import write_array

    array = np.asarray(array)
    if Path(path).suffix.lower() in (".csv", ".tsv", ".parquet") and array.ndim > 2:
        array = array.reshape(len(array), -1)
    write_array(path, array)


def _parse_config(file: Path) -> Any:
    text = file.read_text(encoding="utf-8")
    suffix = file.suffix.lower()
    if suffix == ".toml":
        import tomllib

        return tomllib.loads(text)
    if suffix in (".yaml", ".yml"):
        return require("yaml", "io", "Reading YAML config files").safe_load(text)
    if suffix == ".json":
        return json.loads(text)
    raise ConfigError(f"config file {str(file)!r} must end in .toml, .yaml, .yml or .json.")


def read_config(path: str | None, valid: list[str]) -> dict[str, Any]:
    """Estimator parameters from a TOML, YAML or JSON file; each key must be one of ``valid``."""
    if path is None:
        return {}
    from ..io._common import existing_file

    file = existing_file(path)
    try:
        config = _parse_config(file)
    except AelabError:
        raise
    except Exception as exc:  # tomllib, json and yaml syntax errors, undecodable bytes
        raise ConfigError(f"cannot parse config file {str(path)!r}: {' '.join(str(exc).split())}") from None
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise ConfigError(f"config file {str(path)!r} must hold key = value settings, found a {type(config).__name__}.")
    unknown = sorted(set(config) - set(valid))
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)} in {str(path)!r}; valid keys: {', '.join(sorted(valid))}.")
    return config


def progress(args: argparse.Namespace) -> bool:
    """Progress bars only for a person watching a terminal."""
    return not args.quiet and sys.stderr.isatty()


def say(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(text)


# ---------------------------------------------------------------- running a command
def exit_code(exc: BaseException) -> int:
    """2 for bad input or usage (the user can fix it), 1 for a failure."""
    code = getattr(exc, "exit_code", None)
    if code in (EXIT_USAGE, EXIT_FAILURE) or (isinstance(code, int) and 128 < code < 160):
        return code  # a failed rank's own exit code, or 128 + the signal that stopped the launcher
    if isinstance(exc, TrainingError):
        return EXIT_FAILURE
    return EXIT_USAGE if isinstance(exc, (AelabError, OSError)) else EXIT_FAILURE


def run(args: argparse.Namespace) -> int:
    """Call the command; turn errors into a one-line message and an exit code."""
    from ..comm import world_from_env
    from ..distributed import bind_to_launcher, record_failure

    bind_to_launcher()  # a rank of --nproc ends with its launcher
    prog = f"aelab {args.command}"
    rank = None
    if world_from_env() > 1:  # one rank of a data-parallel run
        rank = os.environ.get("RANK", "?")
        prog += f" (rank {rank} of {os.environ['WORLD_SIZE']})"
    def one_line(message, category, filename, lineno, file=None, line=None):
        if not args.quiet or not issubclass(category, UserWarning):
            print(f"{prog}: warning: {' '.join(str(message).split())}", file=sys.stderr)

    try:
        if getattr(args, "threads", None):
            import torch

            torch.set_num_threads(args.threads)
        with warnings.catch_warnings():
            warnings.showwarning = one_line  # a warning is one line on stderr, like an error
            return int(args.func(args) or EXIT_OK)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        code = exit_code(exc)
        message = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, OSError) and not isinstance(exc, AelabError) and exc.filename:
            message = f"{exc.strerror or message}: {str(exc.filename)!r}"
        known = isinstance(exc, (AelabError, OSError))
        if rank is not None and rank.isdigit() and record_failure(int(rank), exc, code) and not args.debug:
            # the launcher of --nproc reports the rank that failed first, once; this rank ends now, without
            # the interpreter's teardown, in which a process group whose peer has gone can abort with a
            # line of its own ("terminate called without an active exception")
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        hint = "" if known or args.debug else f" ({type(exc).__name__}; run again with --debug for the traceback)"
        print(f"{prog}: {'error' if known else 'unexpected error'}: {message}{hint}", file=sys.stderr)
        return code
