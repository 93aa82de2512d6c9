"""Deterministic benchmark inputs built from text that ships on this machine.

Two kinds of input, both written by a single pass of plain Python:

* ``text``: real prose and code for word count. The pool is every readable text file
  under ``/usr/share/doc`` (``.gz`` files decompressed), ``/usr/share/common-licenses``
  and every ``.py`` file under ``/usr/lib/python3*``. A file is used only if it is
  valid UTF-8 without NUL bytes. Unicode whitespace other than ASCII's
  (space, ``\\t \\n \\r \\v \\f``), such as NO-BREAK SPACE or ``\\x1c``, becomes a space, so that
  ``str.split()`` and byte-oriented tools (``tr '[:space:]'`` in the C locale) agree on
  what a word is. Files are concatenated in an order shuffled by
  ``random.Random(f"{seed}:{pass}")`` from their sorted paths, so any prefix mixes docs
  and code; when the pool (about 330 MB here) is smaller than the size asked for, it
  is repeated, each pass in a new order. The corpus is cut at the last line end
  that fits, so it ends with a newline and is at most ``size`` bytes.

* ``records``: TeraSort input, gensort-like. Each record is 100 bytes: a 10-byte key
  of random printable ASCII (``' '`` to ``'~'``), two spaces, the record number as 32
  hex digits, two spaces, 53 filler letters and ``\\n``. No record holds a tab.

The same machine contents, size and seed give the same bytes; the text corpus depends
on which Debian and Python packages are installed, so its SHA-256 is reported.

    python scripts/make_corpus.py text /tmp/corpus.txt --size 128M
    python scripts/make_corpus.py records /tmp/records.txt --size 64M
"""

from __future__ import annotations

import argparse
import glob
import gzip
import hashlib
import json
import os
import random
import re
import sys
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass

DOC_ROOTS = ("/usr/share/doc", "/usr/share/common-licenses")
PYTHON_GLOB = "/usr/lib/python3*"
ASCII_SPACE = " \t\n\r\x0b\x0c"
RECORD_SIZE = 100
KEY_SIZE = 10
RECORDS_PER_CHUNK = 65536
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """Bytes from ``65536``, ``64K``, ``128M``, ``1G`` or ``64MiB`` (binary multiples)."""
    if isinstance(text, int):
        return text
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"not a size: {text!r} (examples: 4096, 64K, 128M, 1G)")
    number, unit, _ = match.groups()
    return int(float(number) * 1024 ** " KMGT".index(unit.upper() or " "))


# -- text corpus ---------------------------------------------------------------------------
@dataclass
class CorpusInfo:
    """What ``make_text_corpus`` wrote."""

    path: str
    bytes: int
    sha256: str
    candidate_files: int
    files_used: int


def source_files() -> list[str]:
    """Candidate files of the pool, in sorted order, each real file once."""
    found: list[str] = []
    for root in DOC_ROOTS:
        found.extend(_walk(root, suffix=None))
    for root in sorted(glob.glob(PYTHON_GLOB)):
        found.extend(_walk(root, suffix=".py"))
    seen: set[str] = set()
    unique = []
    for path in sorted(found):
        real = os.path.realpath(path)
        if real not in seen and os.path.isfile(real):
            seen.add(real)
            unique.append(path)
    return unique


def _walk(root: str, suffix: str | None) -> Iterator[str]:
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            if suffix is None or name.endswith(suffix):
                yield os.path.join(folder, name)


# every code point that ``str.isspace()`` but is not ASCII whitespace
NON_ASCII_SPACE = re.compile("[\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")


def read_text_file(path: str) -> bytes | None:
    """The file as normalised UTF-8 ending in a newline, or None if it is not usable text."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        if path.endswith(".gz"):
            data = gzip.decompress(data)
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error):
        return None
    if not data or b"\0" in data:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    text = NON_ASCII_SPACE.sub(" ", text)
    if not text.endswith("\n"):
        text += "\n"
    return text.encode("utf-8")


class Pool:
    """The pool's usable files, read lazily and kept once read."""

    def __init__(self, paths: list[str]):
        self.paths = paths
        self._cache: dict[int, bytes | None] = {}

    def get(self, index: int) -> bytes | None:
        if index not in self._cache:
            self._cache[index] = read_text_file(self.paths[index])
        return self._cache[index]

    def stream(self, seed: int) -> Iterator[bytes]:
        """Every usable file, pass after pass, each pass in its own seeded order."""
        for n in range(sys.maxsize):
            order = list(range(len(self.paths)))
            random.Random(f"{seed}:{n}").shuffle(order)
            usable = 0
            for i in order:
                data = self.get(i)
                if data:
                    usable += 1
                    yield data
            if not usable:
                return

    @property
    def files_read(self) -> int:
        return sum(1 for data in self._cache.values() if data)


def make_text_corpus(path: str, size: int, seed: int = 0) -> CorpusInfo:
    """Write at most ``size`` bytes of pool text to ``path`` (see the module docstring)."""
    pool = Pool(source_files())
    digest = hashlib.sha256()
    written = 0
    with open(path, "wb") as out:
        for data in pool.stream(seed):
            room = size - written
            if len(data) > room:
                data = data[: data.rfind(b"\n", 0, room) + 1]
            out.write(data)
            digest.update(data)
            written += len(data)
            if written >= size or not data:
                break
    if not written:
        raise RuntimeError("no usable text found under " + ", ".join(DOC_ROOTS + (PYTHON_GLOB,)))
    return CorpusInfo(path, written, digest.hexdigest(), len(pool.paths), pool.files_read)


# -- TeraSort records ----------------------------------------------------------------------
@dataclass
class RecordsInfo:
    """What ``make_sort_records`` wrote; ``checksum`` is order-independent."""

    path: str
    bytes: int
    records: int
    checksum: int


# random byte -> printable ASCII ' '..'~' (95 characters)
_PRINTABLE = bytes(32 + b * 95 // 256 for b in range(256))
_FILLERS = [bytes(65 + (i + j // 4) % 26 for j in range(53)) for i in range(26)]


def record_checksum(records: bytes) -> int:
    """Sum of the CRC-32 of each 100-byte record (like gensort's valsort), mod 2**64."""
    return sum(zlib.crc32(records[i : i + RECORD_SIZE]) for i in range(0, len(records), RECORD_SIZE)) % 2**64


def make_records(first: int, count: int, rng: random.Random) -> bytes:
    """Records ``first .. first+count-1`` as one bytes object."""
    keys = rng.randbytes(KEY_SIZE * count).translate(_PRINTABLE)
    return b"".join(
        b"%s  %032X  %s\n" % (keys[KEY_SIZE * i : KEY_SIZE * i + KEY_SIZE], first + i, _FILLERS[(first + i) % 26])
        for i in range(count)
    )


def make_sort_records(path: str, size: int, seed: int = 0) -> RecordsInfo:
    """Write ``size // 100`` records to ``path``."""
    total = size // RECORD_SIZE
    rng = random.Random(seed)
    checksum = 0
    with open(path, "wb") as out:
        for first in range(0, total, RECORDS_PER_CHUNK):
            chunk = make_records(first, min(RECORDS_PER_CHUNK, total - first), rng)
            out.write(chunk)
            checksum = (checksum + record_checksum(chunk)) % 2**64
    return RecordsInfo(path, total * RECORD_SIZE, total, checksum)


# -- command line --------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=("text", "records"), help="word-count text or TeraSort records")
    parser.add_argument("output", help="file to write")
    parser.add_argument("--size", default="64M", help="bytes to write; suffixes K, M, G (binary) [default: 64M]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shuffles and keys [default: 0]")
    args = parser.parse_args(argv)
    size = parse_size(args.size)
    info = make_text_corpus(args.output, size, args.seed) if args.kind == "text" else \
        make_sort_records(args.output, size, args.seed)
    print(json.dumps(asdict(info), indent=2))


if __name__ == "__main__":
    main()
