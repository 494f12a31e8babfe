"""Download files from a list of mirrors: timeouts, retries with back-off, checksums, atomic writes."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import os
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Sequence
from pathlib import Path

from ..exceptions import DownloadError
from ..io._common import commit, discard, temp_path_for

logger = logging.getLogger(__name__)

#: Seconds a socket may wait for the server (connect or each read) before giving up.
TIMEOUT = 30.0
#: Attempts per mirror for transient failures (timeouts, resets, HTTP 5xx).
RETRIES = 3
#: Seconds before the first retry; doubled after each further failure.
BACKOFF = 1.0

_GZIP_MAGIC = b"\x1f\x8b"
_BLOCK = 1 << 20


class _Permanent(Exception):
    """A failure that retrying the same URL will not fix (HTTP 4xx, wrong checksum)."""


def data_md5(path: str | os.PathLike) -> str:
    """MD5 of a file's content, decompressed first when it is gzip (stable across re-compression)."""
    with open(path, "rb") as raw:
        is_gzip = raw.read(2) == _GZIP_MAGIC
    digest = hashlib.md5(usedforsecurity=False)
    with (gzip.open if is_gzip else open)(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _fetch_once(url: str, tmp: Path, md5: str, timeout: float) -> bool:
    """Download ``url`` into ``tmp`` and check it; return whether the content is gzip."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
            expected = response.headers.get("Content-Length")
            size = 0
            while block := response.read(_BLOCK):
                out.write(block)
                size += len(block)
        if expected is not None and size != int(expected):
            raise OSError(f"connection closed after {size} of {expected} bytes")
    except urllib.error.HTTPError as exc:
        if 400 <= exc.code < 500:
            raise _Permanent(f"HTTP {exc.code} {exc.reason}") from exc
        raise OSError(f"HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise OSError(str(exc.reason)) from exc
    except TimeoutError as exc:
        raise OSError(f"no answer within {timeout:g} s (timed out)") from exc
    except http.client.HTTPException as exc:
        raise OSError(f"{type(exc).__name__}: {exc}") from exc
    try:
        got = data_md5(tmp)
    except (OSError, EOFError, zlib.error) as exc:  # truncated or damaged gzip stream
        raise _Permanent(f"the file is damaged or truncated ({exc})") from exc
    if got != md5:
        raise _Permanent(f"checksum mismatch: md5 of the content is {got}, expected {md5}")
    with open(tmp, "rb") as fh:
        return fh.read(2) == _GZIP_MAGIC


def download_file(
    name: str,
    base_urls: Sequence[str],
    folder: str | os.PathLike,
    md5: str,
    *,
    timeout: float | None = None,
    retries: int | None = None,
    backoff: float | None = None,
    manual_hint: str = "",
) -> Path:
    """Fetch ``name.gz`` from the first mirror that serves it intact, into ``folder``.

    Each mirror is tried up to ``retries`` times for transient failures (waiting
    ``backoff``, ``2 * backoff``, ... seconds in between); HTTP 4xx answers and
    checksum failures move on to the next mirror at once. The file is written to
    a temporary name in ``folder``, checked against ``md5`` (of the decompressed
    content), fsynced and renamed; nothing partial is ever left behind.

    Returns
    -------
    pathlib.Path
        ``folder/name.gz`` (or ``folder/name`` when a mirror serves it uncompressed).

    Raises
    ------
    DownloadError
        When no mirror succeeded; the message lists each failure and ``manual_hint``.
    """
    timeout = TIMEOUT if timeout is None else float(timeout)
    retries = RETRIES if retries is None else max(1, int(retries))
    backoff = BACKOFF if backoff is None else float(backoff)
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create the data folder {str(folder)!r}: {exc}. {manual_hint}") from exc
    failures = []
    for base in base_urls:
        url = base.rstrip("/") + "/" + name + ".gz"
        for attempt in range(1, retries + 1):
            tmp = temp_path_for(folder / name)
            try:
                logger.info("downloading %s (attempt %d of %d)", url, attempt, retries)
                is_gzip = _fetch_once(url, tmp, md5, timeout)
                target = folder / (name + ".gz" if is_gzip else name)
                commit(tmp, target)
                return target
            except _Permanent as exc:
                failures.append(f"{url}: {exc}")
                break
            except OSError as exc:
                failures.append(f"{url} (attempt {attempt}): {exc}")
                if attempt < retries:
                    time.sleep(backoff * 2 ** (attempt - 1))
            finally:
                discard(tmp)
    raise DownloadError(
        f"could not download {name!r}; tried:\n  " + "\n  ".join(failures) + (f"\n{manual_hint}" if manual_hint else "")
    )
