"""Secondary sort: each key's values reach reduce sorted, by the value or by a key function."""

from __future__ import annotations

import json
from collections import defaultdict

import pymr.tasks as tasks
from conftest import ROOT, SAMPLE, TEST_JOBS, read_parts

EVENTS = ROOT / "sample_data" / "events" / "events.jsonl"


def test_values_sorted_by_a_key_function(pymr, tmp_path):
    out = tmp_path / "out"
    pymr.run("submit", TEST_JOBS / "sessions.py", EVENTS, "-o", out, "--job", "Sessions", "-w", "2",
             "--output-format", "jsonl", "--split-size", "32K", check=True)
    by_user = defaultdict(list)
    for line in EVENTS.read_text().splitlines():
        event = json.loads(line)
        by_user[event["user"]].append(event)
    expected = {user: [e["id"] for e in sorted(events, key=lambda e: (e["ms"], e["id"]))]
                for user, events in by_user.items()}
    got = {user: ids for lines in read_parts(out) for user, ids in map(json.loads, lines)}
    assert got == expected


def test_values_sorted_naturally_inline(pymr, tmp_path):
    out = tmp_path / "out"
    book = SAMPLE / "us-declaration-and-constitution.txt"
    pymr.run("submit", TEST_JOBS / "sessions.py", book, "-o", out, "--job", "Natural", "--inline",
             "--output-format", "jsonl", check=True)
    by_length = defaultdict(list)
    for word in book.read_text().split():
        by_length[len(word)].append(word)
    got = {length: value for lines in read_parts(out) for length, value in map(json.loads, lines)}
    assert got == {n: [min(ws), max(ws), len(ws)] for n, ws in by_length.items()}


def test_large_groups_are_sorted_through_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(tasks, "SORT_CHUNK_VALUES", 7)
    values = [(i * 7919) % 101 for i in range(100)]
    got = list(tasks.sorted_values(iter(values), lambda v: -v, str(tmp_path / "scratch")))
    assert got == sorted(values, reverse=True)
    assert list((tmp_path / "scratch").iterdir()) == [], "spilled chunks are removed"
