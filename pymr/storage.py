"""Where inputs and outputs live: local paths, or any filesystem ``pyarrow.fs`` supports, by URI.

A path in pymr is a local path (``/data/books``) or a URI ``SCHEME://AUTHORITY/PATH`` that
``pyarrow.fs.FileSystem.from_uri`` understands (``s3://bucket/prefix``, ``gs://bucket/prefix``,
``hdfs://namenode:8020/path``, ``abfs://...``); ``file:///data/books`` is the local path
``/data/books``. Each function below does one operation on either kind of path. Local
paths keep the plain ``os`` calls and ``open`` (pyarrow is not in the way of a local read).

A URI's query configures the filesystem of its scheme and authority (for S3, the bucket):
``s3://bucket/in?endpoint_override=127.0.0.1:9000&scheme=http``. ``normalize`` takes the
query off, so record keys and messages show ``s3://bucket/in/file.txt`` and secrets given
there do not end up in output, and registers it for ``s3://bucket``; ``options_for`` lists
the options that some paths use, which a job carries to its coordinator and tasks, each
of which calls ``configure``. Anything not in the query comes from the environment of
the process that touches the storage (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``, ...), as pyarrow reads it. A process makes
each filesystem once and keeps it.

Object stores have no rename: ``renames_atomically`` tells the output committer which of
its two protocols to use. A failure becomes ``StorageError``, which names the URI and
says what went wrong in a user's words (access denied, no such bucket, unreachable).
Nothing being there is not a failure: ``kind`` returns None, and callers say what was
missing.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import threading
import urllib.parse
from typing import IO, Any

from .errors import StorageError

#: bytes read from remote storage at a time (each read is one ranged request)
REMOTE_READ_BUFFER = 8 * 1024 * 1024
#: bytes this process has read from remote files through ``open_input``: the kernel's
#: count of a process's reads (a running map's progress, ``executor.TaskProgress``) sees
#: no socket reads
remote_bytes_read = 0
#: the biggest object copied by the store itself (S3's CopyObject limit); bigger ones are streamed
SERVER_COPY_MAX_BYTES = 5 * 1024**3
_RENAMING_FILESYSTEMS = {"local", "hdfs"}
_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://([^/?]*)([^?]*)(?:\?(.*))?$", re.DOTALL)

_options: dict[str, str] = {}  # "s3://bucket" -> "endpoint_override=...&scheme=http"
_filesystems: dict[tuple[str, str], tuple[Any, str]] = {}  # (base, query) -> (filesystem, root path)
_lock = threading.Lock()


# -- names ------------------------------------------------------------------------------------
def is_uri(path: str) -> bool:
    return "://" in path and _URI.match(path) is not None


def is_remote(path: str) -> bool:
    """True for a URI other than ``file://`` (a ``file://`` URI is a local path)."""
    return "://" in path and path[:5].lower() != "file:" and _URI.match(path) is not None


def normalize(given: str) -> str:
    """An absolute local path, or a URI without its query (its options are registered)."""
    if not is_uri(given):
        return os.path.abspath(given)
    scheme, netloc, path, query = _parts(given)
    if scheme.lower() == "file":
        if netloc not in ("", "localhost"):
            raise StorageError(f"{given}: a file URI names a path on this machine: file:///PATH")
        return os.path.abspath(urllib.parse.unquote(path) or "/")
    base = f"{scheme}://{netloc}"
    if query:
        configure({base: query})
    return base + (path.rstrip("/") if path.strip("/") else "")


def configure(options: dict[str, str] | None) -> None:
    """Use these options (URI query strings, by ``scheme://authority``) from now on."""
    if options:
        with _lock:
            _options.update(options)


def options_for(paths: list[str]) -> dict[str, str]:
    """The registered options of the filesystems that ``paths`` are on."""
    bases = {_base(p) for p in paths if is_remote(p)}
    return {base: _options[base] for base in sorted(bases) if base in _options}


def join(path: str, *names: str) -> str:
    if not is_remote(path):
        return os.path.join(path, *names)
    return "/".join([path.rstrip("/"), *names])


def display(path: str) -> str:
    """The path for a message: a URI without its query or a password in it."""
    if not is_remote(path):
        return path
    scheme, netloc, rest, _ = _parts(path)
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    return f"{scheme}://{netloc}{rest}"


def _parts(uri: str) -> tuple[str, str, str, str]:
    scheme, netloc, path, query = _URI.match(uri).groups()  # type: ignore[union-attr]
    return scheme, netloc, path, query or ""


def _base(uri: str) -> str:
    scheme, netloc, _, _ = _parts(uri)
    return f"{scheme}://{netloc}"


# -- filesystems ------------------------------------------------------------------------------
def resolve(path: str) -> tuple[Any, str]:
    """``(pyarrow filesystem, path inside it)`` for a URI."""
    filesystem, root, rest = _filesystem(path)
    return filesystem, _inside(root, rest)


def _filesystem(path: str) -> tuple[Any, str, str]:
    scheme, netloc, rest, query = _parts(path)
    base = f"{scheme}://{netloc}"
    query = query or _options.get(base, "")
    with _lock:
        made = _filesystems.get((base, query))
    if made is None:
        from pyarrow import fs as pafs

        try:
            made = pafs.FileSystem.from_uri(base + "/" + (f"?{query}" if query else ""))
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise _failure(exc, path, "use") from None
        if scheme.lower() == "s3":
            _check_endpoint(query, path)
        with _lock:
            _filesystems[(base, query)] = made
    return made[0], made[1], rest


ENDPOINT_PROBE_S = 2.0  # the AWS SDK retries a refused connection for about 18 s before it says so


def _check_endpoint(query: str, path: str) -> None:
    """Fail at once if an S3 endpoint given on the URI or in the environment refuses
    connections (a wrong port, a server not started), instead of after the SDK's retries."""
    import socket

    given = urllib.parse.parse_qs(query)
    endpoint = (given.get("endpoint_override") or [os.environ.get("AWS_ENDPOINT_URL_S3")
                                                   or os.environ.get("AWS_ENDPOINT_URL") or ""])[0]
    if not endpoint:
        return  # AWS itself
    scheme = (given.get("scheme") or ["https"])[0]
    parsed = urllib.parse.urlsplit(endpoint if "://" in endpoint else f"{scheme}://{endpoint}")
    try:
        port = parsed.port or (80 if parsed.scheme == "http" else 443)
        with socket.create_connection((parsed.hostname or "", port), timeout=ENDPOINT_PROBE_S):
            pass
    except (OSError, ValueError) as exc:
        raise StorageError(f"cannot use {display(path)}: cannot reach the storage service at {parsed.netloc} "
                           f"({exc}): check the endpoint (AWS_ENDPOINT_URL, or ?endpoint_override=HOST:PORT"
                           "&scheme=http on the URI)") from None


def _inside(root: str, rest: str) -> str:
    inner = rest.strip("/")
    return f"{root.rstrip('/')}/{inner}" if inner else root


def _uri_of(path: str, inner_path: str) -> str:
    """The URI of ``inner_path``, a path in the filesystem of URI ``path``."""
    _, root, _ = _filesystem(path)
    root = root.rstrip("/")
    relative = inner_path[len(root):] if inner_path == root or inner_path.startswith(root + "/") else inner_path
    return _base(path) + "/" + relative.strip("/")


def renames_atomically(path: str) -> bool:
    """Whether a file can be renamed atomically here (local disks, HDFS; not object stores)."""
    if not is_remote(path):
        return True
    return _filesystem(path)[0].type_name in _RENAMING_FILESYSTEMS


def container_exists(path: str) -> bool:
    """Whether the bucket (or container, or root) that a URI is in exists."""
    if not is_remote(path):
        return True
    filesystem, root, _ = _filesystem(path)
    from pyarrow import fs as pafs

    return _call(lambda: filesystem.get_file_info(root), path, "read").type != pafs.FileType.NotFound


# -- looking --------------------------------------------------------------------------------
def kind(path: str) -> str | None:
    """``"file"``, ``"dir"``, ``"other"`` (a local device or socket), or None if nothing is there."""
    if not is_remote(path):
        if os.path.isfile(path):
            return "file"
        if os.path.isdir(path):
            return "dir"
        return "other" if os.path.exists(path) else None
    from pyarrow import fs as pafs

    filesystem, inner = resolve(path)
    found = _call(lambda: filesystem.get_file_info(inner), path, "read").type
    return {pafs.FileType.File: "file", pafs.FileType.Directory: "dir"}.get(found)


def size(path: str) -> int:
    if not is_remote(path):
        return os.path.getsize(path)
    from pyarrow import fs as pafs

    filesystem, inner = resolve(path)
    info = _call(lambda: filesystem.get_file_info(inner), path, "read")
    if info.type != pafs.FileType.File:
        raise StorageError(f"cannot read {display(path)}: no such file")
    return info.size


def stat(path: str) -> tuple[int, int | None] | None:
    """``(size, mtime_ns)`` of a file (mtime None where the filesystem keeps none), or
    None if no file is there."""
    if not is_remote(path):
        try:
            found = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return found.st_size, found.st_mtime_ns
    from pyarrow import fs as pafs

    filesystem, inner = resolve(path)
    info = _call(lambda: filesystem.get_file_info(inner), path, "read")
    return (info.size, info.mtime_ns) if info.type == pafs.FileType.File else None


def listdir(path: str) -> list[str]:
    """Names in a folder, sorted; none for a missing folder."""
    if not is_remote(path):
        return sorted(os.listdir(path)) if os.path.isdir(path) else []
    from pyarrow import fs as pafs

    filesystem, inner = resolve(path)
    infos = _call(lambda: filesystem.get_file_info(pafs.FileSelector(inner, allow_not_found=True)), path, "list")
    return sorted(info.base_name for info in infos)


def list_files(path: str) -> list[tuple[str, int]]:
    """``(URI, size)`` of every file below a remote folder, at any depth."""
    from pyarrow import fs as pafs

    filesystem, inner = resolve(path)
    selector = pafs.FileSelector(inner, recursive=True, allow_not_found=True)
    infos = _call(lambda: filesystem.get_file_info(selector), path, "list")
    return [(_uri_of(path, info.path), info.size) for info in infos if info.type == pafs.FileType.File]


# -- reading ------------------------------------------------------------------------------------
def open_input(path: str, buffering: int = -1) -> IO[bytes]:
    """A seekable binary reader; a remote file is read ``buffering`` bytes (by default
    ``REMOTE_READ_BUFFER``) per request."""
    if not is_remote(path):
        return open(path, "rb", buffering=buffering)
    return io.BufferedReader(_CountedReads(open_random(path)),
                             buffer_size=buffering if buffering > 0 else REMOTE_READ_BUFFER)


class _CountedReads(io.RawIOBase):
    """A remote file whose reads add to ``remote_bytes_read`` (one call per buffer's worth)."""

    def __init__(self, raw: Any):
        self.raw = raw

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        global remote_bytes_read
        count = self.raw.readinto(buffer)
        remote_bytes_read += count
        return count

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()

    def close(self) -> None:
        self.raw.close()
        super().close()


def open_random(path: str) -> Any:
    """A ``pyarrow`` random-access file, for readers that fetch pieces (Parquet, Arrow IPC)."""
    if not is_remote(path):
        import pyarrow as pa

        return pa.OSFile(path, "rb")
    filesystem, inner = resolve(path)
    return _call(lambda: filesystem.open_input_file(inner), path, "read")


# -- writing ------------------------------------------------------------------------------------
def makedirs(path: str) -> None:
    """Make a folder and its parents (nothing to do on an object store, where folders are
    only the common prefixes of names)."""
    if not is_remote(path):
        os.makedirs(path, exist_ok=True)
    elif renames_atomically(path):
        filesystem, inner = resolve(path)
        _call(lambda: filesystem.create_dir(inner, recursive=True), path, "create")


def write_bytes(path: str, data: bytes) -> None:
    """Replace the file at ``path`` by ``data`` at once: locally by a rename, on a store by
    one upload (an object appears whole or not at all)."""
    if not is_remote(path):
        tmp = path + ".tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:  # a full disk: no half-written file is left behind
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return
    filesystem, inner = resolve(path)

    def put() -> None:
        with filesystem.open_output_stream(inner, compression=None) as stream:  # the bytes as they are
            stream.write(data)

    _call(put, path, "write")


def upload(local_path: str, path: str) -> None:
    """Copy a local file to ``path``."""
    if not is_remote(path):
        shutil.copyfile(local_path, path)
        return
    from pyarrow import fs as pafs

    filesystem, inner = resolve(path)
    _call(lambda: pafs.copy_files(local_path, inner, source_filesystem=pafs.LocalFileSystem(),
                                  destination_filesystem=filesystem), path, "write")


def copy(source: str, target: str) -> None:
    """Copy a file; in one store, by the store itself when it is small enough."""
    if not is_remote(source) and not is_remote(target):
        shutil.copyfile(source, target)
        return
    from pyarrow import fs as pafs

    source_fs, source_inner = resolve(source) if is_remote(source) else (pafs.LocalFileSystem(), source)
    target_fs, target_inner = resolve(target) if is_remote(target) else (pafs.LocalFileSystem(), target)
    if source_fs is target_fs and size(source) <= SERVER_COPY_MAX_BYTES:
        _call(lambda: target_fs.copy_file(source_inner, target_inner), target, "write")
        return
    _call(lambda: pafs.copy_files(source_inner, target_inner, source_filesystem=source_fs,
                                  destination_filesystem=target_fs), target, "write")


def move(source: str, target: str) -> None:
    """Rename a file (atomic where ``renames_atomically``)."""
    if not is_remote(source):
        os.replace(source, target)
        return
    filesystem, source_inner = resolve(source)
    _call(lambda: filesystem.move(source_inner, resolve(target)[1]), source, "move")


def delete(path: str) -> None:
    """Remove a file, or a folder and everything in it; nothing there is fine."""
    if not is_remote(path):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            os.unlink(path)
        return
    from pyarrow import fs as pafs

    filesystem, inner = resolve(path)

    def remove() -> None:
        found = filesystem.get_file_info(inner).type
        try:
            if found == pafs.FileType.Directory:
                filesystem.delete_dir(inner)
            elif found == pafs.FileType.File:
                filesystem.delete_file(inner)
        except FileNotFoundError:  # removed meanwhile
            pass

    _call(remove, path, "delete")


# -- failures -----------------------------------------------------------------------------------
_DENIED = ("ACCESS_DENIED", "INVALID_ACCESS_KEY_ID", "SIGNATURE_DOES_NOT_MATCH", "AccessDenied",
           "InvalidAccessKeyId", "SignatureDoesNotMatch", "HTTP status 403", "Forbidden")
_NO_BUCKET = ("NO_SUCH_BUCKET", "NoSuchBucket")
_UNREACHABLE = ("NETWORK_CONNECTION", "curlCode", "Could not connect", "Couldn't connect", "Connection refused",
                "Could not resolve", "Timeout was reached")


def _call(operation, path: str, doing: str):
    try:
        return operation()
    except (OSError, ValueError) as exc:
        if isinstance(exc, StorageError):
            raise
        raise _failure(exc, path, doing) from None


def _failure(exc: Exception, path: str, doing: str) -> StorageError:
    """A pyarrow error as a user reads it: what failed, where, and what to check."""
    text = str(exc)
    where = display(path)
    if any(code in text for code in _DENIED):
        why = ("access denied: check the credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the "
               f"environment, or your store's equivalent) and their permissions [{text}]")
    elif any(code in text for code in _NO_BUCKET) or re.search(r"Bucket '[^']*' not found", text):
        why = f"the bucket {_parts(path)[1]!r} does not exist"
    elif any(code in text for code in _UNREACHABLE):
        why = ("cannot reach the storage service: check the endpoint (AWS_ENDPOINT_URL, or "
               f"?endpoint_override=HOST:PORT&scheme=http on the URI) [{text}]")
    elif isinstance(exc, FileNotFoundError):
        why = "no such file or folder"
    else:
        why = text
    return StorageError(f"cannot {doing} {where}: {why}")
