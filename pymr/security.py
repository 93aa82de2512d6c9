"""Cluster authentication and encryption: ZeroMQ CURVE with one shared cluster key.

A worker runs whatever code a job sends, so every socket of a cluster is a CURVE
socket: the coordinator and each worker's shuffle server are CURVE servers, and a
ZAP handler (``zmq.auth``) admits only clients that prove they hold the cluster's
secret key. A peer without the key fails the handshake before any message of its is
read, so nothing unauthenticated is ever unpickled.

The key file (``pymr keygen``) holds one CURVE key pair, used by every member of the
cluster, and is created with mode 0600. Local mode makes a fresh key per run.
Without a key, services listen on loopback only.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass

import zmq
import zmq.auth.thread

from .errors import PymrError

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


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
    """Write ``key`` to ``path`` readable by its owner only (0600)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise KeyFileError(f"key file already exists: {path} (remove it first, or choose another name)") from None
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
    if len(key.public) != 40 or len(key.secret) != 40:
        raise KeyFileError(f"not a pymr key file: {path} (keys must be 40 Z85 characters)")
    mode = os.stat(path).st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"secret file {path} is readable by others (mode {stat.S_IMODE(mode):o}); "
                           f"run: chmod 600 {path}")
    return key


def is_loopback_host(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def is_loopback(address: str) -> bool:
    """Whether a ``tcp://HOST:PORT`` address (or ``ipc://``, ``inproc://``) stays on this machine."""
    if not address.startswith("tcp://"):
        return address.startswith(("ipc://", "inproc://"))
    return is_loopback_host(address[len("tcp://"):].rsplit(":", 1)[0])


class Security:
    """Applies the cluster key (or nothing) to the sockets of one ZeroMQ context."""

    def __init__(self, context: zmq.Context, key: ClusterKey | None):
        self.context = context
        self.key = key
        self._authenticator: zmq.auth.thread.ThreadAuthenticator | None = None

    @property
    def enabled(self) -> bool:
        return self.key is not None

    def server(self, sock: zmq.Socket) -> zmq.Socket:
        """Make ``sock`` a CURVE server admitting only holders of the cluster key."""
        if self.key is None:
            return sock
        if self._authenticator is None:
            self._authenticator = zmq.auth.thread.ThreadAuthenticator(self.context)
            self._authenticator.start()
            self._authenticator.configure_curve_callback("pymr", credentials_provider=_OnlyKey(self.key.public))
        sock.setsockopt(zmq.ZAP_DOMAIN, b"pymr")
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
        if self._authenticator is not None:
            self._authenticator.stop()
            self._authenticator = None


class _OnlyKey:
    def __init__(self, public: bytes):
        self.public = public

    def callback(self, domain: str, client_key: bytes) -> bool:
        return client_key == self.public  # zmq.auth passes the Z85 form
