"""Prints and logs as it maps (--noise more lines of 100 bytes); sleeps --delay seconds per
map task; a line containing FAIL raises (after printing it), so its attempts' logs are
worth reading."""
import logging
import sys
import time

import pymr


class Chatty(pymr.Job):
    options = [pymr.Option("delay", float, default=0.0), pymr.Option("noise", int, default=0)]

    def map_init(self):
        print("map task starting", flush=True)
        for i in range(self.options.noise):
            print(f"noise {i:06d} " + "x" * 88)
        logging.getLogger("chatty").warning("a warning from logging")
        time.sleep(self.options.delay)

    def map(self, key, line):
        if "FAIL" in line:
            print(f"about to fail on {line!r}", file=sys.stderr)
            raise ValueError(f"cannot handle line {line!r}")
        for word in line.split():
            yield word, 1

    def reduce(self, word, counts):
        yield word, sum(counts)
