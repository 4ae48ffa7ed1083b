"""ensure_files against a real HTTP server on 127.0.0.1: good, corrupt, truncated, missing, down."""

import gzip
import hashlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from genzoo.data.base import DataError
from genzoo.data.download import RemoteFile, ensure_files

BODY = b"genzoo test payload\n" * 1000
MD5 = hashlib.md5(BODY).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.routes``: path -> (body, declared Content-Length); 404 otherwise."""

    def do_GET(self):
        self.server.requests.append(self.path)
        if self.path not in self.server.routes:
            self.send_error(404)
            return
        body, length = self.server.routes[self.path]
        self.send_response(200)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(body)  # then the connection closes, short if length > len(body)
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    """A threaded HTTP server on a free local port; its ``routes`` dict is filled by each test."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("GENZOO_MIRROR", raising=False)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.routes, httpd.requests = {}, []
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def closed_port_url():
    """A URL on a local port that nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/f.bin"


def _listing(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_good_download_is_verified_and_atomic(server, tmp_path):
    server.routes["/f.bin"] = (BODY, len(BODY))
    paths = ensure_files(tmp_path / "ds", [RemoteFile("f.bin", (server.url + "/f.bin",), md5=(MD5,))])
    assert paths["f.bin"].read_bytes() == BODY
    assert _listing(tmp_path / "ds") == ["f.bin"]  # no temporary file left behind
    assert paths["f.bin"].stat().st_mode & 0o777 == 0o644
    # a second call uses the verified local copy without touching the network
    ensure_files(tmp_path / "ds", [RemoteFile("f.bin", (server.url + "/f.bin",), md5=(MD5,))])
    assert server.requests == ["/f.bin"]


def test_wrong_checksum_leaves_nothing(server, tmp_path):
    server.routes["/f.bin"] = (b"something else", 14)
    url = server.url + "/f.bin"
    with pytest.raises(DataError, match="checksum") as err:
        ensure_files(tmp_path / "ds", [RemoteFile("f.bin", (url,), md5=(MD5,))])
    assert url in str(err.value)
    assert _listing(tmp_path / "ds") == []


def test_truncated_response_leaves_nothing(server, tmp_path):
    server.routes["/f.bin"] = (BODY[:5000], len(BODY))
    url = server.url + "/f.bin"
    with pytest.raises(DataError, match="truncated|interrupted") as err:
        ensure_files(tmp_path / "ds", [RemoteFile("f.bin", (url,), md5=(MD5,))])
    assert url in str(err.value) and "truncated" in str(err.value) and "5000 bytes read" in str(err.value)
    assert _listing(tmp_path / "ds") == []


def test_server_down_gives_manual_instructions(closed_port_url, tmp_path, monkeypatch):
    monkeypatch.delenv("GENZOO_MIRROR", raising=False)
    remote = RemoteFile("f.bin", (closed_port_url,), md5=(MD5,))
    with pytest.raises(DataError, match="unreachable") as err:
        ensure_files(tmp_path / "ds", [remote], timeout=5)
    message = str(err.value)
    assert "by hand" in message and str((tmp_path / "ds" / "f.bin").resolve()) in message
    assert closed_port_url in message
    assert _listing(tmp_path / "ds") == []


def test_download_false_lists_every_missing_file(tmp_path):
    files = [RemoteFile(n, (f"http://example.invalid/{n}",), md5=(MD5,)) for n in ("a.gz", "b.gz")]
    with pytest.raises(DataError, match="2 file") as err:
        ensure_files(tmp_path / "ds", files, download=False)
    for n in ("a.gz", "b.gz"):
        assert str(tmp_path / "ds" / n) in str(err.value) and f"http://example.invalid/{n}" in str(err.value)
    assert not (tmp_path / "ds").exists()


def test_mirror_fallback_after_404(server, tmp_path):
    server.routes["/good/f.bin"] = (BODY, len(BODY))
    urls = (server.url + "/missing/f.bin", server.url + "/good/f.bin")
    paths = ensure_files(tmp_path / "ds", [RemoteFile("f.bin", urls, md5=(MD5,))])
    assert paths["f.bin"].read_bytes() == BODY
    assert server.requests == ["/missing/f.bin", "/good/f.bin"]


def test_env_mirror_is_tried_first_and_may_hold_a_gzipped_copy(server, tmp_path, monkeypatch, closed_port_url):
    packed = gzip.compress(BODY)
    server.routes["/ds/f.bin.gz"] = (packed, len(packed))
    monkeypatch.setenv("GENZOO_MIRROR", server.url + "/")
    remote = RemoteFile(
        "f.bin", (closed_port_url,), content_sha256=hashlib.sha256(BODY).hexdigest(), alternatives=("f.bin.gz",)
    )
    paths = ensure_files(tmp_path / "ds", [remote])
    assert paths["f.bin"].name == "f.bin.gz" and paths["f.bin"].read_bytes() == packed
    assert server.requests == ["/ds/f.bin", "/ds/f.bin.gz"]


def test_corrupt_local_file_is_reported_not_overwritten(server, tmp_path):
    server.routes["/f.bin"] = (BODY, len(BODY))
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "f.bin").write_bytes(b"damaged")
    with pytest.raises(DataError, match="corrupt") as err:
        ensure_files(tmp_path / "ds", [RemoteFile("f.bin", (server.url + "/f.bin",), md5=(MD5,))])
    assert str(tmp_path / "ds" / "f.bin") in str(err.value)
    assert (tmp_path / "ds" / "f.bin").read_bytes() == b"damaged" and server.requests == []


def test_remote_file_requires_a_checksum():
    with pytest.raises(ValueError, match="checksum"):
        RemoteFile("f.bin", ("http://example.invalid/f.bin",))
