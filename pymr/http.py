"""The coordinator's status web server: the page, its JSON API and Prometheus metrics.

Routes (GET only; the page is read-only, cancelling goes through the CLI)::

    /  /jobs/<job_id>  /workers      the page (pymr/static/index.html; its script reads the API)
    /static/<file>                   the page's script and style, from the package (no CDN)
    /api/jobs                        running and finished jobs (status.SUMMARY_FIELDS)
    /api/jobs/<job_id>               one job: phases, tasks and attempts, counters, failures
    /api/jobs/<job_id>/logs/<attempt> an attempt's captured output (text), read from its worker
    /api/workers                     the registered workers
    /metrics                         Prometheus text format 0.0.4

The server runs in threads of the coordinator's process and never touches the
coordinator's state: it asks ``status.StatusBoard``, which the coordinator's loop
answers between messages. The page shows paths, errors and keys, so it is private to
the cluster: on loopback it is open to this machine; any other address needs the
cluster key, and every request must then carry the token derived from it
(``Authorization: Bearer TOKEN``, or ``?token=TOKEN`` once, which sets an HttpOnly,
SameSite=Strict cookie); anything else gets 401 and no data.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import logging
import os
import re
import selectors
import socket
import threading
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import attempt_log
from .errors import PymrError
from .security import ClusterKey, is_loopback_host
from .status import BuildFailed, StatusBoard

log = logging.getLogger("pymr.http")
DEFAULT_HTTP = "127.0.0.1:8780"
MAX_CONNECTIONS = 32  # requests served at once; more wait in the listen queue
REQUEST_TIMEOUT_S = 10.0
COOKIE = "pymr_token"
STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8"}
PAGE_ROUTE = re.compile(r"^/(?:jobs/[\w.-]+|workers)?/?$")
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "Cache-Control": "no-store",
}


class HttpAddressError(PymrError):
    """The status page cannot be served at the address given."""

    exit_code = 2


def access_token(key: ClusterKey) -> str:
    """The status page's access token: derived from the cluster key, so every holder of
    the key can compute it and nobody else can."""
    return hmac.new(key.secret, b"pymr status page v1", hashlib.sha256).hexdigest()[:40]


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) as a pair, or HttpAddressError naming it."""
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise HttpAddressError(f"--http must be HOST:PORT or off, got {text!r}")
    return host, int(port)


class StatusServer:
    """The HTTP server, in daemon threads, until ``close()``."""

    def __init__(self, address: str, board: StatusBoard, key: ClusterKey | None = None, explicit: bool = True):
        host, port = parse_address(address)
        self.token: str | None = None
        if not is_loopback_host(host):
            if key is None:
                raise HttpAddressError(f"refusing to serve the status page on {address} without --secret-file: "
                                       "it shows paths, job names, errors and data, so a non-loopback address "
                                       "needs the cluster key (its access token: pymr token --secret-file FILE)")
            self.token = access_token(key)
        self.board = board
        self.key = key  # to read attempt logs from the workers, as `pymr logs` does
        try:
            self.httpd = _Server((host, port), _handler(self))
        except OSError as exc:
            if explicit or exc.errno != errno.EADDRINUSE:
                raise HttpAddressError(f"cannot serve the status page on {address}: {exc.strerror or exc}") from None
            self.httpd = _Server(("127.0.0.1", 0), _handler(self))  # the default port is taken: any free one
            log.warning("status page: %s is in use; serving on port %d instead", address, self.httpd.server_port)
        bound_host = self.httpd.server_address[0]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.url = f"http://{shown}:{self.httpd.server_port}/"
        self._thread = threading.Thread(target=self.httpd.serve_until_stopped, name="pymr-http", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.stop()
        self._thread.join(timeout=5)
        self.httpd.server_close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._stopping = False
        self._wake_read, self._wake_write = socket.socketpair()
        super().__init__(address, handler)

    def serve_until_stopped(self) -> None:
        """``serve_forever``, but ``stop()`` ends it at once: serve_forever notices a
        shutdown only at its next poll, which made every job's exit wait (0.1 s on
        average, in local mode too)."""
        with selectors.DefaultSelector() as selector:
            selector.register(self, selectors.EVENT_READ)
            selector.register(self._wake_read, selectors.EVENT_READ)
            while not self._stopping:
                if any(key.fileobj is self for key, _ in selector.select()) and not self._stopping:
                    self._handle_request_noblock()

    def stop(self) -> None:
        self._stopping = True
        try:
            self._wake_write.send(b"x")
        except OSError:
            pass

    def server_close(self) -> None:
        super().server_close()
        self._wake_read.close()
        self._wake_write.close()

    def process_request(self, request, client_address) -> None:
        self._slots.acquire()  # bounded: at most MAX_CONNECTIONS threads
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def _handler(server: StatusServer) -> type:
    class Handler(_StatusHandler):
        status_server = server

    return Handler


class _StatusHandler(BaseHTTPRequestHandler):
    status_server: StatusServer
    timeout = REQUEST_TIMEOUT_S
    server_version = "pymr"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        url = urlsplit(self.path)
        if not self._authorized(url):
            return
        path = url.path
        try:
            if path.startswith("/api/") or path == "/metrics":
                self._api(path)
            elif path.startswith("/static/"):
                self._static(path[len("/static/"):])
            elif PAGE_ROUTE.match(path):
                self._static("index.html")
            else:
                self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")
        except TimeoutError as exc:
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, f"{exc}\n".encode(), "text/plain; charset=utf-8")
        except BuildFailed as exc:
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, f"{exc}\n".encode(), "text/plain; charset=utf-8")

    def do_POST(self) -> None:  # noqa: N802
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"the status page is read-only\n", "text/plain; charset=utf-8",
                   {"Allow": "GET"})

    do_PUT = do_DELETE = do_PATCH = do_POST

    def _authorized(self, url: Any) -> bool:
        token = self.status_server.token
        if token is None:
            return self._loopback_host()
        given = parse_qs(url.query).get("token", [None])[0]
        if given is not None and hmac.compare_digest(given.encode(), token.encode()):
            # the token leaves the address bar: a cookie carries it from now on
            self._send(HTTPStatus.SEE_OTHER, b"", "text/plain", {
                "Location": url.path if PAGE_ROUTE.match(url.path) else "/",
                "Set-Cookie": f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"})
            return False
        bearer = self.headers.get("Authorization", "")
        if bearer.startswith("Bearer ") and hmac.compare_digest(bearer[7:].strip().encode(), token.encode()):
            return True
        cookie = SimpleCookie()
        try:
            cookie.load(self.headers.get("Cookie", ""))
        except Exception:
            pass
        if COOKIE in cookie and hmac.compare_digest(cookie[COOKIE].value.encode(), token.encode()):
            return True
        self._send(HTTPStatus.UNAUTHORIZED, b"401 unauthorized: this status page needs the cluster's access token "
                   b"(pymr token --secret-file FILE prints it and the address to open)\n",
                   "text/plain; charset=utf-8", {"WWW-Authenticate": 'Bearer realm="pymr"'})
        return False

    def _loopback_host(self) -> bool:
        """A loopback page answers only requests addressed to a loopback name: a web page
        elsewhere that rebinds its own domain name to 127.0.0.1 gets nothing."""
        host = (self.headers.get("Host") or "").strip()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if is_loopback_host(name.strip("[]").lower()):
            return True
        self._send(HTTPStatus.FORBIDDEN, b"403 forbidden: this status page answers requests to a loopback address "
                   b"only\n", "text/plain; charset=utf-8")
        return False

    def _api(self, path: str) -> None:
        board = self.status_server.board
        if path == "/metrics":
            text = board.query("metrics")
            self._send(HTTPStatus.OK, text.encode(), "text/plain; version=0.0.4; charset=utf-8")
            return
        match = re.fullmatch(r"/api/jobs/([\w.-]+)/?", path)
        log_match = re.fullmatch(r"/api/jobs/([\w.-]+)/logs/([\w.-]+)", path)
        if log_match:
            self._attempt_log(*log_match.groups())
            return
        if path.rstrip("/") == "/api/jobs":
            self._json(HTTPStatus.OK, board.query("jobs"))
        elif path.rstrip("/") == "/api/workers":
            self._json(HTTPStatus.OK, board.query("workers"))
        elif match:
            job = board.query("job:" + match.group(1))
            if job is None:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"unknown job {match.group(1)}"})
            else:
                self._json(HTTPStatus.OK, job)
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such API route: {path}"})

    def _attempt_log(self, job_id: str, attempt_id: str) -> None:
        """An attempt's captured output, read from the worker holding it, as plain text."""
        place = self.status_server.board.query(f"log:{job_id}:{attempt_id}")
        if place is None:
            self._send(HTTPStatus.NOT_FOUND, f"unknown attempt {attempt_id} of job {job_id}\n".encode(),
                       "text/plain; charset=utf-8")
            return
        if not place["address"]:
            text = f"(worker {place['worker_id']} is gone; its logs went with it)\n".encode()
        else:
            try:
                data = attempt_log.read_remote(place["address"], self.status_server.key, job_id, attempt_id,
                                               timeout_s=5.0)
                text = data if data is not None else b"(no output captured)\n"
            except OSError as exc:
                text = f"(cannot read it from worker {place['worker_id']}: {exc})\n".encode()
        self._send(HTTPStatus.OK, text, "text/plain; charset=utf-8")

    def _static(self, name: str) -> None:
        kind = STATIC_TYPES.get(os.path.splitext(name)[1])
        if kind is None or "/" in name or name.startswith("."):
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")
            return
        try:
            with open(os.path.join(STATIC_DIR, name), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")
            return
        self._send(HTTPStatus.OK, data, kind)

    def _json(self, status: HTTPStatus, value: Any) -> None:
        self._send(status, json.dumps(value, separators=(",", ":"), default=str).encode(),
                   "application/json; charset=utf-8")

    def _send(self, status: HTTPStatus, data: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in {**HEADERS, **(extra or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
