"""Raises in map on any line containing FAIL (a user's bug)."""
import pymr


class Failing(pymr.Job):
    def map(self, key, line):
        if "FAIL" in line:
            raise ValueError(f"cannot handle line {line!r}")
        yield line, 1

    def reduce(self, key, values):
        yield key, sum(values)
