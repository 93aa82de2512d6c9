"""Input files, line-aligned splits and text records (pymr/inputs.py).

The reference for every file is computed here from its bytes: split on b"\\n", each line
keyed by the byte offset of its first byte, its value decoded with "\\n" or "\\r\\n" cut.
Reading every split of a file, in order, must give exactly that list.
"""

from __future__ import annotations

import bz2
import gzip
import os
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pymr
from pymr.inputs import Split, make_splits, parse_size, read_text_records, resolve_inputs


def expected_records(path: str, data: bytes) -> list[tuple[tuple[str, int], str]]:
    records = []
    offset = 0
    pieces = data.split(b"\n")
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        if last and piece == b"":
            break
        text = piece.decode("utf-8")
        if not last and text.endswith("\r"):
            text = text[:-1]
        records.append(((path, offset), text))
        offset += len(piece) + (0 if last else 1)
    return records


def read_all(splits: list[Split]) -> list[tuple[tuple[str, int], str]]:
    out = []
    for split in splits:
        out.extend(read_text_records(split, False, _no_skip))
    return out


def _no_skip(offset, error):
    raise AssertionError(f"on_skip called at {offset}: {error}")


def split_sizes(length: int) -> list[int]:
    return sorted({1, 2, 3, 7, 64, max(1, length - 1), max(1, length), length + 1, length * 3 + 10})


def check_file(path: str, data: bytes, split_size: int) -> None:
    splits = make_splits([path], split_size)
    # the splits tile the file exactly
    assert splits[0].start == 0 and splits[-1].end == len(data)
    assert all(a.end == b.start for a, b in zip(splits, splits[1:]))
    assert all(s.start < s.end and s.path == path and not s.compressed for s in splits)
    assert read_all(splits) == expected_records(path, data), f"split_size={split_size}"


FILES = {
    "simple": b"alpha\nbeta\ngamma\n",
    "no_trailing_newline": b"alpha\nbeta\ngamma",
    "empty_lines": b"\n\nfirst\n\n\nsecond\n\n",
    "only_newlines": b"\n" * 17,
    "one_newline": b"\n",
    "one_char": b"x",
    "crlf": b"one\r\ntwo\r\n\r\nthree\r\nfour",
    "mixed_endings": b"a\r\nb\nc\r\n\r\n\nd\r\n",
    "lone_cr_kept": b"a\rb\nc\r",
    "multibyte": ("é€\U0001d11e\n" * 5 + "日本語のテキスト\nñ\n\U0001d11e\U0001d11e\U0001d11e").encode(),
    "multibyte_crlf": "Grüße\r\nçà\r\n€\r\n".encode(),
    "huge_line": b"x" * 2500 + b"\n" + b"y" * 1500,
    "huge_line_between_short": b"a\n" + "é".encode() * 1500 + b"\nb\n",
    "nul_bytes": b"a\x00b\n\x00\n",
    "long_lines_spanning": b"".join(b"%d:" % i + b"z" * (i * 7 % 90) + b"\n" for i in range(60)),
}


@pytest.mark.parametrize("name", sorted(FILES))
def test_splits_read_every_line_once(tmp_path, name):
    data = FILES[name]
    path = str(tmp_path / f"{name}.txt")
    with open(path, "wb") as f:
        f.write(data)
    for size in split_sizes(len(data)):
        check_file(path, data, size)


def test_every_boundary_inside_a_crlf_and_a_multibyte_char(tmp_path):
    # put a split boundary at every byte of a short file, one at a time
    data = "ab\r\n€\r\nx\U0001d11ey\n\nz".encode()
    path = str(tmp_path / "f.txt")
    with open(path, "wb") as f:
        f.write(data)
    want = expected_records(path, data)
    for cut in range(1, len(data)):
        splits = [Split(path, 0, cut), Split(path, cut, len(data))]
        assert read_all(splits) == want, f"boundary at byte {cut}"


def test_last_split_absorbs_a_small_remainder(tmp_path):
    path = str(tmp_path / "f.txt")
    with open(path, "wb") as f:
        f.write(b"x\n" * 52)  # 104 bytes
    assert [(s.start, s.end) for s in make_splits([path], 100)] == [(0, 104)]
    assert [(s.start, s.end) for s in make_splits([path], 50)] == [(0, 50), (50, 104)]


# 1- to 4-byte UTF-8 characters, line ending pieces and NUL: what splitting depends on
line_text = st.text(
    st.sampled_from(["a", "b", " ", "\r", "\n", "\x00", "é", "ß", "€", "日", "\U0001d11e", "\U0010ffff"]),
    max_size=12,
)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(line_text, max_size=25),
    st.sampled_from(["\n", "\r\n"]),
    st.booleans(),
    st.integers(min_value=1, max_value=80),
)
def test_random_files_split_anywhere(lines, ending, trailing, split_size):
    data = (ending.join(lines) + (ending if trailing and lines else "")).encode("utf-8")
    if not data:
        return
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "random.txt")
        with open(path, "wb") as f:
            f.write(data)
        check_file(path, data, split_size)
        check_file(path, data, max(1, len(data) - 1))


# -- compressed files ------------------------------------------------------------------------
def zstd_open(path, mode):
    import pyarrow as pa

    return pa.CompressedOutputStream(path, "zstd")


@pytest.mark.parametrize("suffix, opener", [(".gz", gzip.open), (".bz2", bz2.open), (".GZ", gzip.open),
                                            (".zst", zstd_open), (".zstd", zstd_open)])
def test_compressed_file_is_one_split_read_whole(tmp_path, suffix, opener):
    data = ("line one\r\n\nzwei: ünd €\n" + "x" * 3000 + "\nlast").encode() * 20
    path = str(tmp_path / f"data.txt{suffix}")
    with opener(path, "wb") as f:
        f.write(data)
    for size in (1, 7, 100, 10**9):
        splits = make_splits([path], size)
        assert len(splits) == 1
        assert splits[0].compressed and splits[0].start == 0
        # offsets count bytes of the decompressed stream
        assert read_all(splits) == expected_records(path, data)


def test_compressed_and_plain_files_together(tmp_path):
    plain = str(tmp_path / "a.txt")
    packed = str(tmp_path / "b.txt.gz")
    with open(plain, "wb") as f:
        f.write(b"p1\np2\np3\n")
    with gzip.open(packed, "wb") as f:
        f.write(b"g1\ng2\n")
    splits = make_splits([plain, packed], 3)
    assert [s.compressed for s in splits] == [False] * (len(splits) - 1) + [True]
    assert read_all(splits) == expected_records(plain, b"p1\np2\np3\n") + expected_records(packed, b"g1\ng2\n")


# -- empty inputs ----------------------------------------------------------------------------
def test_empty_files_give_no_splits_and_only_empty_files_are_an_error(tmp_path):
    empty1, empty2, full = (str(tmp_path / n) for n in ("e1.txt", "e2.txt", "full.txt"))
    for p in (empty1, empty2):
        open(p, "wb").close()
    with open(full, "wb") as f:
        f.write(b"x\n")
    assert [s.path for s in make_splits([empty1, full, empty2], 64)] == [full]
    with pytest.raises(pymr.InputError):
        make_splits([empty1, empty2], 64)
    with pytest.raises(pymr.InputError):
        make_splits([empty1], 1)


# -- resolve_inputs --------------------------------------------------------------------------
def make_tree(root) -> dict[str, str]:
    files = {
        "a.txt": "a", "b.log": "b", "sub/c.txt": "c", "sub/deeper/d.txt": "d",
        ".hidden.txt": "h", "_SUCCESS": "", "sub/.x": "h", "sub/_x": "h",
        ".git/e.txt": "h", "_temporary/f.txt": "h", "sub/_logs/g.txt": "h",
    }
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return files


def test_resolve_file_is_absolute(tmp_path, monkeypatch):
    (tmp_path / "in.txt").write_text("x\n")
    monkeypatch.chdir(tmp_path)
    assert resolve_inputs(["in.txt"]) == [str(tmp_path / "in.txt")]


def test_resolve_folder_is_recursive_and_skips_hidden(tmp_path):
    make_tree(tmp_path)
    found = resolve_inputs([str(tmp_path)])
    assert found == [str(tmp_path / p) for p in ("a.txt", "b.log", "sub/c.txt", "sub/deeper/d.txt")]
    assert all(os.path.isabs(p) for p in found)


def test_resolve_globs(tmp_path):
    make_tree(tmp_path)
    assert resolve_inputs([str(tmp_path / "*.txt")]) == [str(tmp_path / "a.txt")]
    assert resolve_inputs([str(tmp_path / "sub" / "d*" / "*.txt")]) == [str(tmp_path / "sub/deeper/d.txt")]
    # a glob that matches a folder takes the folder's files, hidden ones skipped
    assert resolve_inputs([str(tmp_path / "su?")]) == [str(tmp_path / p) for p in ("sub/c.txt", "sub/deeper/d.txt")]
    assert resolve_inputs([str(tmp_path / "[ab].*")]) == [str(tmp_path / p) for p in ("a.txt", "b.log")]


def test_resolve_glob_skips_hidden_names_as_a_folder_does(tmp_path):
    # A glob over a previous job's output must not pick up _SUCCESS or a failed
    # attempt's _temporary files, just as reading the folder itself does not
    # (Hadoop filters glob results the same way). Python's glob already drops ".x".
    make_tree(tmp_path)
    assert resolve_inputs([str(tmp_path / "**" / "*.txt")]) == [
        str(tmp_path / p) for p in ("a.txt", "sub/c.txt", "sub/deeper/d.txt")
    ]
    out = tmp_path / "previous_output"
    (out / "_temporary" / "attempt_0").mkdir(parents=True)
    (out / "_temporary" / "attempt_0" / "part-00000").write_text("partial\n")
    (out / "_SUCCESS").write_text("")
    (out / "part-00000").write_text("done\n")
    assert resolve_inputs([str(out / "*")]) == [str(out / "part-00000")]


def test_resolve_several_inputs_without_duplicates(tmp_path):
    make_tree(tmp_path)
    a, c = str(tmp_path / "a.txt"), str(tmp_path / "sub/c.txt")
    assert resolve_inputs([a, str(tmp_path / "sub"), c, str(tmp_path / "*.txt")]) == [
        a, c, str(tmp_path / "sub/deeper/d.txt")
    ]


def test_resolve_missing_path_names_it(tmp_path):
    (tmp_path / "there.txt").write_text("x")
    missing = str(tmp_path / "not-there.txt")
    with pytest.raises(pymr.InputError, match="not-there.txt"):
        resolve_inputs([str(tmp_path / "there.txt"), missing])


def test_resolve_pattern_matching_nothing_names_it(tmp_path):
    pattern = str(tmp_path / "nothing-*.csv")
    with pytest.raises(pymr.InputError) as info:
        resolve_inputs([pattern])
    assert pattern in str(info.value)


def test_resolve_empty_folder_and_no_inputs(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "only_hidden").mkdir()
    (tmp_path / "only_hidden" / "_SUCCESS").write_text("")
    for folder in ("empty", "only_hidden"):
        with pytest.raises(pymr.InputError):
            resolve_inputs([str(tmp_path / folder)])
    with pytest.raises(pymr.InputError):
        resolve_inputs([])


# -- bad records -----------------------------------------------------------------------------
BAD = b"good line\n\xff\xfe bad\nok \xc3\xa9\ntruncated \xe2\x82\nfine\n"


def test_invalid_utf8_raises_bad_record_error_naming_file_and_offset(tmp_path):
    path = str(tmp_path / "bad.txt")
    with open(path, "wb") as f:
        f.write(BAD)
    records = read_text_records(make_splits([path], 1000)[0], False, _no_skip)
    assert next(records) == ((path, 0), "good line")
    with pytest.raises(pymr.BadRecordError) as info:
        next(records)
    message = str(info.value)
    assert path in message
    assert "offset 10" in message


def test_invalid_utf8_in_a_later_split_reports_its_file_offset(tmp_path):
    path = str(tmp_path / "bad.txt")
    with open(path, "wb") as f:
        f.write(BAD)
    splits = make_splits([path], 7)
    assert len(splits) > 3
    with pytest.raises(pymr.BadRecordError, match="offset 23"):
        for split in splits[2:]:
            list(read_text_records(split, False, _no_skip))


def test_skip_bad_records_calls_on_skip_and_goes_on(tmp_path):
    path = str(tmp_path / "bad.txt")
    with open(path, "wb") as f:
        f.write(BAD)
    for size in (1, 5, 13, 1000):
        skipped = []
        records = []
        for split in make_splits([path], size):
            records.extend(read_text_records(split, True, lambda offset, error: skipped.append((offset, error))))
        assert records == [((path, 0), "good line"), ((path, 17), "ok é"), ((path, 36), "fine")]
        assert [offset for offset, _ in skipped] == [10, 23]
        assert all(isinstance(error, UnicodeDecodeError) for _, error in skipped)


# -- parse_size ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, size",
    [
        (1048576, 1048576), ("1048576", 1048576), ("64M", 64 * 2**20), ("512K", 512 * 2**10), ("1G", 2**30),
        ("64MiB", 64 * 2**20), ("64mb", 64 * 2**20), ("512k", 512 * 1024), (" 2 G ", 2 * 2**30), ("1.5G", 3 * 2**29),
        ("1T", 2**40), ("10B", 10), (1, 1),
    ],
)
def test_parse_size_accepts(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["garbage", "", "M", "64X", "64 M B x", "-1", "1e6", "0", "0K", "0.0M", 0, -5, "0.1"])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError):
        parse_size(text)


class _NotRecords(pymr.inputs.InputFormat):
    """A custom format with a bug: its records are not (key, value) pairs."""

    name = "not-records-test"

    def records(self, split, options, on_skip):
        yield ("path", 0), "a fine record"
        yield "a line without its key"


class _CountWords(pymr.Job):
    aggregate = "count"

    def map(self, key, line):
        for word in line.split():
            yield word, 1


class _CountWordsWithCombiner(_CountWords):
    aggregate = None

    def combine(self, key, values):
        yield key, sum(values)

    def reduce(self, key, values):
        yield key, sum(values)


@pytest.mark.parametrize("job", [_CountWords, _CountWordsWithCombiner])
def test_a_custom_format_that_gives_no_records_is_named_not_map(tmp_path, job):
    pymr.inputs.register_input_format(_NotRecords())
    data = tmp_path / "in.txt"
    data.write_text("anything\n")
    with pytest.raises(TypeError, match="input format 'not-records-test' must give \\(key, value\\) records; "
                                        "it gave 'a line without its key'"):
        job.run([f"not-records-test:{data}"], output=str(tmp_path / "out"), inline=True)
    assert not (tmp_path / "out").exists()
