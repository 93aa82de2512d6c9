"""A file name that is not UTF-8, as a key: text output writes its own bytes back, JSON
lines and Parquet escape it (``\\udcXX``) so that it reads back as the same str."""

from __future__ import annotations

import json
import os

import pytest
from conftest import TEST_JOBS

from pymr.parquet_output import read_parquet_pairs

LATIN1_NAME = b"caf\xe9.txt"  # "café.txt" in Latin-1: not UTF-8


@pytest.fixture
def folder(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    with open(os.path.join(os.fsencode(folder), LATIN1_NAME), "wb") as f:
        f.write(b"one\ntwo\n")
    (folder / "plain.txt").write_text("three\n")
    return folder


@pytest.mark.parametrize("output_format", ["text", "jsonl", "parquet"])
def test_a_name_that_is_not_utf8_is_written_as_a_key(pymr, folder, tmp_path, output_format):
    output = tmp_path / "out"
    pymr.run("submit", TEST_JOBS / "file_names.py", folder, "-o", output, "--output-format", output_format,
             "--workers", "2", "-q", check=True)
    if output_format == "text":
        assert (output / "part-00000").read_bytes() == LATIN1_NAME + b"\t2\nplain.txt\t1\n"
        return
    if output_format == "jsonl":
        text = (output / "part-00000").read_text(encoding="utf-8")  # valid UTF-8: the name is escaped
        assert text == '["caf\\udce9.txt", 2]\n["plain.txt", 1]\n'
        pairs = [tuple(json.loads(line)) for line in text.splitlines()]
    else:
        pairs = list(read_parquet_pairs(str(output)))
    assert pairs == [(os.fsdecode(LATIN1_NAME), 2), ("plain.txt", 1)]
    assert os.fsencode(pairs[0][0]) == LATIN1_NAME  # the name opens the file
