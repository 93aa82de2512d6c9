"""jobs/log_analysis.py on logs from scripts/make_logs.py, against totals computed from the
generator's own records (not by parsing the lines again)."""

from __future__ import annotations

import datetime as dt
import gzip
import importlib.util
import itertools
import json
import sys
from collections import Counter

from conftest import JOBS, ROOT, read_parts

LOGS = ROOT / "sample_data" / "logs"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


make_logs = load_script("make_logs")


def expected_reports(entries, top: int) -> list:
    """The job's output, computed in plain Python from the generator's records (None: malformed)."""
    totals: dict[tuple, list[int]] = {}

    def add(key, size):
        total = totals.setdefault(key, [0, 0])
        total[0] += 1
        total[1] += size or 0

    for entry in entries:
        if entry is None:
            continue
        add(("status", entry.status), entry.size)
        add(("hour", entry.time.hour), entry.size)
        if entry.request is not None:
            add(("path", entry.request[1].split("?")[0]), entry.size)
    paths = sorted(((-n, key[1], b) for key, (n, b) in totals.items() if key[0] == "path"))[:top]
    report = [[list(key), {"requests": n, "bytes": b}] for key, (n, b) in sorted(totals.items()) if key[0] != "path"]
    report += [[["top", rank], {"path": path, "requests": -n, "bytes": b}] for rank, (n, path, b) in enumerate(paths, 1)]
    return report


def run_job(pymr, out, *inputs, top=10, extra=()):
    pymr.run("submit", JOBS / "log_analysis.py", *inputs, "-o", out, "--top", top, "-w", "2", "--output-format",
             "jsonl", *extra, check=True)
    parts = read_parts(out)
    assert len(parts) == 1, "the reports end in one part file"
    return [json.loads(line) for line in parts[0]], json.loads((out / "_REPORT.json").read_text())["counters"]


def test_reports_match_the_generated_requests(pymr, tmp_path):
    plain, packed = tmp_path / "access.log", tmp_path / "access.log.1.gz"
    start = dt.datetime(2026, 3, 28)
    make_logs.write_log(plain, lines=6000, seed=7, start=start, days=3, malformed=0.005)
    make_logs.write_log(packed, lines=2000, seed=8, start=start, days=1, malformed=0.005)
    entries = [e for e, _ in itertools.islice(make_logs.log_entries(6000, 7, start, 3, 0.005), 6000)]
    entries += [e for e, _ in itertools.islice(make_logs.log_entries(2000, 8, start, 1, 0.005), 2000)]
    with open(plain, "ab") as f:  # a line that is not UTF-8: skipped, not fatal
        f.write(b'10.0.0.1 - - [28/Mar/2026:10:00:00 +0000] "GET /caf\xe9 HTTP/1.1" 200 5 "-" "-"\n')
    assert entries.count(None) > 10 and sum(e is not None and e.size is None for e in entries) > 100

    got, counters = run_job(pymr, tmp_path / "out", plain, packed, top=15, extra=("-r", "3", "--split-size", "128K"))
    assert got == expected_reports(entries, 15)
    assert counters["logs"]["malformed lines"] == entries.count(None)
    assert counters["logs"]["requests without a path"] == sum(e is not None and e.request is None for e in entries) > 0
    assert counters["pymr"]["bad records skipped"] == 1


def test_reports_of_the_sample_logs(pymr, tmp_path):
    entries = []
    for name, settings in make_logs.SAMPLE_LOGS.items():
        generated = list(itertools.islice(make_logs.log_entries(
            settings["lines"], settings["seed"], settings["start"], settings["days"]), settings["lines"]))
        data = gzip.decompress((LOGS / name).read_bytes()) if name.endswith(".gz") else (LOGS / name).read_bytes()
        assert data.decode().splitlines() == [line for _, line in generated], f"{name} is what make_logs.py writes"
        entries += [entry for entry, _ in generated]
    assert 2_000_000 < (LOGS / "access.log").stat().st_size < 3_000_000

    got, counters = run_job(pymr, tmp_path / "out", LOGS)
    assert got == expected_reports(entries, 10)
    statuses = Counter({key[1]: value["requests"] for key, value in got if key[0] == "status"})
    assert statuses[200] > 0.8 * len(entries) and {301, 304, 404, 500} <= set(statuses)
    hours = [value["requests"] for key, value in got if key[0] == "hour"]
    assert len(hours) == 24 and min(hours[:6]) * 3 < max(hours[12:22]), "a daily rhythm"
    assert "malformed lines" not in counters.get("logs", {})


def test_malformed_lines_do_not_stop_the_job(pymr, tmp_path):
    log = tmp_path / "mixed.log"
    log.write_text("\n".join([
        '1.2.3.4 - - [10/Oct/2026:13:55:36 +0000] "GET /a?x=1 HTTP/1.1" 200 100 "-" "curl/8.5.0"',
        '1.2.3.4 - - [10/Oct/2026:13:56:36 +0000] "HEAD /a HTTP/1.1" 200 - "-" "curl/8.5.0"',
        '1.2.3.4 - - [10/Oct/2026:23:56:36 -0700] "GET /b HTTP/1.0" 404 7 "http://x/?q=\\"a\\"" "ab \\" c"',
        '1.2.3.4 - - [10/Oct/2026:23:56:36 -0700] "GET /b HTTP/1.0" 404 7',  # Common Log Format, or cut short
        '1.2.3.4 - - [10/Oct/2026:13:57:36 +0000] "-" 400 0 "-" "-"',
        '', 'garbage', '1.2.3.4 - - [10/Oct/2026:25:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "-"',
        '1.2.3.4 - - [10/Oct/2026:13:55:36 +0000] "GET /a HTTP/1.1" 2OO 100 "-" "curl/8.5.0"',
    ]) + "\n")
    got, counters = run_job(pymr, tmp_path / "out", log, top=1)
    assert got == [[["hour", 13], {"requests": 3, "bytes": 100}], [["hour", 23], {"requests": 1, "bytes": 7}],
                   [["status", 200], {"requests": 2, "bytes": 100}], [["status", 400], {"requests": 1, "bytes": 0}],
                   [["status", 404], {"requests": 1, "bytes": 7}],
                   [["top", 1], {"path": "/a", "requests": 2, "bytes": 100}]]
    assert counters["logs"] == {"malformed lines": 5, "requests without a path": 1}
