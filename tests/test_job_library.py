"""The example jobs of jobs/ against plain-Python references, run as real local-mode jobs."""

from __future__ import annotations

import csv
import json
from collections import Counter

from conftest import JOBS, ROOT, SAMPLE, read_parts

SHOP = ROOT / "sample_data" / "shop"
EVENTS = ROOT / "sample_data" / "events" / "events.jsonl"


def jsonl(folder):
    return [json.loads(line) for lines in read_parts(folder) for line in lines]


def test_distinct_values_of_a_json_field(pymr, tmp_path):
    out = tmp_path / "out"
    pymr.run("submit", JOBS / "distinct_values.py", EVENTS, "-o", out, "--field", "kind", "-w", "2", "-r", "2",
             "--output-format", "jsonl", "--split-size", "32K", check=True)
    records = [json.loads(line) for line in EVENTS.read_text().splitlines()]
    expected = Counter(r.get("kind") for r in records)
    assert {k: v for k, v in jsonl(out)} == dict(expected)
    report = json.loads((out / "_REPORT.json").read_text())
    assert report["counters"]["distinct"]["missing field"] == expected[None] > 0


def test_top_k_words(pymr, tmp_path):
    out = tmp_path / "out"
    books = [SAMPLE / "kjv-pentateuch.txt", SAMPLE / "python-tutorial.txt"]
    pymr.run("submit", JOBS / "top_k.py", *books, "-o", out, "--k", "15", "-w", "2", "--output-format", "jsonl",
             "--split-size", "256K", check=True)
    counts = Counter(w for b in books for w in b.read_text(encoding="utf-8").split())
    expected = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:15]
    assert jsonl(out) == [[rank, [word, count]] for rank, (word, count) in enumerate(expected, 1)]


def test_reduce_side_join_of_two_csv_datasets(pymr, tmp_path):
    out = tmp_path / "out"
    pymr.run("submit", JOBS / "join.py", SHOP, "-o", out, "-w", "2", "--output-format", "jsonl",
             "--split-size", "8K", check=True)
    with open(SHOP / "customers.csv", newline="", encoding="utf-8") as f:
        customers = {int(row["customer_id"]): row for row in csv.DictReader(f)}
    with open(SHOP / "orders.csv", newline="", encoding="utf-8") as f:
        orders = list(csv.DictReader(f))
    expected = {int(o["order_id"]): {"order_id": int(o["order_id"]), "customer_id": int(o["customer_id"]),
                                     "amount": o["amount"], "name": customers[int(o["customer_id"])]["name"],
                                     "city": customers[int(o["customer_id"])]["city"]}
                for o in orders if int(o["customer_id"]) in customers}
    got = {key: value for key, value in jsonl(out)}
    assert got == expected and len(expected) < len(orders)
    report = json.loads((out / "_REPORT.json").read_text())
    assert report["counters"]["join"]["orders without customer"] == len(orders) - len(expected)
