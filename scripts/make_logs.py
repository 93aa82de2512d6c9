"""Deterministic web-server access logs in the Combined Log Format, for ``jobs/log_analysis.py``.

Each line is what Apache (``LogFormat combined``) or Nginx (``log_format combined``)
writes for one request::

    203.0.113.7 - - [10/Oct/2026:13:55:36 +0000] "GET /blog/2026/arrow-ipc HTTP/1.1" 200 14302 "https://www.google.com/" "Mozilla/5.0 ..."

The traffic is made up but shaped like a real site's: requests arrive at a rate that
follows a daily rhythm (quiet at night, busiest in the afternoon and evening, a bit
quieter at weekends) over ``--days`` days, so timestamps only go forward; a few
thousand clients (some of them crawlers) with Zipf-like activity, each keeping its
user agent; paths with Zipf-like popularity over pages, static assets (often answered
``304`` with no body), API calls with query strings, redirects and vulnerability
probes (``404``); statuses mostly ``200``, with ``301``/``302``/``304``/``400``/``401``/
``403``/``404``/``500``/``503`` where a site gives them; ``-`` for the size of a response
without a body (``304``, ``204``, ``HEAD``), as Apache's ``%b`` writes it; referrers from
search engines, social sites and the site's own pages; a few ``"-" 400`` lines (a
client that sent no request line). ``--malformed FRACTION`` mixes in lines that are not
log lines at all (truncated lines, error-log lines, a status that is not a number).

The same arguments give the same bytes. A ``.gz`` output is gzip-compressed (with no
timestamp in its header). ``--sample-data`` writes ``sample_data/logs/``: a plain
``access.log`` of about 2.5 MB and an older, rotated ``access.log.1.gz``.

    python scripts/make_logs.py /tmp/access.log --size 64M --seed 1
    python scripts/make_logs.py /tmp/access.log.gz --lines 100000 --days 3 --malformed 0.001
    python scripts/make_logs.py --sample-data
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import itertools
import json
import os
import random
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pymr.inputs import parse_size  # one parser of sizes: 4096, 64K, 128M, 1G

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample_data" / "logs"
SITE = "https://www.example.com"
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# relative request rate by hour of day, and on Saturday and Sunday
HOURLY_RATE = (0.35, 0.25, 0.2, 0.17, 0.18, 0.28, 0.5, 0.8, 1.1, 1.3, 1.4, 1.45,
               1.5, 1.45, 1.4, 1.4, 1.35, 1.3, 1.35, 1.5, 1.55, 1.35, 0.95, 0.6)
WEEKEND_RATE = 0.75
AVERAGE_LINE_BYTES = 240  # to turn --size into a request rate; the size itself is exact

BROWSERS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/128.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:130.0) Gecko/20100101 Firefox/130.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 "
    "Safari/605.1.15",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/128.0.0.0 "
    "Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/127.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:129.0) Gecko/20100101 Firefox/129.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 "
    "Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/128.0.0.0 Mobile "
    "Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/25.0 "
    "Chrome/121.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/128.0.0.0 "
    "Safari/537.36 Edg/128.0.0.0",
)
CRAWLERS = (
    ("66.249.66.", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"),
    ("40.77.167.", "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"),
    ("5.255.231.", "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)"),
    ("17.241.219.", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                    "Version/13.1.1 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)"),
)
TOOLS = ("curl/8.5.0", "python-requests/2.32.3", "Go-http-client/1.1", "Wget/1.21.4", "-")
EXTERNAL_REFERRERS = ("https://www.google.com/", "https://www.bing.com/", "https://duckduckgo.com/",
                      "https://news.ycombinator.com/", "https://t.co/x7Qd2bLk", "https://www.reddit.com/",
                      "https://github.com/", "android-app://com.google.android.gm/")
WORDS = ("arrow", "parquet", "shuffle", "spill", "merge", "sort", "join", "window", "kafka", "hadoop", "python",
         "partition", "reducer", "combiner", "zeromq", "cluster", "latency", "cache", "index", "schema")
PROBES = ("/wp-login.php", "/.env", "/xmlrpc.php", "/phpmyadmin/index.php", "/admin/config.php", "/.git/config",
          "/wp-content/plugins/revslider/temp/update_extract/revslider/info.php", "/cgi-bin/luci/;stok=/locale",
          "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php", "/server-status", "/backup.zip", "/HNAP1/")


@dataclass(frozen=True)
class Resource:
    """Something a client can ask for: a kind (page, static, api, redirect, probe), a path, a body size."""

    kind: str
    path: str
    size: int


@dataclass(frozen=True)
class Client:
    ip: str
    agent: str
    crawler: bool


@dataclass(frozen=True)
class LogEntry:
    """One request, as the server logs it; ``request`` None is a client that sent none (``"-"``)."""

    ip: str
    user: str
    time: dt.datetime
    request: tuple[str, str, str] | None  # method, target (path and query), protocol
    status: int
    size: int | None  # None: no body, written as "-"
    referrer: str
    agent: str

    def line(self) -> str:
        t = self.time
        stamp = f"{t.day:02d}/{MONTHS[t.month - 1]}/{t.year}:{t.hour:02d}:{t.minute:02d}:{t.second:02d} +0000"
        request = " ".join(self.request) if self.request else "-"
        size = "-" if self.size is None else str(self.size)
        return f'{self.ip} - {self.user} [{stamp}] "{request}" {self.status} {size} "{self.referrer}" "{self.agent}"'


# -- the site and its clients --------------------------------------------------------------
def make_site(rng: random.Random) -> list[Resource]:
    """Every resource of the site, most popular first."""
    pages = [Resource("page", p, rng.randint(6000, 40000)) for p in
             ["/", "/about", "/pricing", "/contact", "/blog", "/docs", "/careers", "/login"]]
    slugs = sorted({"-".join(rng.sample(WORDS, rng.randint(2, 3))) for _ in range(80)})
    pages += [Resource("page", f"/blog/{rng.choice((2024, 2025, 2026))}/{s}", rng.randint(9000, 60000)) for s in slugs]
    pages += [Resource("page", f"/products/{n}", rng.randint(12000, 45000)) for n in rng.sample(range(100, 999), 150)]
    pages += [Resource("page", f"/docs/{a}/{b}", rng.randint(8000, 30000))
              for a, b in itertools.product(("guide", "reference", "howto"), WORDS[:12])]
    static = [Resource("static", p, rng.randint(20000, 400000)) for p in
              ["/static/css/main.3f9a1c.css", "/static/js/app.8d2e4b.js", "/static/js/vendor.a71c09.js",
               "/static/fonts/inter-var.woff2", "/static/img/hero.webp"]]
    static += [Resource("static", "/favicon.ico", 15086), Resource("static", "/robots.txt", 68),
               Resource("static", "/sitemap.xml", 24411), Resource("static", "/static/img/logo.svg", 3302)]
    static += [Resource("static", f"/images/products/{n}.jpg", rng.randint(30000, 250000))
               for n in rng.sample(range(100, 999), 120)]
    api = [Resource("api", p, rng.randint(300, 6000)) for p in
           ["/api/v1/products", "/api/v1/search", "/api/v1/cart", "/api/v1/login", "/api/v1/recommendations",
            "/api/v1/events"]] + [Resource("api", f"/api/v1/products/{n}", rng.randint(400, 3000))
                                  for n in rng.sample(range(100, 999), 60)]
    redirects = [Resource("redirect", p, 0) for p in ["/home", "/index.html", "/blog/feed", "/docs/latest"]]
    redirects += [Resource("redirect", f"/blog/{s}", 0) for s in slugs[:20]]
    probes = [Resource("probe", p, 0) for p in PROBES]
    resources = pages + static + api + redirects + probes
    rng.shuffle(resources)
    # the home page and its assets are asked for most
    leads = ["/", "/static/css/main.3f9a1c.css", "/static/js/app.8d2e4b.js", "/favicon.ico"]
    return sorted(resources, key=lambda r: leads.index(r.path) if r.path in leads else len(leads))


def make_clients(rng: random.Random, count: int = 3000) -> list[Client]:
    """Clients, most active first: crawlers and scripts among browsers."""
    clients = []
    for n in range(count):
        roll = rng.random()
        if roll < 0.03:
            prefix, agent = rng.choice(CRAWLERS)
            clients.append(Client(prefix + str(rng.randint(1, 254)), agent, True))
            continue
        if roll < 0.06:
            agent = rng.choice(TOOLS)
        else:
            agent = rng.choice(BROWSERS)
        if rng.random() < 0.07:
            ip = "2001:db8:%x:%x::%x" % (rng.randint(0, 0xffff), rng.randint(0, 0xffff), rng.randint(1, 0xffff))
        else:
            ip = f"{rng.choice((24, 31, 46, 62, 73, 81, 88, 92, 98, 103, 109, 151, 176, 185, 203))}." \
                 f"{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        clients.append(Client(ip, agent, False))
    rng.shuffle(clients)
    return clients


def zipf_weights(count: int, exponent: float) -> list[float]:
    """Cumulative weights of ranks ``1..count`` under Zipf's law, for ``random.choices``."""
    return list(itertools.accumulate(1 / (rank ** exponent) for rank in range(1, count + 1)))


# -- requests --------------------------------------------------------------------------------
class Traffic:
    """Draws requests: who asks, for what, and how the server answers."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.site = make_site(rng)
        self.clients = make_clients(rng)
        self.site_weights = zipf_weights(len(self.site), 1.05)
        self.client_weights = zipf_weights(len(self.clients), 0.9)
        self.pages = [r for r in self.site if r.kind == "page"]

    def entry(self, when: dt.datetime) -> LogEntry:
        rng = self.rng
        client = rng.choices(self.clients, cum_weights=self.client_weights)[0]
        if rng.random() < 0.002:
            return LogEntry(client.ip, "-", when, None, 400, rng.choice((None, 0, 226)), "-", "-")
        resource = rng.choices(self.site, cum_weights=self.site_weights)[0]
        method, target = self.method_and_target(resource)
        status, size = self.answer(resource, method)
        protocol = rng.choices(("HTTP/1.1", "HTTP/2.0", "HTTP/1.0"), (70, 27, 3))[0]
        user = rng.choice(("alice", "bob", "ops")) if target.startswith("/api/v1/cart") and rng.random() < 0.3 else "-"
        return LogEntry(client.ip, user, when, (method, target, protocol), status, size,
                        self.referrer(resource, client), client.agent)

    def method_and_target(self, resource: Resource) -> tuple[str, str]:
        rng = self.rng
        path = resource.path
        if resource.kind == "api":
            if path in ("/api/v1/cart", "/api/v1/login", "/api/v1/events"):
                return rng.choices(("POST", "GET", "PUT", "DELETE", "OPTIONS"), (60, 25, 7, 5, 3))[0], path
            if path == "/api/v1/search":
                return "GET", f"{path}?q={'+'.join(rng.sample(WORDS, rng.randint(1, 3)))}&page={rng.randint(1, 5)}"
            if path == "/api/v1/products":
                return "GET", f"{path}?page={rng.randint(1, 40)}&sort={rng.choice(('price', 'name', '-rating'))}"
            return "GET", path
        if resource.kind == "page" and path == "/blog" and rng.random() < 0.3:
            return "GET", f"/blog?page={rng.randint(2, 9)}"
        if resource.kind == "page" and rng.random() < 0.04:
            return "GET", f"{path}?utm_source={rng.choice(('newsletter', 'twitter', 'hn'))}&utm_medium=social"
        return rng.choices(("GET", "HEAD", "POST"), (97, 2, 1))[0], path

    def answer(self, resource: Resource, method: str) -> tuple[int, int | None]:
        rng = self.rng
        roll = rng.random()
        kind = resource.kind
        if kind == "probe":
            status, size = (403, 199) if roll < 0.1 else (404, rng.choice((153, 196, 1564)))
        elif kind == "redirect":
            status, size = (301 if roll < 0.9 else 302), rng.choice((162, 169, 230))
        elif kind == "static":
            status, size = (304, None) if roll < 0.25 else (404, 1564) if roll < 0.26 else (200, resource.size)
        elif kind == "api":
            if roll < 0.015:
                status, size = 500, rng.randint(80, 400)
            elif roll < 0.02:
                status, size = 503, 299
            elif roll < 0.04:
                status, size = 401, 61
            elif roll < 0.06:
                status, size = 400, rng.randint(60, 200)
            elif method in ("POST", "PUT"):
                status, size = (201, rng.randint(100, 900)) if roll < 0.5 else (200, rng.randint(100, 900))
            elif method in ("DELETE", "OPTIONS"):
                status, size = 204, None
            else:
                status, size = 200, max(2, int(resource.size * rng.uniform(0.5, 1.5)))
        else:
            if roll < 0.03:
                status, size = 304, None
            elif roll < 0.045:
                status, size = 404, 1564
            elif roll < 0.048:
                status, size = 500, rng.randint(300, 600)
            elif resource.path == "/login" and roll < 0.1:
                status, size = 302, 0
            else:
                status, size = 200, int(resource.size * rng.uniform(0.97, 1.03))
        if method == "HEAD":
            size = None
        return status, size

    def referrer(self, resource: Resource, client: Client) -> str:
        rng = self.rng
        if client.crawler or client.agent in TOOLS or resource.kind == "probe":
            return "-"
        if resource.kind in ("static", "api"):
            return SITE + rng.choice(self.pages[:30]).path
        roll = rng.random()
        if roll < 0.4:
            return "-"
        if roll < 0.75:
            return SITE + rng.choice(self.pages[:50]).path
        return rng.choice(EXTERNAL_REFERRERS)


def malformed_line(rng: random.Random, good: str, when: dt.datetime) -> str:
    """A line that is not a combined log line: cut short, from an error log, or with a bad status."""
    kind = rng.randrange(3)
    if kind == 0:
        return good[: rng.randint(8, len(good) // 2)]
    if kind == 1:
        stamp = f"{WEEKDAYS[when.weekday()]} {MONTHS[when.month - 1]} {when.day:02d} {when:%H:%M:%S}.000000 {when.year}"
        return f"[{stamp}] [core:error] [pid {rng.randint(1000, 9999)}] AH00126: Invalid URI in request"
    return re.sub(r'" (\d)\d\d ', r'" \1OO ', good, count=1)


def log_entries(expected_lines: int, seed: int = 0, start: dt.datetime = dt.datetime(2026, 10, 4),
                days: float = 7, malformed: float = 0.0) -> Iterator[tuple[LogEntry | None, str]]:
    """``(entry, line)`` for each line, in time order, without end; ``entry`` is None for a
    malformed line. Requests arrive at a rate that gives about ``expected_lines`` lines
    in ``days`` days from ``start``."""
    rng = random.Random(seed)
    traffic = Traffic(rng)
    per_day = sum(HOURLY_RATE) * 3600
    base_rate = expected_lines / (per_day * (days * (5 + 2 * WEEKEND_RATE) / 7))  # requests per second at rate 1.0
    when = start
    seconds = 0.0
    while True:
        rate = base_rate * HOURLY_RATE[when.hour] * (WEEKEND_RATE if when.weekday() >= 5 else 1.0)
        seconds += rng.expovariate(rate)
        when = start + dt.timedelta(seconds=int(seconds))
        entry = traffic.entry(when)
        line = entry.line()
        if malformed and rng.random() < malformed:
            yield None, malformed_line(rng, line, when)
        else:
            yield entry, line


# -- writing ---------------------------------------------------------------------------------
def write_log(path: str | Path, *, lines: int | None = None, size: int | None = None, seed: int = 0,
              start: dt.datetime = dt.datetime(2026, 10, 4), days: float = 7, malformed: float = 0.0) -> dict:
    """Write ``lines`` lines, or as many whole lines as fit in ``size`` bytes; returns a summary."""
    if (lines is None) == (size is None):
        raise ValueError("give either lines or size")
    path = str(path)
    expected = lines if lines is not None else max(1, size // AVERAGE_LINE_BYTES)
    entries = log_entries(expected, seed, start, days, malformed)
    written = count = bad = 0
    with _open_output(path) as out:
        for entry, line in itertools.islice(entries, lines):
            data = (line + "\n").encode("utf-8")
            if size is not None and written + len(data) > size:
                break
            out.write(data)
            written += len(data)
            count += 1
            bad += entry is None
    return {"path": path, "lines": count, "malformed_lines": bad, "bytes": written}


def _open_output(path: str):
    if path.endswith(".gz"):
        name = os.path.basename(path[:-3])
        return gzip.GzipFile(name, mode="wb", fileobj=open(path, "wb"), mtime=0)
    return open(path, "wb")


# sample_data/logs/: this week's log and last week's, rotated and compressed
SAMPLE_LOGS = {
    "access.log.1.gz": {"lines": 4000, "seed": 101, "start": dt.datetime(2026, 9, 27), "days": 7},
    "access.log": {"lines": 10700, "seed": 102, "start": dt.datetime(2026, 10, 4), "days": 7},
}


def write_sample_data() -> list[dict]:
    """Write every file of ``SAMPLE_LOGS`` into ``sample_data/logs/``."""
    SAMPLE_DIR.mkdir(parents=True, exist_ok=True)
    return [write_log(SAMPLE_DIR / name, **settings) for name, settings in SAMPLE_LOGS.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", nargs="?", help="log file to write (.gz: compressed)")
    parser.add_argument("--lines", type=int, help="how many lines to write")
    parser.add_argument("--size", help="bytes to write, whole lines only; suffixes K, M, G")
    parser.add_argument("--seed", type=int, default=0, help="seed of everything random [default: 0]")
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2026, 10, 4),
                        help="first day, YYYY-MM-DD [default: 2026-10-04]")
    parser.add_argument("--days", type=float, default=7, help="days the requests spread over [default: 7]")
    parser.add_argument("--malformed", type=float, default=0.0, help="fraction of malformed lines [default: 0]")
    parser.add_argument("--sample-data", action="store_true", help=f"write {SAMPLE_DIR} instead")
    args = parser.parse_args(argv)
    if args.sample_data:
        print(json.dumps(write_sample_data(), indent=2))
        return 0
    if not args.output or (args.lines is None) == (args.size is None):
        parser.error("give OUTPUT and one of --lines or --size (or --sample-data)")
    if args.days <= 0 or not 0 <= args.malformed <= 1:
        parser.error("--days must be positive and --malformed between 0 and 1")
    try:
        size = parse_size(args.size) if args.size is not None else None
    except ValueError as exc:
        parser.error(str(exc))
    start = dt.datetime.combine(args.start, dt.time())
    print(json.dumps(write_log(args.output, lines=args.lines, size=size, seed=args.seed, start=start,
                               days=args.days, malformed=args.malformed), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
