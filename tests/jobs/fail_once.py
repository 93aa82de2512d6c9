"""Each map task fails on its first attempt (marked by a file) and succeeds on the second."""
import os

import pymr


class FailOnce(pymr.Job):
    options = [pymr.Option("marker-dir", str, required=True), pymr.Option("crash", bool, default=False)]

    def map(self, key, line):
        path, offset = key
        marker = os.path.join(self.options.marker_dir, f"{os.path.basename(path)}-{offset}")
        if offset == 0 and not os.path.exists(marker):
            open(marker, "w").close()
            if self.options.crash:
                os._exit(7)  # the whole worker process dies
            raise RuntimeError("first attempt fails")
        for word in line.split():
            yield word, 1

    def reduce(self, key, values):
        yield key, sum(values)
