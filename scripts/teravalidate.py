"""TeraValidate: check that a TeraSort output is one sorted copy of its input.

Reads the output's part files (``part-*``, in name order) as one stream of records
and checks, like Hadoop's TeraValidate:

* **order**: every record's key (its first 10 bytes) is at least the previous one's,
  within a part and across parts, so the parts read in order are globally sorted;
* **count and checksum**: the records are as many as the input's, and the sum of
  their CRC-32s (``record_checksum``) is the input's, so no record was lost,
  duplicated or changed. The input is given as files (``--input``, read the same way)
  or as the ``records`` and ``checksum`` that ``scripts/teragen.py`` printed.

A record is a line without its ending (``\\n`` or ``\\r\\n``). A line holding a tab is
the ``key<TAB>rest`` text form a sort job writes when its reduce yields ``(key, rest)``;
the tab is dropped to get the record back (records never hold tabs).

Exit status: 0 valid (a JSON summary is printed), 1 invalid (the first problem is
printed, naming the file and line of an out-of-order record), 2 usage error.

    python scripts/teravalidate.py out/sorted --input /tmp/records.txt
    python scripts/teravalidate.py out/sorted --records 1000000 --checksum 7a3c...
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

KEY_BYTES = 10


class Invalid(Exception):
    """The output is not a sorted copy of the input; the message says where and why."""


def record_checksum(records: Iterable[bytes]) -> int:
    """Sum of the CRC-32 of each record (without its line ending), mod 2**64, as valsort."""
    return sum(zlib.crc32(record) for record in records) % 2**64


def read_records(path: str) -> Iterator[bytes]:
    """The records of one file, in order; ``key<TAB>rest`` lines are joined back."""
    with open(path, "rb") as f:
        for line in f:
            record = line.rstrip(b"\n")
            if record.endswith(b"\r"):
                record = record[:-1]
            yield record.replace(b"\t", b"", 1) if b"\t" in record else record


def part_files(output_dir: str) -> list[str]:
    """The part files of a job output, in part order."""
    if not os.path.isdir(output_dir):
        raise FileNotFoundError(f"output folder not found: {output_dir}")
    parts = sorted(name for name in os.listdir(output_dir) if name.startswith("part-"))
    if not parts:
        raise FileNotFoundError(f"no part files in {output_dir}")
    return [os.path.join(output_dir, name) for name in parts]


@dataclass
class Summary:
    """What was read: records, their checksum, and the part files."""

    records: int
    checksum: int
    parts: int

    def to_dict(self) -> dict:
        return {"records": self.records, "checksum": f"{self.checksum:016x}", "parts": self.parts}


def check_order(parts: list[str]) -> Summary:
    """Count and checksum the records of ``parts``; raise ``Invalid`` at the first key out of order."""
    count = checksum = 0
    previous_key, previous_at = b"", ""
    for path in parts:
        for line, record in enumerate(read_records(path), 1):
            key = record[:KEY_BYTES]
            if key < previous_key:
                raise Invalid(f"out of order: {path} line {line}: key {key.decode('latin-1')!r} sorts before "
                              f"the key {previous_key.decode('latin-1')!r} of {previous_at}")
            previous_key, previous_at = key, f"{path} line {line}"
            count += 1
            checksum += zlib.crc32(record)
    return Summary(count, checksum % 2**64, len(parts))


def input_summary(paths: list[str]) -> Summary:
    """Count and checksum of the input files, in the order the records are read."""
    count = checksum = 0
    for path in paths:
        for record in read_records(path):
            count += 1
            checksum += zlib.crc32(record)
    return Summary(count, checksum % 2**64, len(paths))


def check_same_records(output: Summary, expected: Summary) -> None:
    """Raise ``Invalid`` unless the output holds as many records as expected, with the same checksum."""
    if output.records != expected.records:
        change = "missing" if output.records < expected.records else "extra"
        raise Invalid(f"record count: the output holds {output.records} records, the input "
                      f"{expected.records} ({abs(output.records - expected.records)} {change})")
    if output.checksum != expected.checksum:
        raise Invalid(f"checksum: the output's records sum to {output.checksum:016x}, the input's to "
                      f"{expected.checksum:016x} (records were changed, or duplicated and lost)")


def validate(output_dir: str, expected: Summary | None) -> Summary:
    """Check the output in ``output_dir`` (and against ``expected`` if given); returns its summary."""
    summary = check_order(part_files(output_dir))
    if expected is not None:
        check_same_records(summary, expected)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", help="the TeraSort output folder")
    parser.add_argument("--input", nargs="+", metavar="FILE", help="the input files the output must hold")
    parser.add_argument("--records", type=int, help="the input's record count (as teragen.py printed)")
    parser.add_argument("--checksum", help="the input's checksum in hex (as teragen.py printed)")
    args = parser.parse_args(argv)
    if args.input and (args.records is not None or args.checksum):
        parser.error("give either --input or --records with --checksum, not both")
    if (args.records is None) != (args.checksum is None):
        parser.error("--records and --checksum go together")
    try:
        expected = None
        if args.input:
            expected = input_summary(args.input)
        elif args.records is not None:
            expected = Summary(args.records, int(args.checksum, 16), 0)
        summary = validate(args.output, expected)
    except (OSError, ValueError) as exc:
        print(f"teravalidate: error: {exc}", file=sys.stderr)
        return 2
    except Invalid as exc:
        print(f"teravalidate: INVALID: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(dict(summary.to_dict(), valid=True, checked_against_input=expected is not None), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
