"""The map output table a reduce learns its input from (pymr/locations.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pymr import locations

PATHS = st.one_of(st.text(min_size=1, max_size=30).filter(lambda p: "\x00" not in p),
                  st.integers(0, 3).map(lambda n: f"/data/w/job_a/job_a-m{{}}-{n}/map.arrow"))


@given(st.lists(st.tuples(PATHS, st.sampled_from([None, "10.0.0.1", "10.0.0.2"]),
                          st.sampled_from([None, "tcp://10.0.0.1:4000"])), max_size=60))
def test_the_table_gives_back_every_location_in_map_order(rows):
    given_locations = [{"path": path.replace("{}", f"m{i:05d}") if "{}" in path else path, "host": host,
                        "address": address} for i, (path, host, address) in enumerate(rows)]
    assert locations.decode(locations.encode(given_locations)) == given_locations


def test_a_big_table_is_small_and_its_size_does_not_grow_with_the_cluster():
    for workers in (20, 2000):
        maps = [{"path": f"/var/tmp/pymr/w{i % workers}/job_x/job_x-m{i:05d}-0/map.arrow",
                 "host": f"10.0.{i % workers // 250}.{i % workers % 250}", "address": f"tcp://h{i % workers}:4000"}
                for i in range(50_000)]
        assert len(locations.encode(maps)) < 3 * 50_000  # bytes: a few per map, whatever the number of workers
