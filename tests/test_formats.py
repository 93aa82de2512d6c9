"""Input formats beyond text, and the Parquet part writer (pymr/formats.py).

Every test writes real files, plans their splits with ``plan_splits`` at several split
sizes and reads every split as a map task does; the records read must be the file's
records, each exactly once, in file order. The reference records are built alongside
the file's bytes (CSV records are encoded one at a time, so each one's offset is known).
"""

from __future__ import annotations

import gzip
import json
import os

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.feather as feather
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from conftest import TEST_JOBS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pymr
from pymr.errors import OutputTypeError
from pymr.formats import CsvFormat
from pymr.parquet_output import ParquetPartWriter, read_parquet_pairs, unify_parquet_parts
from pymr.inputs import Split, format_for_path, input_format, plan_splits


def _no_skip(where, error):
    raise AssertionError(f"on_skip called at {where}: {error}")


def read_splits(splits: list[Split], skip: bool = False, on_skip=_no_skip) -> list:
    records = []
    for split in splits:
        # a split travels to its task as JSON
        split = Split.from_dict(json.loads(json.dumps(split.to_dict())))
        records.extend(input_format(split.format).records(split, {"skip_bad_records": skip}, on_skip))
    return records


def check_tiling(splits: list[Split], size: int) -> None:
    assert splits[0].start == 0 and splits[-1].end == size
    assert all(a.end == b.start for a, b in zip(splits, splits[1:]))


def write(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


# -- jsonl ---------------------------------------------------------------------------------
def jsonl_file(tmp_path, values, name="data.jsonl", newline=b"\n", blank_every=4):
    data = b""
    expected = []
    for i, value in enumerate(values):
        if i % blank_every == 3:
            data += b"  " + newline
        line = json.dumps(value, ensure_ascii=False).encode()
        expected.append((len(data), value))
        data += line + newline
    path = write(tmp_path / name, data)
    return path, data, [((path, offset), value) for offset, value in expected]


JSON_VALUES = [{"id": i, "name": "naïve \u2028 " * (i % 3), "tags": ["a", "b"][: i % 3], "ok": i % 2 == 0}
               for i in range(20)] + [3, "text", None, [1, [2]]]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_jsonl_records_once_each_at_every_split_size(tmp_path, newline):
    path, data, expected = jsonl_file(tmp_path, JSON_VALUES, newline=newline)
    for split_size in [1, 5, 17, 64, 100, len(data) - 1, len(data), 10 * len(data)]:
        splits = plan_splits([path], split_size)
        check_tiling(splits, len(data))
        assert {s.format for s in splits} == {"jsonl"}
        assert read_splits(splits) == expected, f"split_size={split_size}"


def test_jsonl_without_final_newline_compressed_and_ndjson(tmp_path):
    path, data, expected = jsonl_file(tmp_path, JSON_VALUES[:5])
    write(tmp_path / "data.jsonl", data.rstrip(b"\n"))
    assert read_splits(plan_splits([path], 7)) == expected
    gz = write(tmp_path / "data.ndjson.gz", gzip.compress(data))
    splits = plan_splits([gz], 7)
    assert len(splits) == 1 and splits[0].compressed and splits[0].format == "jsonl"
    assert [v for _, v in read_splits(splits)] == JSON_VALUES[:5]
    zst = str(tmp_path / "data.jsonl.zst")
    with pa.CompressedOutputStream(zst, "zstd") as f:
        f.write(data)
    splits = plan_splits([zst], 7)
    assert len(splits) == 1 and splits[0].compressed and splits[0].format == "jsonl"
    assert [v for _, v in read_splits(splits)] == JSON_VALUES[:5]


def test_jsonl_bad_lines_name_file_offset_and_excerpt_or_are_skipped(tmp_path):
    data = b'{"a": 1}\n{"a": 2,, "oops"}\n\xff{"a": 3}\n{"a": 4}\n'
    path = write(tmp_path / "bad.jsonl", data)
    splits = plan_splits([path], 1000)
    with pytest.raises(pymr.BadRecordError) as info:
        read_splits(splits)
    message = str(info.value)
    assert path in message and "byte offset 9" in message and "not valid JSON" in message and "oops" in message
    skipped = []
    records = read_splits(splits, skip=True, on_skip=lambda where, exc: skipped.append(where))
    assert [v["a"] for _, v in records] == [1, 4]
    assert skipped == [9, 27]
    with pytest.raises(pymr.BadRecordError, match=r"byte offset 27 is not valid UTF-8"):
        read_splits([Split(path, 27, len(data), format="jsonl")])


# -- csv -----------------------------------------------------------------------------------
def encode_csv(rows, lineterminator="\n", final_newline=True) -> tuple[bytes, list[int]]:
    """The file's bytes (RFC 4180: a field holding a comma, quote, CR or LF is quoted) and each row's offset."""
    data = b""
    offsets = []
    for row in rows:
        fields = ['"' + f.replace('"', '""') + '"' if set(f) & set(',"\r\n') else f for f in row]
        offsets.append(len(data))
        data += (",".join(fields) if fields != [""] else '""').encode() + lineterminator.encode()
    if not final_newline:
        data = data[: -len(lineterminator)]
    return data, offsets


HEADER = ["id", "note", "price"]
TRICKY_NOTES = ['plain', 'comma, inside', 'quote " inside', '"', '""', 'two\nlines', '\n', 'crlf\r\nin field',
                'ends with newline\n', '\nstarts with newline', 'é ünïcode', '', ' spaced ', 'a\n"b"\nc']
ROWS = [[str(i), TRICKY_NOTES[i % len(TRICKY_NOTES)], f"{i * 1.5}"] for i in range(45)]


def csv_file(tmp_path, rows, header=HEADER, name="data.csv", lineterminator="\n", final_newline=True):
    data, offsets = encode_csv(([header] if header else []) + rows, lineterminator, final_newline)
    path = write(tmp_path / name, data)
    if header:
        expected = [((path, offset), dict(zip(header, row))) for offset, row in zip(offsets[1:], rows)]
    else:
        expected = [((path, offset), tuple(row)) for offset, row in zip(offsets, rows)]
    return path, data, expected


@pytest.mark.parametrize("lineterminator,final_newline", [("\n", True), ("\r\n", True), ("\r\n", False)])
def test_csv_records_once_each_at_every_split_size(tmp_path, lineterminator, final_newline):
    path, data, expected = csv_file(tmp_path, ROWS, lineterminator=lineterminator, final_newline=final_newline)
    # size 1 puts a boundary before every byte: quotes, quoted newlines, CRs
    for split_size in [1, 2, 3, 5, 8, 13, 21, 34, 97, 256, len(data) - 1, len(data), 4 * len(data)]:
        splits = plan_splits([path], split_size)
        check_tiling(splits, len(data))
        assert all(s.state["header"] == HEADER for s in splits)
        assert read_splits(splits) == expected, f"split_size={split_size}"


def test_csv_quote_parity_at_boundaries(tmp_path):
    rows = [["1", "a\nb"], ["2", 'x""\ny']]
    path, data, expected = csv_file(tmp_path, rows, header=["n", "s"])
    inside = data.index(b"a\nb") + 2  # just after the quoted newline
    splits = [Split(path, 0, inside, format="csv"), Split(path, inside, len(data), format="csv")]
    planned = {s.start: s for s in plan_splits([path], 1)}
    assert planned[inside].state["in_quotes"] is True
    assert planned[data.index(b"2,")].state["in_quotes"] is False
    # splits made by hand (no state) work out the header and parity themselves
    assert read_splits(splits) == expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.lists(st.text(alphabet='ab,"\n\r é', max_size=6), min_size=2, max_size=2), max_size=12),
       split_size=st.integers(1, 60), crlf=st.booleans(), final_newline=st.booleans())
def test_csv_random_rows_and_split_sizes(tmp_path, rows, split_size, crlf, final_newline):
    path, data, expected = csv_file(tmp_path, rows, header=["a", "b"], lineterminator="\r\n" if crlf else "\n",
                                    final_newline=final_newline)
    assert read_splits(plan_splits([path], split_size)) == expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet='a,"\n\r', min_size=1, max_size=40), split_size=st.integers(1, 40))
def test_malformed_csv_reads_the_same_at_every_split_size(tmp_path, text, split_size):
    """Stray quotes make bad records, but never lose or repeat one: planning and reading agree."""
    path = write(tmp_path / "messy.csv", text.encode())

    def read(size):
        skipped = []
        records = read_splits(plan_splits(["csv-noheader:" + path], size), skip=True,
                              on_skip=lambda where, exc: skipped.append(where))
        return records, skipped

    assert read(split_size) == read(10**6)


def test_csv_noheader_compressed_bom_and_blank_lines(tmp_path):
    path, data, expected = csv_file(tmp_path, ROWS[:6], header=None, name="rows.txt")
    splits = plan_splits(["csv-noheader:" + path], 9)
    assert {s.format for s in splits} == {"csv-noheader"}
    assert read_splits(splits) == expected
    gz = write(tmp_path / "data.csv.gz", gzip.compress(b"\xef\xbb\xbfid,v\r\n\r\n1,\"x\r\ny\"\r\n\r\n2,z"))
    splits = plan_splits([gz], 4)
    assert len(splits) == 1 and splits[0].compressed and splits[0].format == "csv"
    assert read_splits(splits) == [((gz, 11), {"id": "1", "v": "x\r\ny"}), ((gz, 23), {"id": "2", "v": "z"})]


def test_csv_tab_dialect(tmp_path):
    tsv = CsvFormat(name="tsv-test", delimiter="\t", extensions=(".tsv",))
    path = write(tmp_path / "a.tsv", b'k\tv\n1\t"a\tb"\n2\tc,d\n')
    records = [r for s in tsv.splits(path, 5) for r in tsv.records(s, {}, _no_skip)]
    assert [v for _, v in records] == [{"k": "1", "v": "a\tb"}, {"k": "2", "v": "c,d"}]


@pytest.mark.parametrize("bad,problem", [
    (b"3,too,many,fields\n", "has 4 fields but the header has 3"),
    (b"3,few\n", "has 2 fields but the header has 3"),
    (b'3,"x"y,1\n', "is not valid CSV"),
    (b"3,\xff,1\n", "is not valid UTF-8"),
])
def test_csv_bad_record_names_file_and_offset_or_is_skipped(tmp_path, bad, problem):
    good, _ = encode_csv([HEADER, ["1", "ok", "1"]])
    tail, _ = encode_csv([["4", "after\nbad", "4"]])
    path = write(tmp_path / "bad.csv", good + bad + tail)
    for split_size in (1, 7, 1000):
        splits = plan_splits([path], split_size)
        with pytest.raises(pymr.BadRecordError) as info:
            read_splits(splits)
        assert f"{path}: record at byte offset {len(good)} {problem}" in str(info.value)
        skipped = []
        records = read_splits(splits, skip=True, on_skip=lambda where, exc: skipped.append(where))
        assert [v["id"] for _, v in records] == ["1", "4"] and skipped == [len(good)]


def test_csv_unclosed_quote_is_one_bad_record_to_the_end(tmp_path):
    path = write(tmp_path / "open.csv", b'a,b\n1,"never closed\n2,x\n3,y\n')
    skipped = []
    records = read_splits(plan_splits([path], 3), skip=True, on_skip=lambda where, exc: skipped.append(where))
    assert records == [] and skipped == [4]


def test_csv_header_problems_are_input_errors(tmp_path):
    with pytest.raises(pymr.InputError, match="repeats the column name"):
        plan_splits([write(tmp_path / "dup.csv", b"a,b,a\n1,2,3\n")], 100)
    with pytest.raises(pymr.InputError, match="blank"):
        plan_splits([write(tmp_path / "blank.csv", b"\na,b\n")], 100)


# -- parquet and arrow -----------------------------------------------------------------------
TABLE = pa.table({
    "id": pa.array(range(1000), pa.int64()),
    "name": pa.array([f"name-{i % 7}" for i in range(1000)]).dictionary_encode(),
    "score": pa.array([None if i % 10 == 0 else i / 4 for i in range(1000)]),
})


def expected_rows(path):
    return [((path, i), row) for i, row in enumerate(TABLE.to_pylist())]


def test_parquet_splits_by_row_groups(tmp_path):
    path = str(tmp_path / "t.parquet")
    pq.write_table(TABLE, path, row_group_size=90)  # 12 row groups
    groups = pq.ParquetFile(path).metadata.num_row_groups
    for split_size in [1, 2000, 5000, 10**9]:
        splits = plan_splits([path], split_size)
        assert {s.format for s in splits} == {"parquet"}
        ranges = [s.state["row_groups"] for s in splits]
        assert ranges[0][0] == 0 and ranges[-1][1] == groups
        assert all(a[1] == b[0] and a[0] < a[1] for a, b in zip(ranges, ranges[1:]))
        assert all(a.end <= b.start for a, b in zip(splits, splits[1:]))  # byte ranges, in file order
        assert read_splits(splits) == expected_rows(path), f"split_size={split_size}"
    assert len(plan_splits([path], 1)) == groups and len(plan_splits([path], 10**9)) == 1


def test_parquet_batches(tmp_path):
    path = str(tmp_path / "t.pq")
    pq.write_table(TABLE, path, row_group_size=300)
    records = read_splits(plan_splits(["parquet-batches:" + path], 1))
    assert all(isinstance(batch, pa.RecordBatch) for _, batch in records)
    firsts = [key[1] for key, _ in records]
    assert firsts == [0, 300, 600, 900]
    assert pa.Table.from_batches([b for _, b in records]).equals(pq.read_table(path))


@pytest.mark.parametrize("compression", [None, "zstd"])
def test_arrow_splits_by_record_batches(tmp_path, compression):
    path = str(tmp_path / "t.arrow")
    options = ipc.IpcWriteOptions(compression=compression)
    with ipc.new_file(path, TABLE.schema, options=options) as writer:
        for batch in TABLE.to_batches(max_chunksize=130):  # 8 batches, with a dictionary
            writer.write_batch(batch)
    for split_size in [1, 3000, 10**9]:
        splits = plan_splits([path], split_size)
        assert [s.state["batches"][0] for s in splits][0] == 0 and splits[-1].state["batches"][1] == 8
        assert read_splits(splits) == expected_rows(path), f"split_size={split_size}"
    assert len(plan_splits([path], 1)) == 8


class _ScoreByName(pymr.Job):
    """Per record: the sum of each name's scores (nulls skipped)."""

    aggregate = "sum"

    def map(self, key, row):
        if row["score"] is not None:
            yield row["name"], row["score"]


class _ScoreByNameInBatches(_ScoreByName):
    """The same sums, each block of rows grouped in Arrow."""

    def map_batch(self, batch):
        assert self.input_path.endswith((".parquet", ".arrow"))
        table = pa.Table.from_batches([batch]).drop_null()
        sums = table.group_by("name").aggregate([("score", "sum")])
        return pa.table({"key": sums["name"].cast(pa.string()), "value": sums["score_sum"]})


def test_map_batch_reads_parquet_and_arrow_blocks(tmp_path):
    parquet_path = str(tmp_path / "t.parquet")
    pq.write_table(TABLE, parquet_path, row_group_size=90)
    arrow_path = str(tmp_path / "t.arrow")
    with ipc.new_file(arrow_path, TABLE.schema) as writer:
        for batch in TABLE.to_batches(max_chunksize=130):
            writer.write_batch(batch)
    inputs = [parquet_path, arrow_path]
    batched = _ScoreByNameInBatches.run(inputs, output=str(tmp_path / "batched"), workers=2, reducers=2,
                                        split_size=2000)
    per_record = _ScoreByName.run(inputs, output=str(tmp_path / "rows"), workers=2, reducers=2, split_size=2000)
    assert batched.counters["pymr"]["map input records"] == 2000
    assert dict(batched) == pytest.approx(dict(per_record))
    assert dict(batched)["name-1"] == pytest.approx(2 * sum(i / 4 for i in range(1000) if i % 7 == 1 and i % 10))


@pytest.mark.parametrize("inline", [False, True])
def test_map_batch_of_a_format_without_blocks_is_refused_before_any_task(tmp_path, inline):
    path, _, _ = jsonl_file(tmp_path, JSON_VALUES)
    with pytest.raises(pymr.InputError, match=r"map_batch cannot read jsonl input \(.*data\.jsonl\)"):
        _ScoreByNameInBatches.run([path], output=str(tmp_path / "out"), workers=1, inline=inline)
    assert not (tmp_path / "out").exists()


def test_map_batch_input_error_from_the_command_line(pymr, tmp_path):
    path, _, _ = jsonl_file(tmp_path, JSON_VALUES)
    script = tmp_path / "batches.py"
    script.write_text("import pymr\n\nclass Batches(pymr.Job):\n    def map_batch(self, batch):\n"
                      "        return []\n")
    result = pymr.run("submit", script, path, "-o", tmp_path / "out", "-w", "1")
    assert result.returncode != 0 and "map_batch cannot read jsonl input" in result.stderr and path in result.stderr
    assert "attempt" not in result.stderr and not (tmp_path / "out").exists()


def test_feather_and_not_an_arrow_file(tmp_path):
    path = str(tmp_path / "t.feather")
    feather.write_feather(TABLE, path, chunksize=400)
    assert read_splits(plan_splits([path], 1)) == expected_rows(path)
    with pytest.raises(pymr.InputError, match="not an Arrow IPC file"):
        plan_splits([write(tmp_path / "x.ipc", b"ARROW1 but not really")], 100)
    with pytest.raises(pymr.InputError, match="not a Parquet file"):
        plan_splits([write(tmp_path / "x.parquet", b"not parquet at all")], 100)


# -- whole files -----------------------------------------------------------------------------
def test_wholefile_one_record_per_file(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    texts = {"a.txt": "first\nfile é\n" * 100, "b.txt": "", "c.json": "{not split}"}
    for name, text in texts.items():
        (folder / name).write_text(text, encoding="utf-8")
    write(folder / "d.txt.gz", gzip.compress(b"zipped\n"))
    splits = plan_splits(["wholefile:" + str(folder)], 10)
    assert len(splits) == 4
    expected = {str(folder / n): t for n, t in texts.items()} | {str(folder / "d.txt.gz"): "zipped\n"}
    assert dict(read_splits(splits)) == expected
    raw = dict(read_splits(plan_splits(["wholefile-bytes:" + str(folder)], 10)))
    assert raw[str(folder / "a.txt")] == texts["a.txt"].encode()


def test_wholefile_bad_encoding(tmp_path):
    path = write(tmp_path / "latin1.txt", "café".encode("latin-1"))
    splits = plan_splits(["wholefile:" + path], 10)
    with pytest.raises(pymr.BadRecordError, match=r"latin1.txt: record at byte offset 0 is not valid UTF-8 .* byte 3"):
        read_splits(splits)
    skipped = []
    assert read_splits(splits, skip=True, on_skip=lambda where, exc: skipped.append(where)) == []
    assert skipped == [0]
    assert read_splits(plan_splits(["wholefile-bytes:" + path], 10)) == [(path, b"caf\xe9")]


# -- choosing a format -------------------------------------------------------------------------
@pytest.mark.parametrize("name,fmt", [
    ("a.jsonl", "jsonl"), ("a.NDJSON", "jsonl"), ("a.json.gz", "jsonl"), ("a.csv", "csv"), ("a.csv.bz2", "csv"),
    ("a.parquet", "parquet"), ("a.pq", "parquet"), ("a.arrow", "arrow"), ("a.feather", "arrow"), ("a.ipc", "arrow"),
    ("a.txt", "text"), ("a", "text"), ("a.gz", "text"),
])
def test_format_for_path(name, fmt):
    assert format_for_path(f"/data/{name}", None) == fmt
    assert format_for_path(f"/data/{name}", "wholefile") == "wholefile"


def test_prefix_overrides_extension(tmp_path):
    path = write(tmp_path / "rows.jsonl", b'{"a": 1}\n')
    assert plan_splits([path], 100)[0].format == "jsonl"
    assert plan_splits(["text:" + path], 100)[0].format == "text"
    assert plan_splits([path], 100, default_format="wholefile")[0].format == "wholefile"


# -- parquet output ----------------------------------------------------------------------------
def test_parquet_writer_typed_columns_round_trip(tmp_path):
    path = str(tmp_path / "part-00000")
    writer = ParquetPartWriter(path, key_type=pa.string(), value_type=pa.int64(), chunk_rows=7)
    pairs = [(f"word{i}", i * 3) for i in range(50)] + [("none", None)]
    for key, value in pairs:
        writer.write(key, value)
    assert writer.records == 51
    assert writer.close() == os.path.getsize(path)
    assert list(read_parquet_pairs(path)) == pairs
    table = pq.read_table(path)
    assert table.schema.field("key").type == pa.string() and table.schema.field("value").type == pa.int64()
    assert pq.ParquetFile(path).metadata.num_row_groups == 8  # chunks of 7


def test_parquet_writer_takes_arrow_tables_of_pairs(tmp_path):
    from pymr.keys import encode_key

    path = str(tmp_path / "part-00000")
    writer = ParquetPartWriter(path, value_type=pa.int64())
    writer.write_table(pa.table({"key": pa.array(["a", "b"], pa.large_string()), "value": [1, 2]}))
    writer.write_table(pa.table({"key": pa.array([encode_key(("t", 1))], pa.large_binary()), "value": [3]}))
    writer.close()
    assert list(read_parquet_pairs(path)) == [("a", 1), ("b", 2), (["t", 1], 3)]


def test_parquet_writer_infers_types_and_stores_the_rest_as_json(tmp_path):
    path = str(tmp_path / "part-00000")
    writer = ParquetPartWriter(path)
    pairs = [(("t", 1), {"n": [1, 2.5, None]}), ("k", "v"), (None, 3), (7, True)]
    for key, value in pairs:
        writer.write(key, value)
    writer.close()
    assert pq.read_table(path).column("value").to_pylist()[0] == '{"n": [1, 2.5, null]}'
    assert list(read_parquet_pairs(path)) == [(["t", 1], {"n": [1, 2.5, None]}), ("k", "v"), (None, 3), (7, True)]

    typed = str(tmp_path / "typed")
    writer = ParquetPartWriter(typed)
    for i in range(5):
        writer.write(f"w{i}", i if i != 3 else None)
    writer.close()
    table = pq.read_table(typed)
    assert table.schema.field("key").type == pa.string() and table.schema.field("value").type == pa.int64()
    assert table.column("value").to_pylist() == [0, 1, 2, None, 4]


@pytest.mark.parametrize("values,arrow_type,expected", [
    ([1, 2, 3], pa.int64(), [1, 2, 3]),
    ([1, 2.5, None], pa.float64(), [1.0, 2.5, None]),
    ([True, False], pa.bool_(), [True, False]),
    ([b"a", b"\xff"], pa.binary(), [b"a", b"\xff"]),
    (["x", None], pa.string(), ["x", None]),
    ([2**70, 1], pa.string(), [2**70, 1]),  # beyond int64: JSON keeps it exact
    ([1, "a"], pa.string(), [1, "a"]),
    ([True, 1], pa.string(), [True, 1]),
])
def test_parquet_writer_widens_across_chunks(tmp_path, values, arrow_type, expected):
    """One value per row group, so the first chunk decides a type each later one may widen."""
    path = str(tmp_path / "part-00000")
    writer = ParquetPartWriter(path, chunk_rows=1)
    for i, value in enumerate(values):
        writer.write(f"k{i}", value)
    writer.close()
    assert pq.read_schema(path).field("value").type == arrow_type
    assert [v for _, v in read_parquet_pairs(path)] == expected


def test_unify_parquet_parts_gives_every_part_one_schema(tmp_path):
    parts = []
    for name, values in [("a", [1, 2]), ("b", [0.5]), ("c", []), ("d", [None])]:
        parts.append(str(tmp_path / f"{name}.parquet"))
        writer = ParquetPartWriter(parts[-1])
        for value in values:
            writer.write(name, value)
        writer.close()
    unify_parquet_parts(parts)
    schemas = {str(pq.read_schema(p).remove_metadata()) for p in parts}
    assert len(schemas) == 1 and pq.read_schema(parts[0]).field("value").type == pa.float64()
    table = ds.dataset(parts, format="parquet").to_table()
    assert table.column("value").to_pylist() == [1.0, 2.0, 0.5, None]


@pytest.mark.parametrize("value_type,value", [(pa.int64(), 1.5), (pa.int64(), "3"), (pa.string(), 3),
                                              (pa.bool_(), "yes")])
def test_parquet_writer_refuses_values_that_do_not_fit(tmp_path, value_type, value):
    writer = ParquetPartWriter(str(tmp_path / "part-00000"), value_type=value_type)
    writer.write("k", value)
    with pytest.raises(OutputTypeError, match="does not fit the declared column type"):
        writer.close()


def test_parquet_parts_read_as_one_dataset(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for part in range(3):
        writer = ParquetPartWriter(str(out / f"part-{part:05d}"), key_type=pa.string(), chunk_rows=4)
        for i in range(part * 5):  # part 0 is empty, and still has the schema
            writer.write(f"k{part}-{i}", [part, i] if i % 2 else {"i": i})
        writer.close()
    unify_parquet_parts([str(p) for p in out.iterdir()])  # as the job commit does
    (out / "_SUCCESS").write_text("")
    (out / "_REPORT.json").write_text("{}")
    table = ds.dataset(str(out), format="parquet").to_table()
    assert table.num_rows == 15 and table.schema.names == ["key", "value"]
    pairs = list(read_parquet_pairs(str(out)))
    assert len(pairs) == 15 and pairs[0] == ("k1-0", {"i": 0}) and pairs[1] == ("k1-1", [1, 1])


# -- end to end --------------------------------------------------------------------------------
def test_csv_and_jsonl_inputs_in_one_job(pymr, tmp_path):
    csv_path, _, _ = csv_file(tmp_path, [[str(i), f"line\n{i}", str(i)] for i in range(30)],
                                        header=["id", "note", "qty"])
    jsonl_path = write(tmp_path / "orders.jsonl", b"".join(b'{"qty": %d}\n' % i for i in range(20)))
    out = tmp_path / "out"
    pymr.run("submit", TEST_JOBS / "format_mix.py", csv_path, jsonl_path, "-o", out, "-w", "2",
             "--split-size", "64", "-q", check=True)
    lines = [json.loads(line) for p in sorted(out.glob("part-*")) for line in p.read_text().splitlines()]
    assert sorted(lines) == [[[".csv", "dict"], [30, sum(range(30))]], [[".jsonl", "dict"], [20, sum(range(20))]]]
