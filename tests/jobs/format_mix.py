"""Records of every input counted by the input's extension and the type of value its format reads,
with the sum of each record's ``qty`` field (a str in CSV, a number in JSON lines)."""
import os

import pymr


class FormatMix(pymr.Job):
    output_format = "jsonl"

    def map(self, key, value):
        path, _offset = key
        kind = (os.path.splitext(path)[1], type(value).__name__)
        yield kind, [1, int(value["qty"])]

    def reduce(self, kind, pairs):
        records = total = 0
        for count, qty in pairs:
            records += count
            total += qty
        yield kind, [records, total]
