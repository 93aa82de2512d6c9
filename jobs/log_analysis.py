"""Web-server log analysis: requests and bytes per status and per hour of day, and the top paths.

Input: access logs in the Combined Log Format of Apache and Nginx, plain or ``.gz``::

    203.0.113.7 - - [10/Oct/2026:13:55:36 +0000] "GET /a?b=1 HTTP/1.1" 200 14302 "https://ref/" "agent"

(a quote inside a quoted field is escaped as ``\\"``, as both servers write it).

Three reports, told apart by the first element of the key:

* ``["status", 404]`` -> ``{"requests": n, "bytes": b}`` for each HTTP status;
* ``["hour", 13]`` -> ``{"requests": n, "bytes": b}`` for each hour of day, 0 to 23, over
  all days, as the timestamp writes it (the server's clock; the ``+0000`` offset is
  not applied);
* ``["top", 1]`` -> ``{"path": "/", "requests": n, "bytes": b}``: the ``--top`` paths
  (default 10) with the most requests, most first, ties by path; a path is the request
  target without its query string (``/search?q=x`` counts as ``/search``).

``bytes`` is the response size; ``-`` (no body) counts as 0. A line the pattern does
not match is skipped and counted in ``logs / malformed lines``: a truncated line, or a
line of another format (the Common Log Format, without referrer and user agent, is
one: a truncated combined line can look like it, with a wrong size). A line that is
not valid UTF-8 is skipped too (the job sets ``skip_bad_records``) and counted in
``pymr / bad records skipped``. A request line that is not ``METHOD TARGET [PROTOCOL]``
(``"-"`` from a client that sent nothing) counts for its status and hour but not for
any path (``logs / requests without a path``).

Two steps. The first parses each line into the three keys, with a combiner adding
``(requests, bytes)`` on the map side, over several reducers. The second passes the
status and hour totals through, keeps each map task's best ``--top`` paths and merges
them in one reducer, so the output is one part file: hours, then statuses, then the
top paths.

    pymr submit jobs/log_analysis.py sample_data/logs/ -o out/logs --top 20

(``python scripts/make_logs.py --sample-data`` rebuilds ``sample_data/logs/``.)
"""

import re

import pymr

LINE = re.compile(
    r'\S+ \S+ \S+ \[\d{2}/[A-Z][a-z]{2}/\d{4}:(?P<hour>[01]\d|2[0-3]):[0-5]\d:[0-6]\d [+-]\d{4}\] '
    r'"(?P<request>(?:[^"\\]|\\.)*)" (?P<status>[1-5]\d\d) (?P<bytes>\d+|-)'
    r' "(?:[^"\\]|\\.)*" "(?:[^"\\]|\\.)*"')
REQUEST = re.compile(r"[A-Z]+ (?P<target>[^ ?#]+)\S*(?: HTTP/\d(?:\.\d)?)?")


class LogAnalysis(pymr.Job):
    reducers = 4
    skip_bad_records = True
    options = [pymr.Option("top", int, default=10, help="How many of the most requested paths to report.")]

    def steps(self):
        if self.options.top < 1:
            raise pymr.PymrError(f"--top must be at least 1, got {self.options.top}")
        return [
            pymr.Step(map=self.parse, combine=self.add, reduce=self.add),
            pymr.Step(map_init=self.start_top, map=self.offer, map_final=self.emit_top,
                      reduce=self.report, reducers=1),
        ]

    # -- step 1: totals per status, hour and path --------------------------------------------
    def parse(self, _, line):
        match = LINE.fullmatch(line)
        if match is None:
            self.increment_counter("logs", "malformed lines")
            return
        size = match["bytes"]
        total = (1, 0 if size == "-" else int(size))
        yield ("status", int(match["status"])), total
        yield ("hour", int(match["hour"])), total
        request = REQUEST.fullmatch(match["request"])
        if request is None:
            self.increment_counter("logs", "requests without a path")
        else:
            yield ("path", request["target"]), total

    def add(self, key, totals):
        requests = size = 0
        for n, b in totals:
            requests += n
            size += b
        yield key, (requests, size)

    # -- step 2: the top paths, and the other totals passed through ---------------------------
    def start_top(self):
        self.best = []

    def offer(self, key, total):
        if key[0] != "path":
            yield key, total
            return
        requests, size = total
        self.best.append((-requests, key[1], size))
        if len(self.best) >= 4 * self.options.top + 1000:
            self.best = sorted(self.best)[: self.options.top]

    def emit_top(self):
        for entry in sorted(self.best)[: self.options.top]:
            yield ("top",), entry

    def report(self, key, values):
        if key == ("top",):
            for rank, (minus_requests, path, size) in enumerate(sorted(values)[: self.options.top], 1):
                yield ("top", rank), {"path": path, "requests": -minus_requests, "bytes": size}
            return
        for requests, size in values:
            yield key, {"requests": requests, "bytes": size}


if __name__ == "__main__":
    LogAnalysis.main()
