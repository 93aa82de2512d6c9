"""Where a job's map outputs are: one compact table per version, not one list per reduce.

Every reduce reads its partition from every map output, so telling each reduce where
all M outputs are would send M x R locations (at M = 200,000 and R = 5,000, about
156 GiB). Instead the coordinator encodes the table once per *version* (it changes
only when a map output is committed or lost), and sends it to a worker with the first
reduce of that version it gives the worker; the worker hands the same bytes to each of
its reduce attempts, which decode it in the task's own process. This is the role of
Hadoop's map-completion events and Spark's MapOutputTracker.

The table is zlib-compressed JSON. A map's output path names its attempt, so it holds
the map's task id (``m00042``); with that replaced by a placeholder, the paths of one
worker's maps are a few *templates* (one per attempt number), so the table is the
distinct ``(host, address, template)`` groups once, then one group number per map:
about a byte and a half per map after compression, whatever the cluster's size
(the full paths took 11 bytes a map at 200,000 maps on 2,000 workers).
"""

from __future__ import annotations

import json
import zlib
from typing import Any

MAX_DECODED_BYTES = 1 << 30  # a table is far smaller; this only stops a zip bomb


PLACEHOLDER = "\x00"  # no path holds a NUL


def _task_id(index: int) -> str:
    return f"m{index:05d}"  # as scheduler.Task.task_id names a map


def encode(locations: list[dict[str, Any]]) -> bytes:
    """The table of ``locations`` (one ``{"path", "host", "address"}`` per map, in map order)."""
    groups: dict[tuple[str | None, str | None, str], int] = {}
    maps = []
    for index, location in enumerate(locations):
        template = location["path"].replace(_task_id(index), PLACEHOLDER)
        key = (location.get("host"), location.get("address"), template)
        maps.append(groups.setdefault(key, len(groups)))
    data = json.dumps({"groups": list(groups), "maps": maps}, separators=(",", ":")).encode()
    return zlib.compress(data, 6)


def decode(table: bytes) -> list[dict[str, Any]]:
    """The locations, in map order, as ``encode`` was given them."""
    inflater = zlib.decompressobj()
    data = inflater.decompress(table, MAX_DECODED_BYTES)
    if inflater.unconsumed_tail:
        raise ValueError("map output table too large")
    decoded = json.loads(data)
    groups = decoded["groups"]
    return [{"path": groups[g][2].replace(PLACEHOLDER, _task_id(index)), "host": groups[g][0],
             "address": groups[g][1]} for index, g in enumerate(decoded["maps"])]
