"""The block readers of text input (records for `map`, Arrow batches for `map_batch`) give
exactly the lines a plain line-by-line reader gives, for every split size."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pymr
from pymr import inputs
from pymr.inputs import input_format, make_splits, read_lines, read_text_batches, read_text_records

PIECES = [b"", b"a", b"hello world", "é€".encode(), b"x\r", b"  b\rc  ", "\u2028z".encode(), b"\t", "日本".encode()]


def reference(path, split_size):
    """Line by line: decode, drop one trailing \\n or \\r\\n."""
    out = []
    for split in make_splits([str(path)], split_size):
        for offset, raw in read_lines(split):
            line = raw.decode("utf-8")
            if line.endswith("\n"):
                line = line[:-2] if line.endswith("\r\n") else line[:-1]
            out.append((offset, line))
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(st.tuples(st.sampled_from(PIECES), st.sampled_from([b"\n", b"\r\n"])), max_size=60),
       tail=st.sampled_from([b"", b"end", b"end\r", b"\r"]), split_size=st.sampled_from([1, 3, 17, 100, 1 << 20]),
       block=st.sampled_from([4, 64, 1 << 20]))
def test_block_readers_match_line_by_line(tmp_path, pieces, tail, split_size, block):
    path = tmp_path / "in.txt"
    path.write_bytes(b"".join(a + b for a, b in pieces) + tail)
    if path.stat().st_size == 0:
        return
    expected = reference(path, split_size)
    records = [(key[1], value) for split in make_splits([str(path)], split_size)
               for key, value in read_text_records(split, False, None)]
    assert records == expected
    keyless = [(key, value) for split in make_splits([str(path)], split_size)  # for a map that never reads keys
               for _, chunk in input_format("text").record_chunks(split, {"record_keys": False}, None)
               for key, value in chunk]
    assert keyless == [(None, line) for _, line in expected]
    batches = []
    for split in make_splits([str(path)], split_size):
        for batch in read_text_batches(split, False, None, block_bytes=block):
            batches += zip(batch.column("offset").to_pylist(), batch.column("line").to_pylist())
    assert batches == expected


@pytest.mark.parametrize("reader", ["records", "batches"])
def test_bad_utf8_is_named_or_skipped_by_both_readers(tmp_path, reader):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"good\n\xff bad\nlast\n")
    split = make_splits([str(path)], 1 << 20)[0]

    def read(skip, on_skip=None):
        if reader == "records":
            return [value for _, value in read_text_records(split, skip, on_skip)]
        return [v for b in read_text_batches(split, skip, on_skip) for v in b.column("line").to_pylist()]

    with pytest.raises(pymr.BadRecordError, match="byte offset 5"):
        read(False)
    skipped = []
    assert read(True, lambda offset, exc: skipped.append(offset)) == ["good", "last"]
    assert skipped == [5]


def chunked_records(split, fmt, skip=False, on_skip=None):
    """The records of ``record_chunks``, checking that each chunk holds the count it claims."""
    out = []
    for count, chunk in input_format(fmt).record_chunks(split, {"skip_bad_records": skip}, on_skip):
        chunk = list(chunk)
        assert 1 <= count == len(chunk) <= inputs.CHUNK_RECORDS
        out += chunk
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(st.tuples(st.sampled_from(PIECES), st.sampled_from([b"\n", b"\r\n"])), max_size=40),
       tail=st.sampled_from([b"", b"end", b"end\r"]), split_size=st.sampled_from([1, 17, 1 << 20]),
       per_chunk=st.sampled_from([1, 2, 5]))
def test_record_chunks_hold_the_records_and_count_them(tmp_path, monkeypatch, pieces, tail, split_size, per_chunk):
    monkeypatch.setattr(inputs, "CHUNK_RECORDS", per_chunk)
    path = tmp_path / "in.txt"
    path.write_bytes(b"".join(a + b for a, b in pieces) + tail)
    if path.stat().st_size == 0:
        return
    for split in make_splits([str(path)], split_size):
        assert chunked_records(split, "text") == list(read_text_records(split, False, None))


def test_record_chunks_of_skipped_lines_and_of_other_formats(tmp_path, monkeypatch):
    monkeypatch.setattr(inputs, "CHUNK_RECORDS", 2)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"good\n\xff bad\nlast\nmore\n")
    split = make_splits([str(bad)], 1 << 20)[0]
    skipped = []
    assert [line for _, line in chunked_records(split, "text", True, lambda o, e: skipped.append(o))] == \
        ["good", "last", "more"]
    assert skipped == [5]
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(f'{{"n": {i}}}\n' for i in range(5)))
    split = input_format("jsonl").splits(str(rows), 1 << 20)[0]
    assert [value for _, value in chunked_records(split, "jsonl")] == [{"n": i} for i in range(5)]
