"""Fetching map outputs from another worker (pymr/fetch.py): a real shuffle server on a
ZeroMQ socket, a real map output file, batches compressed on the wire when it pays."""

from __future__ import annotations

import os
import random
import threading

import pyarrow as pa
import pytest
import zmq

from pymr.fetch import RemoteRunReader, ShuffleServer, _from_wire, _wire_form
from pymr.keys import partition_for
from pymr.security import Security
from pymr.shuffle import MapOutputBuffer, RunReader


def write_map_output(folder, pairs, partitions=3) -> str:
    buffer = MapOutputBuffer(str(folder), partitions, partition_for, None, 1 << 20)
    for key, value in pairs:
        buffer.add(key, value)
    return buffer.close(os.path.join(str(folder), "map.arrow"))


@pytest.fixture
def server(tmp_path):
    context = zmq.Context()
    shuffle = ShuffleServer(context, Security(context, None), "127.0.0.1", str(tmp_path))
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            if shuffle.socket.poll(50):
                shuffle.handle_all()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield context, shuffle
    stop.set()
    thread.join()
    shuffle.close()
    context.destroy(linger=0)


@pytest.mark.parametrize("values", ["words", "random bytes"])
def test_a_fetched_map_output_equals_the_file(server, tmp_path, values):
    context, shuffle = server
    rng = random.Random(values)
    words = [f"word{rng.randint(0, 500)}" for _ in range(30000)]
    if values == "words":  # typed columns that compress 2-3 fold
        pairs = [(word, i % 7) for i, word in enumerate(words)]
    else:  # pickled random bytes: nothing for LZ4 to find
        pairs = [(word, rng.randbytes(64)) for word in words]
    path = write_map_output(tmp_path, pairs)
    local = RunReader(path)
    remote = RemoteRunReader(context, Security(context, None), shuffle.address, path, map_index=0)
    try:
        for partition in range(3):
            got = pa.Table.from_batches(list(remote.batches(partition)), schema=remote.schema)
            want = pa.Table.from_batches(list(local.batches(partition)), schema=remote.schema)
            assert got.num_rows == local.rows(partition) > 0 and got.equals(want)
    finally:
        remote.close()


def test_batches_are_compressed_on_the_wire_only_when_it_pays(tmp_path):
    rng = random.Random(1)
    text = pa.record_batch({"key": pa.array([f"word{i % 300}" for i in range(8192)], pa.large_string()),
                            "value": pa.array([i % 5 for i in range(8192)], pa.int64())})
    noise = pa.record_batch({"key": pa.array([rng.randbytes(32) for _ in range(2000)], pa.large_binary())})
    for batch, compressed in ((text, True), (noise, False)):
        serialized = batch.serialize()
        body, data = _wire_form(serialized)
        assert bool(body.get("codec")) is compressed
        assert (len(data) < 0.5 * serialized.size) if compressed else len(data) == serialized.size
        assert pa.ipc.read_record_batch(_from_wire(body, data), batch.schema).equals(batch)
