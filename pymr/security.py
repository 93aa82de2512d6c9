"""Cluster authentication and encryption: ZeroMQ CURVE with one shared cluster key.

A worker runs whatever code a job sends, so every socket of a cluster is a CURVE
socket: the coordinator and each worker's shuffle server are CURVE servers, and a
ZAP handler (``_ZapHandler``, ZeroMQ's RFC 27) admits only clients that prove they
hold the cluster's secret key. A peer without the key fails the handshake before any
message of its is read, so nothing unauthenticated is ever unpickled.

The key file (``pymr keygen``) holds one CURVE key pair, used by every member of the
cluster, and is created with mode 0600; the pair is checked when the file is read.
Local mode makes a fresh key per run. Without a key, services listen on loopback only,
and a service listens on exactly the address it was given, never a wider one.
"""

from __future__ import annotations

import collections
import errno
import hmac
import json
import logging
import os
import socket
import stat
import struct
import tempfile
import threading
import time
from dataclasses import dataclass

import zmq
from zmq.utils import z85
from zmq.utils.z85 import Z85CHARS

from .errors import AddressError, PymrError
from .protocol import HANDSHAKE_S

log = logging.getLogger("pymr.security")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
Z85_CHARACTERS = frozenset(Z85CHARS)


class KeyFileError(PymrError):
    """The cluster key file is missing, unreadable or malformed."""

    exit_code = 2


@dataclass(frozen=True)
class ClusterKey:
    public: bytes
    secret: bytes

    def to_dict(self) -> dict[str, str]:
        return {"public": self.public.decode(), "secret": self.secret.decode()}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> ClusterKey:
        return cls(data["public"].encode(), data["secret"].encode())


def generate_key() -> ClusterKey:
    public, secret = zmq.curve_keypair()
    return ClusterKey(public, secret)


def write_key_file(path: str, key: ClusterKey, overwrite: bool = False) -> None:
    """Write ``key`` to ``path`` readable by its owner only (0600).

    ``overwrite`` replaces whatever is at ``path``, a symbolic link included, by a new
    file: never the file a link points to, which may be anyone's."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise KeyFileError(f"cannot write key file {path}: folder {folder} does not exist")
    try:
        if overwrite:
            fd, temporary = tempfile.mkstemp(dir=folder, prefix=".pymr-key-")  # mode 0600
            try:
                _write_key(fd, key)
                os.replace(temporary, path)
            except BaseException:
                os.unlink(temporary)
                raise
        else:
            _write_key(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), key)
    except FileExistsError:
        raise KeyFileError(f"key file already exists: {path} (remove it first, choose another name, "
                           "or give --force)") from None
    except OSError as exc:
        raise KeyFileError(f"cannot write key file {path}: {exc.strerror}") from None


def _write_key(fd: int, key: ClusterKey) -> None:
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        json.dump({"pymr-cluster-key": 1, **key.to_dict()}, f)
        f.write("\n")


def read_key_file(path: str) -> ClusterKey:
    try:
        with open(path) as f:
            data = json.load(f)
        key = ClusterKey.from_dict(data)
    except FileNotFoundError:
        raise KeyFileError(f"secret file not found: {path} (create one with: pymr keygen {path})") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise KeyFileError(f"not a pymr key file: {path} ({exc})") from None
    for name, value in (("public", key.public), ("secret", key.secret)):
        if len(value) != 40 or not set(value) <= Z85_CHARACTERS:
            raise KeyFileError(f"not a pymr key file: {path} (its {name} key is not 40 Z85 characters: "
                               "letters, digits and .-:+=^!/*?&<>()[]{}@%$#)")
    mode = os.stat(path).st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"secret file {path} is readable by others (mode {stat.S_IMODE(mode):o}); "
                           f"run: chmod 600 {path}")
    try:
        public_of_secret = zmq.curve_public(key.secret)
    except zmq.ZMQError:
        public_of_secret = None  # five characters over 2**32: not a key
    if public_of_secret != key.public:
        raise KeyFileError(f"bad key file: {path} (its public key is not the pair of its secret key; "
                           f"create a new key with: pymr keygen --force {path}, and copy it to every machine)")
    return key


def is_loopback_host(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def is_loopback(address: str) -> bool:
    """Whether a ``tcp://HOST:PORT`` address (or ``ipc://``, ``inproc://``) stays on this machine."""
    if not address.startswith("tcp://"):
        return address.startswith(("ipc://", "inproc://"))
    return is_loopback_host(address[len("tcp://"):].rsplit(":", 1)[0])


def tcp_address(host: str, port: int | str) -> str:
    """``tcp://HOST:PORT``, with an IPv6 address in brackets as ZeroMQ wants it."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"tcp://{host}:{port}"


def listen(sock: zmq.Socket, address: str) -> str:
    """Bind ``sock`` to exactly ``address`` and return the address bound (the port filled in).

    Raises ``AddressError`` saying why it cannot: pymr never falls back to a wider address."""
    port = address.rsplit(":", 1)[-1]
    if address.startswith("tcp://") and port.isdigit() and int(port) > 65535:  # ZeroMQ would wrap it around
        raise AddressError(f"cannot listen on {address}: port {port} is over 65535")
    _allow_ipv6(sock, address)
    try:
        sock.bind(address)
    except zmq.ZMQError as exc:
        raise AddressError(f"cannot listen on {address}: {_why(exc)}") from None
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)


def connect(sock: zmq.Socket, address: str) -> None:
    _allow_ipv6(sock, address)
    try:
        sock.connect(address)
    except zmq.ZMQError as exc:
        raise AddressError(f"cannot connect to {address}: {_why(exc)}") from None


def _allow_ipv6(sock: zmq.Socket, address: str) -> None:
    # Only for IPv6 addresses: with IPV6 set, ZeroMQ resolves "localhost" to ::1, and a
    # service on 127.0.0.1 would no longer be found.
    if address.startswith("tcp://["):
        sock.setsockopt(zmq.IPV6, 1)


def _why(exc: zmq.ZMQError) -> str:
    reasons = {
        errno.EADDRINUSE: "the port is in use (is another pymr coordinator or worker running there?)",
        errno.EADDRNOTAVAIL: "that is not an address of this machine",
        errno.ENODEV: "no such host or network interface (an unknown name, or an IPv6 address not in [])",
        errno.EINVAL: "not a valid address (expected tcp://HOST:PORT)",
        errno.EPROTONOSUPPORT: "unknown transport (expected tcp://HOST:PORT)",
        zmq.ENOCOMPATPROTO: "unknown transport (expected tcp://HOST:PORT)",
        errno.EACCES: "permission denied (ports below 1024 need privileges)",
    }
    return reasons.get(exc.errno, exc.strerror)


class Security:
    """Applies the cluster key (or nothing) to the sockets of one ZeroMQ context."""

    def __init__(self, context: zmq.Context, key: ClusterKey | None):
        self.context = context
        self.key = key
        self._authenticator: _ZapHandler | None = None
        self._limits: list[_NewConnectionLimit] = []

    @property
    def enabled(self) -> bool:
        return self.key is not None

    def server(self, sock: zmq.Socket, new_connections: int | None = None) -> zmq.Socket:
        """Make ``sock`` a CURVE server admitting only holders of the cluster key, and at
        most ``new_connections`` connections in any handshake time (see ``_NewConnectionLimit``)."""
        if self.key is None:
            return sock
        if new_connections is not None:
            self._limits.append(_NewConnectionLimit(sock, new_connections, HANDSHAKE_S))
        if self._authenticator is None:
            self._authenticator = _ZapHandler(self.context, self.key.public)
            self._authenticator.start()
        sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN)
        sock.curve_secretkey = self.key.secret
        sock.curve_publickey = self.key.public
        sock.curve_server = True
        return sock

    def client(self, sock: zmq.Socket) -> zmq.Socket:
        """Make ``sock`` a CURVE client of a server holding the cluster key."""
        if self.key is None:
            return sock
        sock.curve_secretkey = self.key.secret
        sock.curve_publickey = self.key.public
        sock.curve_serverkey = self.key.public
        return sock

    def close(self) -> None:
        """Call after closing the server sockets (their monitors then stop)."""
        for limit in self._limits:
            limit.join()
        self._limits = []
        if self._authenticator is not None:
            self._authenticator.stop()
            self._authenticator = None


class _NewConnectionLimit:
    """Hangs up on new connections while ``limit`` others are still in their handshake.

    ZeroMQ has no cap on connections, and each can make the process hold a frame before
    it authenticates; one that has not authenticated within the handshake time is dropped
    (``protocol.HANDSHAKE_S``). So at most ``limit`` strangers hold memory at a time.
    Connections that authenticated are not counted: a cluster of thousands of workers
    (re)connecting at once is admitted as fast as the handshakes finish. A thread reads
    the socket's monitor; a peer hung up on just reconnects later.

    The monitor says which descriptor each connection has when it is accepted and when it
    ends, but not which one a successful handshake belongs to (that event's value is 0).
    So the count in handshake is: connections accepted within the handshake time and
    still open, less handshakes that succeeded within it and whose connection is still
    open. A connection whose handshake failed ends with a failure event right before its
    DISCONNECTED (ZeroMQ's I/O thread sends the two together); one that ends without
    takes a success off. Strangers never succeed, so a flood of them is counted exactly;
    a stranger whose greeting is garbage also ends without a failure event, and makes the
    count one too high (stricter) until the handshake time has passed.
    """

    FAILED = zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    EVENTS = (zmq.EVENT_ACCEPTED | zmq.EVENT_HANDSHAKE_SUCCEEDED | FAILED | zmq.EVENT_DISCONNECTED
              | zmq.EVENT_CLOSED | zmq.EVENT_MONITOR_STOPPED)

    def __init__(self, sock: zmq.Socket, limit: int, window_s: float):
        self.limit = limit
        self.window_s = window_s
        self.monitor = sock.get_monitor_socket(self.EVENTS)
        self.thread = threading.Thread(target=self._run, name="pymr-connection-limit", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        accepted_s: dict[int, float] = {}  # open connections' descriptors -> when accepted, oldest first
        succeeded_s: collections.deque[float] = collections.deque()  # when handshakes succeeded
        refused = 0
        failed = False  # whether the last event was a failed handshake
        try:
            while True:
                events = self._read_events()
                now = time.monotonic()
                fresh = []
                for kind, value in events:
                    if kind == zmq.EVENT_MONITOR_STOPPED:
                        return
                    if kind == zmq.EVENT_ACCEPTED:
                        accepted_s.pop(value, None)  # (a reused descriptor goes to the end)
                        accepted_s[value] = now
                        fresh.append(value)
                    elif kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                        succeeded_s.append(now)
                    elif kind == zmq.EVENT_DISCONNECTED:
                        if accepted_s.pop(value, None) is not None and not failed and succeeded_s:
                            succeeded_s.popleft()  # it had authenticated (within the handshake time)
                    elif not kind & self.FAILED:
                        accepted_s.pop(value, None)
                    failed = bool(kind & self.FAILED)
                while accepted_s and now - next(iter(accepted_s.values())) > self.window_s:
                    del accepted_s[next(iter(accepted_s))]  # done with its handshake, one way or another
                while succeeded_s and now - succeeded_s[0] > self.window_s:
                    succeeded_s.popleft()
                over = len(accepted_s) - len(succeeded_s) - self.limit
                for fd in fresh[::-1][:max(0, over)]:  # the newest: the least likely to have authenticated
                    if accepted_s.pop(fd, None) is not None:
                        _hang_up(fd)
                        refused += 1
                        if refused == 1 or refused % 1000 == 0:
                            log.warning("over %d connections in their handshake at once: hung up on %d (a flood?)",
                                        self.limit, refused)
        except zmq.ZMQError:  # the context is gone
            return
        finally:
            self.monitor.close(linger=0)

    def _read_events(self) -> list[tuple[int, int]]:
        """Wait for an event, then take all that are queued, so that decisions are made on
        what ZeroMQ has said so far, not on an ACCEPTED event whose handshake has since
        succeeded. Each is ``(event, value)``: a monitor message's first frame holds a
        16-bit event and a 32-bit value (pyzmq's own reader imports asyncio: 45 ms)."""
        events = [self.monitor.recv_multipart()]
        while self.monitor.poll(0):
            events.append(self.monitor.recv_multipart(zmq.NOBLOCK))
        return [struct.unpack("=HI", frames[0][:6]) for frames in events]

    def join(self) -> None:
        self.thread.join(timeout=5)


def _hang_up(fd: int) -> None:
    try:
        duplicate = os.dup(fd)
    except OSError:  # already closed by ZeroMQ
        return
    try:
        conn = socket.socket(fileno=duplicate)
    except OSError:  # no longer a socket
        os.close(duplicate)
        return
    with conn:
        try:
            conn.shutdown(socket.SHUT_RDWR)  # ZeroMQ sees the end and closes its side
        except OSError:
            pass


ZAP_DOMAIN = b"pymr"


class _ZapHandler(threading.Thread):
    """Answers a context's ZAP requests (ZeroMQ's RFC 27): a CURVE client of a socket in
    the ``pymr`` domain is admitted only if its public key is the cluster's.

    One thread per context, on a plain poller: pyzmq's ``ThreadAuthenticator`` runs an
    asyncio loop per thread, and importing it cost every process 45 ms of start-up.
    """

    ENDPOINT = "inproc://zeromq.zap.01"  # where ZeroMQ sends a context's requests

    def __init__(self, context: zmq.Context, public_key: bytes):
        super().__init__(name="pymr-zap", daemon=True)
        self.allowed = z85.decode(public_key)
        self.requests = context.socket(zmq.REP)
        self.requests.linger = 0
        self.requests.bind(self.ENDPOINT)
        self.stop_sender = context.socket(zmq.PAIR)
        self.stop_sender.linger = 0
        endpoint = f"inproc://pymr-zap-stop-{id(self)}"
        self.stop_sender.bind(endpoint)
        self.stop_receiver = context.socket(zmq.PAIR)
        self.stop_receiver.linger = 0
        self.stop_receiver.connect(endpoint)

    def run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.requests, zmq.POLLIN)
        poller.register(self.stop_receiver, zmq.POLLIN)
        try:
            while True:
                ready = dict(poller.poll())
                if self.stop_receiver in ready:
                    return
                if self.requests in ready:
                    self.requests.send_multipart(self.reply(self.requests.recv_multipart()))
        except zmq.ContextTerminated:  # the context went first: nothing is left to answer
            pass
        finally:
            self.requests.close()
            self.stop_receiver.close()

    def reply(self, request: list[bytes]) -> list[bytes]:
        """The answer to one request: ``version, id, domain, address, identity, mechanism, credentials...``."""
        if len(request) < 6 or request[0] != b"1.0":
            return [b"1.0", request[1] if len(request) > 1 else b"", b"500", b"malformed request", b"", b""]
        request_id, domain, mechanism, credentials = request[1], request[2], request[5], request[6:]
        admitted = (domain == ZAP_DOMAIN and mechanism == b"CURVE" and len(credentials) == 1
                    and hmac.compare_digest(credentials[0], self.allowed))
        if admitted:
            return [b"1.0", request_id, b"200", b"OK", b"pymr", b""]
        return [b"1.0", request_id, b"400", b"not the cluster key", b"", b""]

    def stop(self) -> None:
        """Stop answering (the thread closes its sockets) and wait for the thread."""
        try:
            self.stop_sender.send(b"", zmq.NOBLOCK)
        except zmq.ZMQError:  # the thread is gone already
            pass
        self.join()
        self.stop_sender.close()
