"""Word count whose map, at offset 0 of a file, changes that file: an input that changes while the job runs.

--change truncate cuts the file to half its size; --change rewrite writes it again with
the same size (only its mtime tells).
"""
import os

import pymr


class ChangesItsInput(pymr.Job):
    options = [pymr.Option("change", str, default="truncate")]

    def map(self, key, line):
        path, offset = key
        if offset == 0:
            size = os.path.getsize(path)
            if self.options.change == "truncate":
                os.truncate(path, size // 2)
            else:
                with open(path, "r+b") as f:
                    data = f.read()
                    f.seek(0)
                    f.write(data.upper())
                os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 1_000_000))
        for word in line.split():
            yield word, 1

    def reduce(self, word, counts):
        yield word, sum(counts)
