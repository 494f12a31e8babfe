"""Where data sets live on disk: ``data_dir``, ``$AELAB_DATA_DIR`` or the per-user cache."""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable naming a folder of data sets (with subfolders such as ``mnist`` and ``odds``).
DATA_DIR_ENV = "AELAB_DATA_DIR"


def cache_dir(name: str) -> Path:
    """The per-user cache folder for data set ``name``: ``$XDG_CACHE_HOME/aelab/name`` or ``~/.cache/aelab/name``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "aelab" / name


def search_dirs(name: str, data_dir: str | os.PathLike | None) -> list[Path]:
    """Folders searched for data set ``name``, in order; the first is where downloads go.

    ``[data_dir]`` when given; otherwise ``$AELAB_DATA_DIR/name`` and ``$AELAB_DATA_DIR``
    when that variable is set, then the user cache folder.
    """
    if data_dir is not None:
        return [Path(data_dir).expanduser()]
    dirs = []
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        dirs += [Path(env).expanduser() / name, Path(env).expanduser()]
    return dirs + [cache_dir(name)]
