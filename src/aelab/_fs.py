"""Everything aelab writes to disk: all or nothing, and never a file it did not write.

Two writers serve every output, and nothing else in aelab creates, replaces or deletes
files:

* :func:`atomic_path` for one file (scores, encoded rows, ONNX, reports, generated data):
  the bytes go to a temporary sibling, which is synced and renamed onto the target only
  when the whole file is written. A failure or a kill at any point leaves the previous
  file exactly as it was.
* :func:`write_owned` for a folder (a model, a checkpoint, an hls4ml project): the new
  folder is built as a temporary sibling and swapped with the target in one atomic
  ``renameat2(RENAME_EXCHANGE)`` (two renames where the kernel lacks it). The folder
  carries a marker, :data:`MARKER`, that lists every file aelab wrote in it with its
  size and SHA-256. aelab writes only into a folder that is new, empty or marked as its
  own of the same kind; files it did not write (a user's notes, plots, a synthesis run)
  are carried over into the new folder by hard links, untouched, and a command that
  would have to replace one refuses and names it.

A kill can leave a temporary sibling behind (``.NAME.aelab-tmp-PID-*``); the next write to
the same target removes those whose process is gone. The marker's digests let readers
refuse a truncated or edited file (:func:`verify_owned`).

This module sits on the ground floor: it imports nothing of aelab but the exceptions.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from .exceptions import DataFileNotFoundError, OutputIsAFolderError, PersistenceError

__all__ = ["MARKER", "atomic_path", "write_owned", "write_folder", "check_owned", "verify_owned", "owned_files"]

#: The ownership marker in every folder aelab writes.
MARKER = ".aelab.json"
MARKER_FORMAT = "aelab-folder"
MARKER_VERSION = 1
#: What each kind of folder is called in messages.
KINDS = {"model": "aelab model folder", "checkpoint": "aelab checkpoint", "hls4ml": "aelab hls4ml project"}
_TMP = ".aelab-tmp-"


# ------------------------------------------------------------------ temporary siblings
def _tmp_prefix(target: Path) -> str:
    return f".{target.name}{_TMP}{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def clean_stale(target: Path) -> None:
    """Remove the temporary siblings of ``target`` that a killed aelab process left behind.

    Only entries named ``.TARGET.aelab-tmp-PID-*`` whose process PID no longer runs are touched;
    an ``-old-`` folder (the fallback swap's backup) is renamed back when ``target`` is missing.
    """
    target = Path(target)
    pattern = re.compile(re.escape(f".{target.name}{_TMP}") + r"(\d+)-(old-)?")
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return
    for entry in entries:
        m = pattern.match(entry.name)
        if not m or int(m.group(1)) == os.getpid() or _alive(int(m.group(1))):
            continue
        path = Path(entry.path)
        if m.group(2) and not os.path.lexists(target):
            os.rename(path, target)  # the backup of a swap killed half-way: the previous folder comes back
        elif entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)


def _default_mode(directory: bool) -> int:
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def temp_path_for(path: str | os.PathLike) -> Path:
    """Create and return an empty temporary file next to ``path`` (same folder, same file system)."""
    target = Path(path)
    if not target.parent.is_dir():
        raise DataFileNotFoundError(
            f"cannot write {str(target)!r}: the folder {str(target.parent)!r} does not exist. Create it first."
        )
    clean_stale(target)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=_tmp_prefix(target), suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, _default_mode(False))  # mkstemp creates the file -rw-------
    return Path(tmp)


def fsync_dir(folder: Path) -> None:
    """Flush the folder entry so a rename survives a crash (no-op where unsupported)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def commit(tmp: Path, target: str | os.PathLike) -> None:
    """fsync ``tmp`` and atomically rename it onto ``target``."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    fsync_dir(Path(target).parent)


def discard(tmp: Path) -> None:
    """Remove a temporary file if it is still there."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically.

    If the body raises, the temporary file is removed and ``path`` (if it existed) is untouched.
    """
    target = Path(path)
    if target.is_dir():
        raise OutputIsAFolderError(f"cannot write {str(target)!r}: it is a folder. Give a file name, such as "
                                   f"{str(target / 'out' ) + target.suffix!r}.")
    tmp = temp_path_for(target)
    try:
        yield tmp
        commit(tmp, target)
    except BaseException:
        discard(tmp)
        raise


# ------------------------------------------------------------------ owned folders
def _sha256(file: Path) -> str:
    h = hashlib.sha256()
    with open(file, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _entries(folder: Path) -> list[str]:
    """Relative paths (POSIX) of everything below ``folder`` that is not a folder, plus empty folders."""
    out = []
    for root, dirs, files in os.walk(folder):
        rel = Path(root).relative_to(folder)
        for name in files:
            out.append((rel / name).as_posix())
        for name in dirs:
            p = Path(root) / name
            if p.is_symlink():  # os.walk lists a link to a folder among dirs and does not enter it
                out.append((rel / name).as_posix())
            elif not any(p.iterdir()):
                out.append((rel / name).as_posix() + "/")
    return sorted(out)


def read_marker(folder: Path) -> dict | None:
    """The ownership marker of ``folder``, or None where there is none (or it is not aelab's)."""
    file = Path(folder) / MARKER
    if not file.is_file() or file.stat().st_size > 64 * 2**20:
        return None
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not (isinstance(doc, dict) and doc.get("format") == MARKER_FORMAT and isinstance(doc.get("files"), dict)
            and isinstance(doc.get("kind"), str)):
        return None
    return doc


def _legacy_files(folder: Path, kind: str) -> set[str] | None:
    """Files an aelab release before the marker wrote (model format 1-2, checkpoint format 1)."""
    index, fmt, names = {"model": ("config.json", "aelab-model", {"config.json", "weights.safetensors", "meta.json"}),
                         "checkpoint": ("checkpoint.json", "aelab-checkpoint", {"checkpoint.json", "state.safetensors"}),
                         }.get(kind, (None, None, None))
    if index is None or not (folder / index).is_file():
        return None
    try:
        doc = json.loads((folder / index).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        return None
    return {n for n in names if (folder / n).is_file()}


def owned_files(folder, kind: str) -> set[str]:
    """The files aelab wrote in ``folder`` as a ``kind`` folder (empty for a new or empty folder).

    Raises :class:`~aelab.exceptions.PersistenceError` when ``folder`` is a file, or a folder that
    holds files and is not aelab's own of this kind: aelab writes nothing there.
    """
    folder = Path(folder)
    what = KINDS[kind]
    if os.path.lexists(folder) and not folder.is_dir():
        raise PersistenceError(f"cannot write the {what} {str(folder)!r}: a file of that name exists. "
                               "Choose a folder path.")
    if not folder.is_dir() or not any(folder.iterdir()):
        return set()
    marker = read_marker(folder)
    if marker is not None:
        if marker["kind"] != kind:
            raise PersistenceError(f"{str(folder)!r} is an {KINDS.get(marker['kind'], marker['kind'])}, not an "
                                   f"{what}; aelab will not write one kind of folder over another. Choose a new "
                                   "or empty folder.")
        return set(marker["files"])
    legacy = _legacy_files(folder, kind)
    if legacy is not None:
        return legacy
    entries = _entries(folder)
    shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
    raise PersistenceError(f"{str(folder)!r} is not empty ({shown}) and is not an {what} (no {MARKER} written "
                           f"by aelab); aelab writes only into a new, empty or own folder, and never touches files "
                           "it did not write. Choose a new or empty folder.")


def check_owned(folder, kind: str) -> None:
    """Fail before any work when :func:`write_owned` could not write ``folder``."""
    owned_files(folder, kind)


def _carry(src: Path, dst: Path) -> None:
    """Put ``src`` (a user's file) at ``dst`` without touching it: a hard link where possible."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
    elif src.is_dir():
        dst.mkdir(exist_ok=True)
        shutil.copystat(src, dst)
    else:
        try:
            os.link(src, dst, follow_symlinks=False)
        except OSError:  # a file system without hard links: a copy of its bytes and times
            shutil.copy2(src, dst, follow_symlinks=False)


_renameat2 = None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    global _renameat2
    if _renameat2 is None:
        try:
            fn = ctypes.CDLL(None, use_errno=True).renameat2
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            fn.restype = ctypes.c_int
            _renameat2 = fn
        except (AttributeError, OSError):
            _renameat2 = False
    if not _renameat2:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if _renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _sync_tree(folder: Path) -> None:
    for root, _, files in os.walk(folder):
        for name in files:
            p = Path(root) / name
            if p.is_file() and not p.is_symlink():
                with open(p, "rb") as fh:
                    os.fsync(fh.fileno())
        fsync_dir(Path(root))


def write_owned(folder, kind: str, fill: Callable[[Path], object]):
    """Write the ``kind`` folder ``folder`` all at once; returns what ``fill`` returned.

    ``fill(tmp)`` writes the new content into the empty folder ``tmp`` (a sibling of
    ``folder``). The files of the previous folder that aelab did not write are carried into
    the new one; one that the new content would replace stops the write
    with an error naming it, and nothing changes. Then the new folder takes the place of
    the old in one atomic swap, and the old content is removed.
    """
    from ._version import __version__

    folder = Path(folder)
    old = owned_files(folder, kind)  # refuses a foreign folder before any work
    folder.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(folder)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(folder), dir=folder.parent))
    swapped = False
    try:
        os.chmod(tmp, stat.S_IMODE(folder.stat().st_mode) if folder.is_dir() else _default_mode(True))
        result = fill(tmp)
        written = [e for e in _entries(tmp) if e != MARKER]
        foreign = [e for e in _entries(folder) if e not in old and e != MARKER] if folder.is_dir() else []
        clash = sorted(set(foreign) & set(written))
        if clash:
            raise PersistenceError(f"{str(folder)!r} holds {', '.join(clash)}, which aelab did not write and this "
                                   f"{KINDS[kind]} would replace; move it away or choose another folder.")
        files = {e: {"folder": True} if e.endswith("/") else {"bytes": (tmp / e).stat().st_size,
                                                               "sha256": _sha256(tmp / e)}
                 for e in written if e.endswith("/") or (tmp / e).is_file()}
        with open(tmp / MARKER, "w", encoding="utf-8") as fh:
            json.dump({"format": MARKER_FORMAT, "format_version": MARKER_VERSION, "kind": kind, "aelab": __version__,
                       "files": files}, fh, indent=1)
        for e in foreign:
            _carry(folder / e.rstrip("/"), tmp / e.rstrip("/"))
        _sync_tree(tmp)
        if folder.is_dir():
            if _exchange(tmp, folder):
                swapped = True
            else:  # two renames; a kill between them is repaired by clean_stale on the next write
                backup = Path(tempfile.mkdtemp(prefix=_tmp_prefix(folder) + "old-", dir=folder.parent))
                os.rmdir(backup)
                os.rename(folder, backup)
                os.rename(tmp, folder)
                tmp, swapped = backup, True
        else:
            os.rename(tmp, folder)
            swapped, tmp = True, None
        fsync_dir(folder.parent)
    except BaseException:
        if not swapped and tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    if tmp is not None:  # the previous folder: aelab's own files, and links to the carried ones
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def verify_owned(folder, kind: str, names=None) -> bool:
    """Check the files of an aelab ``kind`` folder against its marker (size and SHA-256).

    Returns False for a folder written before markers existed (nothing to check). Raises
    :class:`~aelab.exceptions.PersistenceError` naming the first file that is missing,
    truncated or changed since aelab wrote it.
    """
    folder = Path(folder)
    marker = read_marker(folder)
    if marker is None:
        return False
    if marker["kind"] != kind:
        raise PersistenceError(f"{str(folder)!r} is an {KINDS.get(marker['kind'], marker['kind'])}, not an "
                               f"{KINDS[kind]}.")
    for name, want in marker["files"].items():
        if (names is not None and name not in names) or name.endswith("/"):
            continue
        file = folder / name
        if not file.is_file():
            raise PersistenceError(f"{str(file)!r} is missing from the {KINDS[kind]} {str(folder)!r}; it was "
                                   "deleted after aelab wrote it. Write the folder again.")
        size = file.stat().st_size
        if not isinstance(want, dict) or size != want.get("bytes") or _sha256(file) != want.get("sha256"):
            how = (f"{size} bytes where aelab wrote {want.get('bytes')}" if isinstance(want, dict)
                   and size != want.get("bytes") else "its content differs from what aelab wrote")
            raise PersistenceError(f"{str(file)!r} is damaged ({how}): truncated or edited after aelab wrote it. "
                                   f"aelab refuses a damaged {KINDS[kind]}; write it again (or restore a copy).")
    return True


def write_folder(path, kind: str, tensors: dict, documents: dict[str, dict], tensor_file: str) -> None:
    """Write ``tensors`` (safetensors) and JSON ``documents`` as the aelab ``kind`` folder ``path``.

    All at once (:func:`aelab._fs.write_owned`): the folder appears complete or not at all,
    a previous one survives a crash, and files in it that aelab did not write are kept.
    """
    from safetensors.torch import save_file

    def fill(tmp: Path) -> None:
        save_file(tensors, str(tmp / tensor_file))
        for name, obj in documents.items():
            with open(tmp / name, "w", encoding="utf-8") as f:
                json.dump(obj, f, indent=2)

    write_owned(path, kind, fill)
