"""TeraGen: deterministic input for ``jobs/terasort.py``, 100-byte records, one per line.

A record is 99 printable ASCII bytes and ``\\n`` (the layout of ``make_corpus.py
records``, close to gensort's ASCII mode, which ends records with ``\\r\\n``):

    bytes  0-9    the key: 10 random characters from ' ' to '~'
    bytes 10-11   two spaces
    bytes 12-43   the record number, 32 upper-case hex digits
    bytes 44-45   two spaces
    bytes 46-98   53 filler letters, a pattern chosen by the record number
    byte  99      newline

No record holds a tab. The same seed and count give the same bytes. The summary
printed at the end holds the record count and the checksum that
``scripts/teravalidate.py`` computes and checks (``record_checksum``).

    python scripts/teragen.py /tmp/records.txt --records 1000000
    python scripts/teragen.py /tmp/records.txt --size 64M --seed 7
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Iterator

from pymr.inputs import parse_size  # one parser of sizes: 4096, 64K, 128M, 1G

from teravalidate import record_checksum  # the one definition of the checksum

RECORD_BYTES = 100
KEY_BYTES = 10
CHUNK_RECORDS = 65536
# a random byte -> a printable character ' '..'~' (95 of them)
_PRINTABLE = bytes(32 + b * 95 // 256 for b in range(256))
_FILLERS = [bytes(65 + (i + j // 4) % 26 for j in range(53)) for i in range(26)]


def record_chunks(count: int, seed: int = 0) -> Iterator[bytes]:
    """Records ``0 .. count-1``, a chunk of up to ``CHUNK_RECORDS`` records at a time."""
    rng = random.Random(seed)
    for first in range(0, count, CHUNK_RECORDS):
        n = min(CHUNK_RECORDS, count - first)
        keys = rng.randbytes(KEY_BYTES * n).translate(_PRINTABLE)
        yield b"".join(b"%s  %032X  %s\n" % (keys[KEY_BYTES * i: KEY_BYTES * (i + 1)], first + i,
                                              _FILLERS[(first + i) % 26]) for i in range(n))


def teragen(path: str, count: int, seed: int = 0) -> dict:
    """Write ``count`` records to ``path``; returns what was written (records, bytes, checksum)."""
    checksum = 0
    with open(path, "wb") as out:
        for chunk in record_chunks(count, seed):
            out.write(chunk)
            checksum = (checksum + record_checksum(chunk.split(b"\n")[:-1])) % 2**64
    return {"path": path, "records": count, "bytes": count * RECORD_BYTES, "checksum": f"{checksum:016x}"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", help="file to write")
    amount = parser.add_mutually_exclusive_group(required=True)
    amount.add_argument("--records", type=int, help="how many records to write")
    amount.add_argument("--size", help="bytes to write (a multiple of 100 at most this); suffixes K, M, G")
    parser.add_argument("--seed", type=int, default=0, help="seed of the keys [default: 0]")
    args = parser.parse_args(argv)
    try:
        count = args.records if args.records is not None else parse_size(args.size) // RECORD_BYTES
    except ValueError as exc:
        parser.error(str(exc))
    if count < 0:
        parser.error(f"--records must not be negative, got {count}")
    print(json.dumps(teragen(args.output, count, args.seed), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
