"""Where a job's map outputs are: one compact table per version, not one list per reduce.

Every reduce reads its partition from every map output, so telling each reduce where
all M outputs are would send M x R locations (at M = 200,000 and R = 5,000, about
156 GiB). Instead the coordinator encodes the table once per *version* (it changes
only when a map output is committed or lost), and sends it to a worker with the first
reduce of that version it gives the worker; the worker hands the same bytes to each of
its reduce attempts, which decode it in the task's own process. This is the role of
Hadoop's map-completion events and Spark's MapOutputTracker.

The table is zlib-compressed JSON: the distinct ``(host, address)`` pairs once, then
per map its pair's index and its file's path (paths differ only in their attempt ids,
which compress well).
"""

from __future__ import annotations

import json
import zlib
from typing import Any

MAX_DECODED_BYTES = 1 << 30  # a table is far smaller; this only stops a zip bomb


def encode(locations: list[dict[str, Any]]) -> bytes:
    """The table of ``locations`` (one ``{"path", "host", "address"}`` per map, in map order)."""
    hosts: dict[tuple[str | None, str | None], int] = {}
    maps = []
    for location in locations:
        where = (location.get("host"), location.get("address"))
        maps.append([hosts.setdefault(where, len(hosts)), location["path"]])
    data = json.dumps({"hosts": list(hosts), "maps": maps}, separators=(",", ":")).encode()
    return zlib.compress(data, 1)


def decode(table: bytes) -> list[dict[str, Any]]:
    """The locations, in map order, as ``encode`` was given them."""
    inflater = zlib.decompressobj()
    data = inflater.decompress(table, MAX_DECODED_BYTES)
    if inflater.unconsumed_tail:
        raise ValueError("map output table too large")
    decoded = json.loads(data)
    hosts = [{"host": host, "address": address} for host, address in decoded["hosts"]]
    return [{"path": path, **hosts[index]} for index, path in decoded["maps"]]
