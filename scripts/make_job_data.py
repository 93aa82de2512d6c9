"""Write the small, deterministic sample inputs of the job library.

* ``sample_data/shop/customers.csv`` and ``orders.csv``: a join's two sides (orders
  reference customer ids, some of which do not exist; some notes hold commas, quotes
  and newlines, to exercise CSV splitting);
* ``sample_data/events/events.jsonl``: JSON-lines events with a ``kind`` field
  (missing in about 5% of them).

    python scripts/make_job_data.py
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "sample_data"
CITIES = ["Lisbon", "Porto", "Kraków", "Zürich", "Oslo", "Turku", "Gent", "Bologna"]
NAMES = ["Ana", "Bruno", "Chloé", "Dawid", "Eva", "Farah", "Gustav", "Hana", "Ivo", "Jonas", "Kaja", "Luís"]
NOTES = ["", "gift", "express, fragile", 'said "thanks"', "line one\nline two"]
KINDS = ["view", "click", "purchase", "signup", "logout"]


def write_shop(rng: random.Random) -> None:
    (ROOT / "shop").mkdir(parents=True, exist_ok=True)
    with open(ROOT / "shop" / "customers.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["customer_id", "name", "city"])
        for i in range(1, 201):
            writer.writerow([i, f"{rng.choice(NAMES)} {chr(65 + i % 26)}.", rng.choice(CITIES)])
    with open(ROOT / "shop" / "orders.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["order_id", "customer_id", "amount", "note"])
        for i in range(1, 3001):
            writer.writerow([i, rng.randint(1, 220), f"{rng.randint(100, 50000) / 100:.2f}", rng.choice(NOTES)])


def write_events(rng: random.Random) -> None:
    (ROOT / "events").mkdir(parents=True, exist_ok=True)
    with open(ROOT / "events" / "events.jsonl", "w", encoding="utf-8") as f:
        for i in range(5000):
            event = {"id": i, "kind": rng.choices(KINDS, [50, 30, 5, 3, 12])[0], "user": rng.randint(1, 400),
                     "ms": rng.randint(1, 5000)}
            if rng.random() < 0.05:
                del event["kind"]
            f.write(json.dumps(event) + "\n")


def main() -> None:
    rng = random.Random(7)
    write_shop(rng)
    write_events(rng)


if __name__ == "__main__":
    main()
