"""Map outputs across machines: each worker serves its own, reducers fetch them in chunks.

A map output stays on the disk of the worker that wrote it. A reducer on the same host
(same advertised address, as in local mode) memory-maps the file directly. Otherwise it
asks the producing worker's *shuffle server* (a CURVE-protected ROUTER socket in the
worker's main loop) for the file's partition index and schema, then for its batches
one at a time, with up to ``WINDOW`` requests in flight, so memory stays bounded by a
few batches per map output. Requests::

    FETCH_INDEX {path}             -> INDEX {index} + schema bytes
    FETCH_BATCH {path, batch, seq} -> BATCH {seq[, codec, size]} + record batch bytes (Arrow
                                      IPC; LZ4-compressed when that pays, see _wire_form)
    any problem                    -> FETCH_ERROR {error}

A fetch that gets no answer after ``RETRIES`` tries of ``TIMEOUT_S`` raises
``FetchFailed`` naming the map task, and the coordinator reruns that map.
"""

from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import zmq

from . import attempt_log, progress
from . import protocol as proto
from .errors import AddressError, PymrError
from .security import Security, connect, listen, tcp_address

# pyarrow is imported where it is used: a worker process that only schedules and
# serves should start fast.

log = logging.getLogger("pymr.fetch")
WINDOW = 4
TIMEOUT_S = 10.0
RETRIES = 3
OPEN_FILES = 64
WIRE_CODEC = "lz4"  # batches cross the network compressed, as Spark's shuffle does by default


class FetchFailed(PymrError):
    """A map output could not be fetched from the worker that holds it."""

    def __init__(self, message: str, map_index: int):
        super().__init__(message)
        self.map_index = map_index


# -- serving ------------------------------------------------------------------------------------
class ShuffleServer:
    """Answers fetch requests for the map outputs under ``data_dir`` (and nothing else)."""

    def __init__(self, context: zmq.Context, security: Security, advertise_host: str, data_dir: str):
        self.data_dir = os.path.realpath(data_dir)
        self.socket = security.server(proto.configure(context.socket(zmq.ROUTER)))
        try:  # on the advertised address only: "*" would serve map outputs on every interface
            port = listen(self.socket, tcp_address(advertise_host, "*")).rsplit(":", 1)[1]
        except AddressError:
            self.socket.close(linger=0)
            raise
        self.address = tcp_address(advertise_host, port)
        self._files: OrderedDict[str, Any] = OrderedDict()  # open, memory-mapped map outputs

    def handle_all(self) -> None:
        while True:
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            identity = frames[0]
            try:
                reply = self._answer(proto.unpack(frames[1:]))
            except proto.ProtocolError as exc:
                log.warning("dropped a malformed fetch request: %s", exc)
                continue
            except Exception as exc:  # a missing or unreadable file: tell the reducer
                reply = proto.pack(proto.FETCH_ERROR, {"error": f"{type(exc).__name__}: {exc}"})
            try:
                self.socket.send_multipart([identity, *reply], zmq.NOBLOCK)
            except zmq.ZMQError as exc:
                log.warning("cannot answer a fetch request: %s", exc)

    def _answer(self, msg: proto.Message) -> list[bytes]:
        from .shuffle import INDEX_KEY

        if msg.kind == proto.READ_LOG:  # an attempt's captured output, for `pymr logs`
            return proto.pack(proto.LOG, *attempt_log.read_for_client(self.data_dir, msg.body))
        reader = self._open(str(msg.body["path"]))
        if msg.kind == proto.FETCH_INDEX:
            last = reader.get_batch_with_custom_metadata(reader.num_record_batches - 1)
            index = json.loads(last.custom_metadata[INDEX_KEY.encode()])
            return proto.pack(proto.INDEX, {"index": index}, reader.schema.serialize().to_pybytes())
        if msg.kind == proto.FETCH_BATCH:
            body, data = _wire_form(reader.get_batch(int(msg.body["batch"])).serialize())
            return proto.pack(proto.BATCH, {"seq": msg.body["seq"], **body}, data)
        raise proto.ProtocolError(f"a shuffle server does not accept {msg.kind!r}")

    def _open(self, path: str):
        import pyarrow as pa

        real = os.path.realpath(path)
        if not real.startswith(self.data_dir + os.sep):
            raise PermissionError(f"not a map output of this worker: {path}")
        reader = self._files.get(real)
        if reader is None:
            reader = pa.ipc.open_file(pa.OSFile(real))
            self._files[real] = reader
            if len(self._files) > OPEN_FILES:
                self._files.popitem(last=False)
        self._files.move_to_end(real)
        return reader

    def forget(self, prefix: str) -> None:
        for path in [p for p in self._files if p.startswith(prefix)]:
            del self._files[path]

    def close(self) -> None:
        self._files.clear()
        self.socket.close(linger=0)


def _wire_form(serialized: Any) -> tuple[dict[str, Any], bytes]:
    """A record batch's IPC bytes as sent: LZ4-compressed when that saves a tenth or more
    (word count's batches shrink about 2.4-fold, for about 0.3 s of CPU per 100 MB at
    both ends together)."""
    import pyarrow as pa

    packed = pa.compress(serialized, codec=WIRE_CODEC, asbytes=True)
    if len(packed) <= 0.9 * serialized.size:
        return {"codec": WIRE_CODEC, "size": serialized.size}, packed
    return {}, serialized.to_pybytes()


def _from_wire(body: dict[str, Any], data: bytes) -> Any:
    import pyarrow as pa

    if body.get("codec"):
        return pa.decompress(data, decompressed_size=int(body["size"]), codec=str(body["codec"]))
    return pa.py_buffer(data)


# -- fetching -----------------------------------------------------------------------------------
class RemoteRunReader:
    """The ``RunReader`` interface over a map output held by another worker."""

    def __init__(self, context: zmq.Context, security: Security, address: str, path: str, map_index: int):
        import pyarrow as pa

        from .shuffle import kind_of_schema

        self.address = address
        self.path = path
        self.map_index = map_index
        self.socket = security.client(proto.configure(context.socket(zmq.DEALER)))
        connect(self.socket, address)
        reply = self._request([proto.pack(proto.FETCH_INDEX, {"path": path})], expect=1)[0]
        self.index = reply.body["index"]
        self.schema = pa.ipc.read_schema(pa.py_buffer(reply.blobs[0]))
        self.key_kind, self.value_kind = kind_of_schema(self.schema)

    def rows(self, partition: int) -> int:
        return self.index[partition][2]

    def nbytes(self, partition: int) -> int:
        return self.index[partition][3]

    def batches(self, partition: int) -> Iterator[Any]:
        first, count = self.index[partition][:2]
        return self._batches(first, count)

    def triples(self, partition: int, encoded: bool) -> Iterator[tuple[Any, Any, Any]]:
        from .shuffle import batch_triples

        first, count = self.index[partition][:2]
        for batch in self._batches(first, count):
            yield from batch_triples(batch, self.key_kind, self.value_kind, encoded)

    def _batches(self, first: int, count: int) -> Iterator[Any]:
        """Record batches in order, keeping up to ``WINDOW`` requests in flight."""
        import pyarrow as pa

        pending: dict[int, Any] = {}
        next_request = first
        for wanted in range(first, first + count):
            while next_request < first + count and next_request - wanted < WINDOW:
                self._send(proto.pack(proto.FETCH_BATCH, {"path": self.path, "batch": next_request,
                                                          "seq": next_request}))
                next_request += 1
            tries = 0
            while wanted not in pending:
                msg = self._receive()
                if msg is None:
                    tries += 1
                    if tries >= RETRIES:
                        self._fail(f"no answer for {tries * TIMEOUT_S:g} s")
                    for seq in range(wanted, next_request):  # resend what is still missing
                        if seq not in pending:
                            self._send(proto.pack(proto.FETCH_BATCH, {"path": self.path, "batch": seq, "seq": seq}))
                    continue
                if msg.kind == proto.BATCH and msg.blobs and int(msg.body["seq"]) >= wanted:
                    pending[int(msg.body["seq"])] = _from_wire(msg.body, msg.blobs[0])
            batch = pa.ipc.read_record_batch(pending.pop(wanted), self.schema)
            progress.advance(batch.num_rows)
            yield batch

    def _request(self, frames: list[list[bytes]], expect: int) -> list[proto.Message]:
        for attempt in range(RETRIES):
            for message in frames:
                self._send(message)
            replies = []
            while len(replies) < expect:
                msg = self._receive()
                if msg is None:
                    break
                replies.append(msg)
            if len(replies) == expect:
                return replies
        self._fail(f"no answer for {RETRIES * TIMEOUT_S:g} s")
        raise AssertionError("unreachable")

    def _send(self, frames: list[bytes]) -> None:
        try:
            self.socket.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:
            self._fail("the worker's queue is full")

    def _receive(self) -> proto.Message | None:
        if not self.socket.poll(int(TIMEOUT_S * 1000)):
            return None
        msg = proto.unpack(self.socket.recv_multipart())
        if msg.kind == proto.FETCH_ERROR:
            self._fail(msg.body.get("error", "unknown error"))
        return msg

    def _fail(self, why: str) -> None:
        raise FetchFailed(f"cannot fetch map output {self.path} of map task {self.map_index} "
                          f"from {self.address}: {why}", self.map_index)

    def close(self) -> None:
        self.socket.close(linger=0)


def open_map_output(location: dict[str, Any], map_index: int, partition: int, here: dict[str, Any],
                    context: zmq.Context | None, security: Security | None):
    """A reader for one map output: direct on the same host, else over ZeroMQ."""
    import pyarrow as pa

    from .shuffle import RunReader

    same_host = location.get("host") in (None, here.get("host")) or context is None
    if same_host:
        try:
            return RunReader(location["path"])
        except (OSError, pa.ArrowInvalid) as exc:
            raise FetchFailed(f"cannot read map output {location['path']} of map task {map_index}: {exc}",
                              map_index) from None
    return RemoteRunReader(context, security, location["address"], location["path"], map_index)
