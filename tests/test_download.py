"""MNIST downloads against a real HTTP server on 127.0.0.1: mirrors, retries, timeouts, checksums.

Every failure must end in a clear DownloadError within seconds and leave no
partial or corrupt file in the data folder.
"""

from __future__ import annotations

import gzip
import hashlib
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from aelab.datasets import load_mnist
from aelab.exceptions import DownloadError

NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
IMAGES = np.random.default_rng(0).integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
LABELS = np.arange(7, dtype=np.uint8)


def idx_bytes(array: np.ndarray) -> bytes:
    return struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


RAW = {NAMES[0]: idx_bytes(IMAGES), NAMES[1]: idx_bytes(LABELS)}
GZ = {name: gzip.compress(data, mtime=0) for name, data in RAW.items()}
CHECKSUMS = {name: hashlib.md5(data).hexdigest() for name, data in RAW.items()}
FLIPPED = {name: gzip.compress(data[:-1] + bytes([data[-1] ^ 1]), mtime=0) for name, data in RAW.items()}
FAST = {"timeout": 0.5, "retries": 2, "backoff": 0.01, "checksums": CHECKSUMS}


class Handler(BaseHTTPRequestHandler):
    """Serves /<mode>/<file>.gz; the mode decides how the server (mis)behaves."""

    def do_GET(self):  # noqa: N802 - http.server naming
        server = self.server
        mode, _, name = self.path.strip("/").partition("/")
        name = name.removesuffix(".gz")
        server.requests.append(self.path)
        if name not in GZ or mode == "missing":
            return self.send_error(404)
        if mode == "stall":
            server.release.wait(20)
            return None
        if mode == "flaky" and server.requests.count(self.path) == 1:
            return self.send_error(503, "try again")
        body = {"good": GZ, "flaky": GZ, "flipped": FLIPPED, "cut": GZ, "short": GZ, "plain": RAW}[mode][name]
        if mode == "short":  # a complete HTTP answer whose gzip stream is cut off
            body = body[: len(body) // 2]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # "cut": the connection closes halfway although Content-Length promised more
        self.wfile.write(body[: len(body) // 2] if mode == "cut" else body)
        return None

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.requests, httpd.release = [], threading.Event()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.release.set()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def isolated_data_dirs(tmp_path, monkeypatch):
    monkeypatch.delenv("AELAB_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


def files_in(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_verify_and_cache(server, tmp_path):
    folder = tmp_path / "mnist"
    X, y = load_mnist("train", data_dir=folder, base_url=server.url + "/good/", **FAST)
    np.testing.assert_array_equal(X, IMAGES)
    np.testing.assert_array_equal(y, LABELS)
    assert files_in(folder) == sorted(n + ".gz" for n in NAMES)
    assert (folder / f"{NAMES[0]}.gz").read_bytes() == GZ[NAMES[0]]
    n_requests = len(server.requests)
    X2, _ = load_mnist("train", data_dir=folder, download=False)  # from the cache, no request
    np.testing.assert_array_equal(X2, IMAGES)
    load_mnist("train", data_dir=folder, base_url=server.url + "/good/", **FAST)
    assert len(server.requests) == n_requests


def test_uncompressed_mirror(server, tmp_path):
    X, _ = load_mnist("train", data_dir=tmp_path / "m", base_url=server.url + "/plain", **FAST)
    np.testing.assert_array_equal(X, IMAGES)
    assert files_in(tmp_path / "m") == sorted(NAMES)  # stored under the uncompressed name


def test_mirrors_are_tried_in_turn(server, tmp_path):
    mirrors = [server.url + "/missing/", server.url + "/good/"]
    X, _ = load_mnist("train", data_dir=tmp_path / "m", base_url=mirrors, **FAST)
    np.testing.assert_array_equal(X, IMAGES)
    assert server.requests[:2] == [f"/missing/{NAMES[0]}.gz", f"/good/{NAMES[0]}.gz"]  # 404: no retry


def test_transient_error_is_retried_with_backoff(server, tmp_path):
    X, _ = load_mnist("train", data_dir=tmp_path / "m", base_url=server.url + "/flaky/", **FAST)
    np.testing.assert_array_equal(X, IMAGES)
    assert server.requests.count(f"/flaky/{NAMES[0]}.gz") == 2  # 503, then success


def test_downloads_go_to_aelab_data_dir(server, tmp_path, monkeypatch):
    monkeypatch.setenv("AELAB_DATA_DIR", str(tmp_path / "data"))
    load_mnist("train", base_url=server.url + "/good/", **FAST)
    assert files_in(tmp_path / "data" / "mnist") == sorted(n + ".gz" for n in NAMES)


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("missing", r"HTTP 404"),
        ("flipped", r"checksum mismatch: md5 of the content is [0-9a-f]{32}, expected " + CHECKSUMS[NAMES[0]]),
        ("short", r"damaged or truncated"),
        ("cut", r"connection closed after \d+ of \d+ bytes|IncompleteRead"),
    ],
)
def test_bad_downloads_leave_nothing_behind(server, tmp_path, mode, message):
    folder = tmp_path / "mnist"
    with pytest.raises(DownloadError, match=message) as info:
        load_mnist("train", data_dir=folder, base_url=server.url + f"/{mode}/", **FAST)
    assert f"{server.url}/{mode}/{NAMES[0]}.gz" in str(info.value)
    assert f"put them (gzipped or not) in {str(folder)!r}" in str(info.value)
    assert files_in(folder) == []


def test_stalled_server_times_out_quickly(server, tmp_path):
    start = time.monotonic()
    with pytest.raises(DownloadError, match="timed out"):
        load_mnist("train", data_dir=tmp_path / "m", base_url=server.url + "/stall/", timeout=0.3, retries=1)
    assert time.monotonic() - start < 5
    assert files_in(tmp_path / "m") == []


def test_no_network_says_where_to_put_the_files(tmp_path):
    with socket.socket() as sock:  # a port on which nobody listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    folder = tmp_path / "mnist"
    with pytest.raises(DownloadError) as info:
        load_mnist("train", data_dir=folder, base_url=f"http://127.0.0.1:{port}/", retries=2, backoff=0.01)
    message = str(info.value)
    assert "(attempt 2)" in message and "refused" in message.lower()
    assert "download train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz" in message
    assert repr(str(folder)) in message and "load_mnist('sample') needs no files" in message
    assert files_in(folder) == []


def test_good_file_kept_when_the_second_download_fails(server, tmp_path):
    """Images succeed, labels fail: the verified images stay, nothing else is written."""
    folder = tmp_path / "m"
    checksums = {**CHECKSUMS, NAMES[1]: "0" * 32}
    with pytest.raises(DownloadError, match="checksum mismatch"):
        load_mnist("train", data_dir=folder, base_url=server.url + "/good/", **{**FAST, "checksums": checksums})
    assert files_in(folder) == [NAMES[0] + ".gz"]
