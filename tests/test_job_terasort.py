"""jobs/terasort.py with scripts/teragen.py and scripts/teravalidate.py: sort, then validate."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import JOBS, ROOT, Pymr, read_parts

SCRIPTS = ROOT / "scripts"


def script(name: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPTS / name, *map(str, args)], capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def sorted_records(tmp_path_factory):
    """30,000 generated records sorted by 4 reducers in local mode: (input file, teragen summary, output)."""
    folder = tmp_path_factory.mktemp("terasort")
    records = folder / "records.txt"
    generated = script("teragen.py", records, "--records", "30000", "--seed", "5")
    assert generated.returncode == 0, generated.stderr
    out = folder / "sorted"
    runner = Pymr(folder)
    runner.run("submit", JOBS / "terasort.py", records, "-o", out, "-w", "2", "--split-size", "512K", check=True)
    assert not runner.leftovers()
    return records, json.loads(generated.stdout), out


def copy_output(out, target):
    target.mkdir()
    for part in out.iterdir():
        (target / part.name).write_bytes(part.read_bytes())
    return target


def test_teragen_writes_fixed_size_printable_records(sorted_records):
    records, summary, _ = sorted_records
    data = records.read_bytes()
    assert len(data) == 30000 * 100 == summary["bytes"] and summary["records"] == 30000
    lines = data.split(b"\n")[:-1]
    assert all(len(line) == 99 and b"\t" not in line and line.isascii() for line in lines)
    assert lines[7][10:46] == b"  %032X  " % 7
    again = script("teragen.py", records.with_name("again.txt"), "--size", "3000000", "--seed", "5")
    assert records.with_name("again.txt").read_bytes() == data, "the same seed and size give the same bytes"
    assert json.loads(again.stdout)["checksum"] == summary["checksum"]


def test_output_is_the_input_sorted_by_key_across_parts(sorted_records):
    records, _, out = sorted_records
    parts = read_parts(out)
    assert len(parts) == 4 and all(len(lines) > 4000 for lines in parts), "range partitions are balanced"
    expected = sorted(records.read_text(encoding="ascii").splitlines(), key=lambda r: r[:10])
    assert [line for lines in parts for line in lines] == expected  # the records themselves, nothing added


def test_teravalidate_accepts_the_sorted_output(sorted_records):
    records, summary, out = sorted_records
    against_input = script("teravalidate.py", out, "--input", records)
    assert against_input.returncode == 0, against_input.stderr
    assert json.loads(against_input.stdout) == {"records": 30000, "checksum": summary["checksum"], "parts": 4,
                                                "valid": True, "checked_against_input": True}
    against_summary = script("teravalidate.py", out, "--records", summary["records"], "--checksum", summary["checksum"])
    assert against_summary.returncode == 0, against_summary.stderr


def test_teravalidate_names_the_first_record_out_of_order(sorted_records, tmp_path):
    records, _, out = sorted_records
    swapped = copy_output(out, tmp_path / "swapped")
    lines = (swapped / "part-00002").read_bytes().split(b"\n")
    lines[40], lines[41] = lines[41], lines[40]
    (swapped / "part-00002").write_bytes(b"\n".join(lines))
    result = script("teravalidate.py", swapped, "--input", records)
    assert result.returncode == 1
    assert f"out of order: {swapped / 'part-00002'} line 42: key {lines[41][:10].decode()!r}" in result.stderr

    parts_swapped = copy_output(out, tmp_path / "parts-swapped")
    first, second = parts_swapped / "part-00000", parts_swapped / "part-00001"
    first_bytes = first.read_bytes()
    first.write_bytes(second.read_bytes())
    second.write_bytes(first_bytes)
    result = script("teravalidate.py", parts_swapped, "--input", records)
    assert result.returncode == 1 and f"{second} line 1:" in result.stderr  # order holds across part files


def test_teravalidate_catches_a_missing_or_changed_record(sorted_records, tmp_path):
    records, _, out = sorted_records
    missing = copy_output(out, tmp_path / "missing")
    lines = (missing / "part-00001").read_bytes().split(b"\n")
    del lines[100]
    (missing / "part-00001").write_bytes(b"\n".join(lines))
    result = script("teravalidate.py", missing, "--input", records)
    assert result.returncode == 1
    assert "the output holds 29999 records, the input 30000 (1 missing)" in result.stderr

    changed = copy_output(out, tmp_path / "changed")
    data = (changed / "part-00003").read_bytes()
    (changed / "part-00003").write_bytes(data[:50] + b"#" + data[51:])  # payload only: order still holds
    result = script("teravalidate.py", changed, "--input", records)
    assert result.returncode == 1 and "checksum" in result.stderr


def test_teravalidate_reads_the_key_tab_payload_form(tmp_path):
    out = tmp_path / "tabbed"
    out.mkdir()
    (out / "part-00000").write_text("aaaaaaaaaa\tpayload one\nbbbbbbbbbb\tpayload two\n")
    plain = tmp_path / "records.txt"
    plain.write_text("bbbbbbbbbbpayload two\r\naaaaaaaaaapayload one\r\n")
    result = script("teravalidate.py", out, "--input", plain)
    assert result.returncode == 0, result.stderr
    assert script("teravalidate.py", tmp_path / "nowhere").returncode == 2
