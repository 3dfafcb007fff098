"""A loopback HTTP server for the download tests, and builders for the archives it serves.

:class:`FixtureServer` is a threading ``http.server`` on ``127.0.0.1`` (port 0) that serves byte strings
at URL paths, the way the corpus hosts do:

- ``Range: bytes=N-`` requests get ``206`` with ``Content-Range`` (``416`` past the end);
- a route can require HTTP basic auth (LRW, the VGG host) or a ``key`` query parameter (VoxCeleb2's
  KAIST mirror); a wrong or missing credential gets ``401``;
- a route can drop the connection once after N body bytes (the client must resume with ``Range``),
  or ignore ``Range`` and send the whole body with ``200``;
- a route can answer its refusals with a reason phrase of its own, even one that echoes the
  request's ``Authorization`` header (as a misconfigured server might);
- anything not registered is a ``404``.

Every request is recorded (:attr:`FixtureServer.hits`): path, ``Range`` header, status and body bytes
sent, so tests can assert what the client asked for and how much it transferred. Routes are keyed by
the decoded path plus the query without ``key`` (``/download/voxceleb?file=vox2_test_mp4.zip``).

Import it from a test module as ``import http_fixture`` (``tests/conftest.py`` puts ``tests/`` on the path).
"""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
import threading
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit


@dataclass
class Route:
    body: bytes
    user: str | None = None
    password: str | None = None
    key: str | None = None
    drop_after: int | None = None  # close the connection after this many body bytes, once
    ignore_range: bool = False  # answer 200 with the whole body, as servers without range support do
    content_type: str = "application/octet-stream"
    dropped: bool = False
    reason: str | None = None  # reason phrase of a refusal; "{authorization}" echoes the request's header


@dataclass
class Hit:
    route: str
    range: str | None
    status: int
    sent: int = 0
    authorization: bool = False
    # set once the handler is done with the request: the client can have read the whole answer before the
    # server thread records ``sent``, so readers of the hits wait for it
    finished: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)


def route_key(path_and_query: str) -> str:
    parts = urlsplit(path_and_query)
    rest = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "key"]
    return unquote(parts.path) + ("?" + urlencode(sorted(rest)) if rest else "")


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, format, *args):  # noqa: A002 - keep test output quiet
        pass

    def _finish(self, hit: Hit, status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        hit.status = status
        route = self.server.owner.routes.get(hit.route)
        if route is not None and route.reason is not None and status >= 400:
            self.send_response(status, route.reason.replace("{authorization}", self.headers.get("Authorization", "")))
        else:
            self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        hit.sent = len(body)

    def do_GET(self):  # noqa: N802 - http.server API
        hit = Hit(route_key(self.path), self.headers.get("Range"), 0, authorization="Authorization" in self.headers)
        self.server.owner.hits.append(hit)
        try:
            self._answer(hit)
        finally:
            hit.finished.set()

    def _answer(self, hit: Hit) -> None:
        key = hit.route
        route = self.server.owner.routes.get(key)
        if route is None:
            return self._finish(hit, 404, body=b"not found")
        if route.user is not None:
            expected = "Basic " + base64.b64encode(f"{route.user}:{route.password}".encode()).decode()
            if self.headers.get("Authorization") != expected:
                return self._finish(hit, 401, {"WWW-Authenticate": 'Basic realm="fixture"'}, b"unauthorized")
        if route.key is not None:
            given = dict(parse_qsl(urlsplit(self.path).query)).get("key")
            if given != route.key:
                return self._finish(hit, 401, body=b"bad key")
        body, start, status = route.body, 0, 200
        headers = {"Content-Type": route.content_type, "Accept-Ranges": "bytes"}
        if hit.range and hit.range.startswith("bytes=") and not route.ignore_range:
            first, _, last = hit.range[6:].partition("-")
            start = int(first)
            if start >= len(body):
                return self._finish(hit, 416, {"Content-Range": f"bytes */{len(body)}"})
            end = int(last) + 1 if last else len(body)
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(body)}"
            body, status = body[start:end], 206
        hit.status = status
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if route.drop_after is not None and not route.dropped and len(body) > route.drop_after:
            route.dropped = True
            self.wfile.write(body[: route.drop_after])
            self.wfile.flush()
            hit.sent = route.drop_after
            self.close_connection = True
            return
        self.wfile.write(body)
        hit.sent = len(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: "FixtureServer"


@dataclass
class FixtureServer:
    routes: dict[str, Route] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)

    def add(self, path: str, body: bytes, **options) -> Route:
        route = Route(body, **options)
        self.routes[route_key(path)] = route
        return route

    def start(self) -> str:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fixture-http", daemon=True)
        self._thread.start()
        return self.url

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "FixtureServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def hits_for(self, path: str) -> list[Hit]:
        """The requests of ``path`` so far, each once its answer is written (or 10 s)."""
        key = route_key(path)
        found = [h for h in self.hits if h.route == key]
        for hit in found:
            hit.finished.wait(10)
        return found

    def bytes_sent(self, path: str) -> int:
        return sum(h.sent for h in self.hits_for(path))


# --------------------------------------------------------------------------- archive builders


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    """A zip of ``{name: data}`` in the given order, with fixed timestamps."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o100644 << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def tar_bytes(entries: dict[str, bytes]) -> bytes:
    """An uncompressed tar of ``{name: data}`` with fixed metadata."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 1577836800, 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def split_bytes(data: bytes, parts: int) -> list[bytes]:
    """``data`` cut into ``parts`` consecutive pieces (like ``split -n``); the last takes the rest."""
    size = -(-len(data) // parts)
    return [data[i * size:(i + 1) * size] for i in range(parts)]


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def lfs_pointer(data: bytes) -> bytes:
    """The git-lfs pointer file a clone without git-lfs holds instead of ``data``."""
    return (f"version https://git-lfs.github.com/spec/v1\noid sha256:{hashlib.sha256(data).hexdigest()}\n"
            f"size {len(data)}\n").encode()
