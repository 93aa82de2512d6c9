"""Inputs and outputs by URI (pymr/storage.py), end to end against a real S3 server on loopback.

A session fixture starts ``moto.server`` as a process on 127.0.0.1, creates an IAM user
with an access key, then turns moto's request authentication on: from then on every
request must be signed with that key, as on S3, so wrong credentials are refused for
real. Jobs run through ``python -m pymr submit`` (real worker processes, or ``--inline``)
and through the Python API, and their output is compared with the same job run on
local files. Nothing of pymr is mocked; the tests read and write S3 with pyarrow's own
client.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.feather as feather
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from conftest import (JOBS, ROOT, SAMPLE, TEST_JOBS, read_parts, reference_word_counts, stop_processes,
                      text_pairs)

from pymr import load_job_class, storage
from pymr.errors import StorageError
from pymr.inputs import input_format, plan_splits, resolve_inputs
from pymr.outputs import PAIRS, RemoteCommitter, open_part_writer

boto3 = pytest.importorskip("boto3", reason="the test extra (moto[server]) brings boto3")
pytest.importorskip("moto", reason="needs the test extra: pip install '.[test]'")

BUCKET = "pymr-test"
BOOKS = [SAMPLE / name for name in ("copyright-does-not-exist.txt", "python-tutorial.txt",
                                   "us-declaration-and-constitution.txt")]  # 800 KB: a few seconds of word count
AWS_ENVIRONMENT = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION",
                   "AWS_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_CONFIG_FILE",
                   "AWS_SHARED_CREDENTIALS_FILE")


class S3Server:
    """The session's moto server: its endpoint, the test user's key, and a pyarrow client."""

    def __init__(self, port: int, key_id: str, secret: str):
        self.endpoint = f"127.0.0.1:{port}"
        self.key_id, self.secret = key_id, secret
        self.fs = pafs.S3FileSystem(endpoint_override=self.endpoint, scheme="http", access_key=key_id,
                                    secret_key=secret, region="us-east-1", allow_bucket_creation=True)

    def uri(self, key: str) -> str:
        """``s3://BUCKET/key`` with the endpoint in its query, as a user may give it."""
        return f"s3://{BUCKET}/{key}?endpoint_override={self.endpoint}&scheme=http"

    def put(self, key: str, data: bytes) -> None:
        with self.fs.open_output_stream(f"{BUCKET}/{key}", compression=None) as stream:
            stream.write(data)

    def read(self, key: str) -> bytes:
        with self.fs.open_input_stream(f"{BUCKET}/{key}", compression=None) as stream:
            return stream.read()

    def upload(self, local: Path, key: str) -> None:
        pafs.copy_files(str(local), f"{BUCKET}/{key}", destination_filesystem=self.fs)

    def names(self, key: str) -> list[str]:
        """Every object below ``key``, relative to it."""
        selector = pafs.FileSelector(f"{BUCKET}/{key}", recursive=True, allow_not_found=True)
        return sorted(info.path[len(f"{BUCKET}/{key}/"):] for info in self.fs.get_file_info(selector)
                      if info.type == pafs.FileType.File)

    def text_pairs(self, key: str) -> dict[str, str]:
        pairs = {}
        for name in self.names(key):
            if name.startswith("part-"):
                for line in self.read(f"{key}/{name}").decode().splitlines():
                    word, _, count = line.partition("\t")
                    pairs[word] = count
        return pairs


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """A moto S3 server on a free loopback port for the whole session, stopped at its end.

    The test user's key is put in this process's environment (so ``pymr`` subprocesses and
    their workers inherit it); the endpoint is not, so each test says how it reaches it.
    """
    log_path = tmp_path_factory.mktemp("moto") / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    saved = {name: os.environ.get(name) for name in AWS_ENVIRONMENT}
    try:
        port = _wait_for_port(process, log_path)
        key_id, secret = _make_user(port)
        _require_signed_requests(port)
        server = S3Server(port, key_id, secret)
        server.fs.create_dir(BUCKET)
        for name in AWS_ENVIRONMENT:
            os.environ.pop(name, None)
        os.environ.update(AWS_ACCESS_KEY_ID=key_id, AWS_SECRET_ACCESS_KEY=secret, AWS_DEFAULT_REGION="us-east-1",
                          AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
        yield server
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        stop_processes([process])


def _wait_for_port(process: subprocess.Popen, log_path: Path, timeout_s: float = 30.0) -> int:
    """The port the server bound (it prints it), once it answers HTTP."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto.server exited with {process.returncode}:\n{log_path.read_text()}")
        found = re.search(r"Running on http://127\.0\.0\.1:(\d+)", log_path.read_text(errors="replace"))
        if found:
            port = int(found.group(1))
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/data.json", timeout=2).read()
                return port
            except OSError:
                pass
        time.sleep(0.1)
    raise RuntimeError(f"moto.server did not start within {timeout_s:g} s:\n{log_path.read_text()}")


def _make_user(port: int) -> tuple[str, str]:
    """An IAM user allowed everything, and its access key (made before auth is on)."""
    iam = boto3.client("iam", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                       aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
    iam.create_user(UserName="pymr")
    iam.put_user_policy(UserName="pymr", PolicyName="everything", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="pymr")["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def _require_signed_requests(port: int) -> None:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/moto-api/reset-auth", data=b"0", method="POST",
                                     headers={"Content-Type": "text/plain"})
    urllib.request.urlopen(request, timeout=10).read()


@pytest.fixture(scope="session")
def books(tmp_path_factory) -> Path:
    """A folder of three of the sample books."""
    folder = tmp_path_factory.mktemp("books")
    for book in BOOKS:
        (folder / book.name).write_bytes(book.read_bytes())
    return folder


@pytest.fixture(scope="session")
def s3_books(s3, books) -> str:
    """The same books on S3, uploaded once: their key prefix."""
    s3.upload(books, "shared/books")
    return "shared/books"


@pytest.fixture
def key() -> str:
    """A fresh key prefix for one test."""
    return f"t-{uuid.uuid4().hex[:10]}"


def word_counts(pairs: dict[str, str]) -> dict[str, int]:
    return {word: int(count) for word, count in pairs.items()}


# -- jobs end to end ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", [["--workers", "2"], ["--inline"]], ids=["local", "inline"])
def test_s3_text_input_to_local_output(pymr, s3, s3_books, tmp_path, mode):
    out = tmp_path / "wc"
    pymr.run("submit", JOBS / "wordcount.py", s3.uri(s3_books), "-o", out, "--reducers", "3",
             "--split-size", "200K", *mode, check=True)
    assert sorted(p.name for p in out.iterdir()) == ["_REPORT.json", "_SUCCESS", "part-00000", "part-00001",
                                                     "part-00002"]
    assert word_counts(text_pairs(out)) == dict(reference_word_counts(BOOKS))
    assert json.loads((out / "_REPORT.json").read_text())["map_tasks"] > len(BOOKS)  # the big books are cut


def test_local_input_to_s3_output_with_the_endpoint_in_the_environment(pymr, s3, books, key):
    pymr.env["AWS_ENDPOINT_URL"] = f"http://{s3.endpoint}"  # workers inherit it; the URI is plain
    out = f"s3://{BUCKET}/{key}/wc"
    result = pymr.run("submit", JOBS / "wordcount.py", books, "-o", out, "-w", "2", "-r", "3", check=True)
    assert s3.names(f"{key}/wc") == ["_REPORT.json", "_SUCCESS", "part-00000", "part-00001", "part-00002"]
    assert word_counts(s3.text_pairs(f"{key}/wc")) == dict(reference_word_counts(BOOKS))
    assert json.loads(s3.read(f"{key}/wc/_REPORT.json"))["output"] == out
    assert f"-> {out}" in result.stderr


def test_s3_jsonl_input_to_s3_parquet_output(pymr, s3, key, tmp_path):
    events = (ROOT / "sample_data" / "events" / "events.jsonl").read_bytes().splitlines(keepends=True)
    s3.put(f"{key}/in/a.jsonl", b"".join(events[: len(events) // 2]))
    s3.put(f"{key}/in/more/b.jsonl", b"".join(events[len(events) // 2:]))
    s3.put(f"{key}/in/_ignored.jsonl", b"not json\n")
    pymr.run("submit", JOBS / "distinct_values.py", s3.uri(f"{key}/in"), "-o", s3.uri(f"{key}/out"),
             "--field", "kind", "--output-format", "parquet", "-w", "2", "-r", "4", "--split-size", "32K", check=True)
    assert s3.names(f"{key}/out") == ["_REPORT.json", "_SUCCESS"] + [f"part-0000{i}.parquet" for i in range(4)]

    job = load_job_class(str(JOBS / "distinct_values.py"))
    local = job.run([str(ROOT / "sample_data" / "events")], output=str(tmp_path / "local"), inline=True,
                    options={"field": "kind"}, output_format="parquet", reducers=4)
    expected = sorted(local, key=repr)
    # one dataset, as any Parquet reader sees it (the parts agree on one schema)
    table = ds.dataset(f"{BUCKET}/{key}/out", filesystem=s3.fs, format="parquet").to_table()
    assert sorted(zip(table.column("key").to_pylist(), table.column("value").to_pylist()), key=repr) == expected
    # and inline, S3 to S3, read back through the job's result
    inline = job.run([s3.uri(f"{key}/in")], output=s3.uri(f"{key}/inline"), inline=True,
                     options={"field": "kind"}, output_format="parquet", reducers=4)
    assert inline.output_dir == f"s3://{BUCKET}/{key}/inline"
    assert sorted(inline, key=repr) == expected


def test_parquet_parts_on_s3_are_unified_to_one_schema(s3, key, tmp_path):
    (tmp_path / "words.txt").write_text("to be or not to be\n")
    wordcount = load_job_class(str(JOBS / "wordcount.py"))
    wordcount.run([str(tmp_path / "words.txt")], output=s3.uri(f"{key}/out"), inline=True, reducers=6,
                  output_format="parquet")  # 4 words in 6 parts: the empty parts are widened
    schemas = {str(pq.read_schema(f"{BUCKET}/{key}/out/{name}", filesystem=s3.fs))
               for name in s3.names(f"{key}/out") if name.endswith(".parquet")}
    assert len(schemas) == 1
    table = ds.dataset(f"{BUCKET}/{key}/out", filesystem=s3.fs, format="parquet").to_table()
    assert table.schema.field("value").type == pa.int64()
    assert sorted(zip(*table.to_pydict().values())) == [("be", 2), ("not", 1), ("or", 1), ("to", 2)]


def test_a_prefix_of_many_files_cut_in_many_splits_gives_exactly_the_local_output(s3, s3_books, books, tmp_path):
    wordcount = load_job_class(str(JOBS / "wordcount.py"))
    settings = dict(reducers=3, split_size="32K", output_format="text")
    remote = wordcount.run([s3.uri(s3_books)], output=str(tmp_path / "remote"), workers=2, **settings)
    local = wordcount.run([str(books)], output=str(tmp_path / "local"), inline=True, **settings)
    assert remote.report["map_tasks"] == local.report["map_tasks"] > 3 * len(BOOKS)
    assert read_parts(tmp_path / "remote") == read_parts(tmp_path / "local")


def test_what_a_task_reads_from_an_object_store_counts_toward_its_progress(s3, s3_books):
    """A running map reports the bytes its process has read; the kernel's count of them
    sees no socket reads, so storage counts a remote file's bytes itself."""
    from pymr.executor import bytes_read

    book = BOOKS[1]
    uri = storage.normalize(s3.uri(f"{s3_books}/{book.name}"))
    before, process_before = storage.remote_bytes_read, bytes_read()
    with storage.open_input(uri, buffering=64 * 1024) as f:
        assert f.read(1000) == book.read_bytes()[:1000]
        assert 1000 <= storage.remote_bytes_read - before <= 64 * 1024  # a buffer's worth at most
        f.seek(0)
        assert f.read() == book.read_bytes()
    read = storage.remote_bytes_read - before
    assert book.stat().st_size <= read <= book.stat().st_size + 64 * 1024
    assert bytes_read() - process_before >= book.stat().st_size


@pytest.mark.parametrize("mode", [["--workers", "2", "--max-attempts", "2"], ["--inline"]], ids=["local", "inline"])
def test_a_failed_job_leaves_no_success_and_no_part_files_on_s3(pymr, s3, key, mode):
    s3.put(f"{key}/in/words.txt", b"alpha beta gamma delta\n" * 200 + b"FAIL\n")
    result = pymr.run("submit", TEST_JOBS / "failing_reduce.py", s3.uri(f"{key}/in"), "-o", s3.uri(f"{key}/out"),
                      "-r", "3", *mode)
    assert result.returncode == 1, result.stderr
    assert "reduce cannot handle FAIL" in result.stderr
    assert s3.names(key) == ["in/words.txt"]  # no part file, no _SUCCESS, no _temporary


def test_an_object_store_task_commit_makes_no_final_name(s3, key):
    output = storage.normalize(s3.uri(f"{key}/out"))
    committer = RemoteCommitter(output, "job_1")
    committer.setup(overwrite=False)
    assert not committer.renames
    for attempt, part in [("a-1", "part-00000"), ("a-2", "part-00001"), ("b-2", "part-00001")]:
        storage.write_bytes(storage.join(committer.attempt_dir(attempt), part), f"{attempt}\n".encode())
    committer.commit_task("a-1", ["part-00000"])
    committer.commit_task("b-2", ["part-00001"])
    committer.discard_attempt("a-2")
    assert s3.names(f"{key}/out") == ["_temporary/job_1/a-1/part-00000", "_temporary/job_1/b-2/part-00001"]
    committer.commit_job({"state": "succeeded"})
    assert s3.names(f"{key}/out") == ["_REPORT.json", "_SUCCESS", "part-00000", "part-00001"]
    assert s3.read(f"{key}/out/part-00001") == b"b-2\n"


def test_a_failed_object_store_job_commit_removes_what_it_copied(s3, key):
    committer = RemoteCommitter(storage.normalize(s3.uri(f"{key}/out")), "job_2")
    committer.setup(overwrite=False)
    for index in range(4):
        attempt, part = f"a-{index}", f"part-0000{index}"
        storage.write_bytes(storage.join(committer.attempt_dir(attempt), part), b"x\n")
        committer.commit_task(attempt, [part])
    s3.fs.delete_file(f"{BUCKET}/{key}/out/_temporary/job_2/a-2/part-00002")  # lost: its copy fails
    with pytest.raises(StorageError, match=rf"cannot read s3://{BUCKET}/{key}/out/_temporary/job_2/a-2/part-00002"):
        committer.commit_job({"state": "succeeded"})
    committer.abort_job()
    assert s3.names(f"{key}/out") == []


def test_map_only_output_and_step_pairs_on_s3(s3, key):
    grep = load_job_class(str(JOBS / "grep.py"))
    book = SAMPLE / "us-declaration-and-constitution.txt"
    result = grep.run([str(book)], output=s3.uri(f"{key}/grep"), inline=True, options={"pattern": "Congress"})
    expected = [line for line in book.read_text().splitlines() if "Congress" in line]
    assert sorted(line for lines in (s3.read(f"{key}/grep/{name}").decode().splitlines()
                                     for name in s3.names(f"{key}/grep") if name.startswith("part-"))
                  for line in lines) == sorted(expected)
    assert len(list(result)) == len(expected) > 5
    # the Arrow pairs that feed one step into the next, written and read on S3
    writer = open_part_writer(storage.normalize(s3.uri(f"{key}/pairs")), 0, PAIRS)
    for pair in [(("a", 1), {"x": [1.5]}), (None, b"\x00")]:
        writer.write(*pair)
    writer.close()
    splits = plan_splits([f"pairs:{s3.uri(f'{key}/pairs')}"], 1000)
    assert [pair for split in splits for pair in input_format("pairs").records(split, {}, None)] == \
        [(("a", 1), {"x": [1.5]}), (None, b"\x00")]


def test_a_file_bigger_than_a_server_side_copy_is_streamed(s3, key, monkeypatch):
    monkeypatch.setattr(storage, "SERVER_COPY_MAX_BYTES", 0)
    wordcount = load_job_class(str(JOBS / "wordcount.py"))
    result = wordcount.run([str(SAMPLE / "python-tutorial.txt")], output=s3.uri(f"{key}/out"), inline=True,
                           reducers=2, output_format="jsonl")
    assert dict(result) == dict(reference_word_counts([SAMPLE / "python-tutorial.txt"]))


def test_overwrite_replaces_s3_output_and_without_it_existing_output_is_refused(pymr, s3, key):
    args = ("submit", JOBS / "wordcount.py", SAMPLE / "python-tutorial.txt", "-o", s3.uri(f"{key}/out"), "-r", "2")
    pymr.run(*args, "--inline", check=True)
    s3.put(f"{key}/out/stale.txt", b"old")
    refused = pymr.run(*args, "--inline")
    assert refused.returncode == 2
    assert f"output folder already exists: s3://{BUCKET}/{key}/out (use --overwrite" in refused.stderr
    assert s3.read(f"{key}/out/stale.txt") == b"old"
    pymr.run(*args, "--inline", "--overwrite", check=True)
    assert s3.names(f"{key}/out") == ["_REPORT.json", "_SUCCESS", "part-00000", "part-00001"]


def test_a_failed_overwrite_leaves_the_old_s3_output_as_it_was(pymr, s3, key):
    s3.put(f"{key}/in/words.txt", b"alpha beta gamma delta\n" * 200 + b"FAIL\n")
    s3.put(f"{key}/ok/words.txt", b"alpha beta\n")
    out = s3.uri(f"{key}/out")
    pymr.run("submit", TEST_JOBS / "failing_reduce.py", s3.uri(f"{key}/ok"), "-o", out, "-r", "2", "--inline",
             check=True)
    before = {name: s3.read(f"{key}/out/{name}") for name in s3.names(f"{key}/out")}
    assert "_SUCCESS" in before and "part-00001" in before
    failed = pymr.run("submit", TEST_JOBS / "failing_reduce.py", s3.uri(f"{key}/in"), "-o", out, "-r", "3",
                      "--overwrite", "--inline")
    assert failed.returncode == 1 and "reduce cannot handle FAIL" in failed.stderr
    assert {name: s3.read(f"{key}/out/{name}") for name in s3.names(f"{key}/out")} == before


# -- errors ---------------------------------------------------------------------------------------
def test_a_missing_input_uri_is_a_clear_error(pymr, s3, key, tmp_path):
    result = pymr.run("submit", JOBS / "wordcount.py", s3.uri(f"{key}/not-there"), "-o", tmp_path / "out", "-w", "1")
    assert result.returncode == 2
    assert f"pymr: error: input path does not exist: s3://{BUCKET}/{key}/not-there\n" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


def test_a_missing_bucket_is_a_clear_error(pymr, s3, tmp_path):
    endpoint = f"?endpoint_override={s3.endpoint}&scheme=http"
    result = pymr.run("submit", JOBS / "wordcount.py", f"s3://no-such-bucket/in{endpoint}", "-o", tmp_path / "out",
                      "--inline")
    assert result.returncode == 2
    assert "input path does not exist: s3://no-such-bucket/in (its bucket does not exist)" in result.stderr
    result = pymr.run("submit", JOBS / "wordcount.py", SAMPLE, "-o", f"s3://no-such-bucket/out{endpoint}", "--inline")
    assert result.returncode == 2
    assert "cannot write s3://no-such-bucket/out: the bucket 'no-such-bucket' does not exist" in result.stderr


def test_wrong_credentials_are_a_clear_error(pymr, s3, s3_books, tmp_path):
    pymr.env["AWS_SECRET_ACCESS_KEY"] = "not-the-secret"
    result = pymr.run("submit", JOBS / "wordcount.py", s3.uri(s3_books), "-o", tmp_path / "out", "-w", "1")
    assert result.returncode == 2  # the coordinator refused the job, and said why
    assert f"pymr: error: cannot read s3://{BUCKET}/{s3_books}: access denied: check the credentials" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow  # pyarrow retries the connection for 6 s
def test_an_unreachable_endpoint_is_a_clear_error(tmp_path):
    with pytest.raises(StorageError, match=r"cannot (read|use) s3://somewhere/in: cannot reach the storage service"):
        resolve_inputs(["s3://somewhere/in?endpoint_override=127.0.0.1:1&scheme=http"])


# -- inputs on S3 -----------------------------------------------------------------------------------
def test_s3_folders_and_globs_pick_the_files_local_ones_do(s3, key, tmp_path):
    tree = ["a.txt", "b.log", "_SUCCESS", ".hidden.txt", "sub/c.txt", "sub/_tmp/d.txt", "sub/deeper/e.txt",
            "sub0.txt", "z.txt", "zz/.x/f.txt"]
    for name in tree:
        (tmp_path / "tree" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "tree" / name).write_text(name)
        s3.put(f"{key}/tree/{name}", name.encode())
    local_root, remote_root = tmp_path / "tree", f"s3://{BUCKET}/{key}/tree"
    for pattern in ["", "/sub", "/sub/c.txt", "/*.txt", "/sub*", "/**/*.txt", "/s*/*"]:
        local = [os.path.relpath(p, local_root) for p in resolve_inputs([f"{local_root}{pattern}"])]
        remote = resolve_inputs([s3.uri(f"{key}/tree{pattern}")])
        assert [uri[len(remote_root) + 1:] for uri in remote] == local, pattern
        assert all(uri.startswith(remote_root) and "?" not in uri for uri in remote)


def test_s3_splits_read_the_records_that_local_splits_read(s3, key, tmp_path):
    files = {"orders.csv": (ROOT / "sample_data" / "shop" / "orders.csv").read_bytes(),
             "events.jsonl": b"".join((ROOT / "sample_data" / "events" / "events.jsonl").open("rb").readlines()[:400]),
             "lines.txt.gz": gzip.compress(b"one\r\ntwo\nthree" * 100),
             "quoted.csv": b'id,text\n1,"a\nb"\n2,"c,""d"""\n' * 400}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    table = pa.table({"n": list(range(5000)), "s": [str(i) for i in range(5000)]})
    pq.write_table(table, tmp_path / "rows.parquet", row_group_size=700)
    feather.write_feather(table, tmp_path / "rows.arrow", chunksize=900)
    for path in sorted(tmp_path.iterdir()):
        if path.is_file():
            s3.put(f"{key}/{path.name}", path.read_bytes())
            for split_size in [3000, 10**6]:
                local = plan_splits([str(path)], split_size)
                remote = plan_splits([s3.uri(f"{key}/{path.name}")], split_size)
                assert [(s.start, s.end, s.format, s.compressed, s.state) for s in remote] == \
                    [(s.start, s.end, s.format, s.compressed, s.state) for s in local], path.name
                assert _records(remote) == _records(local), (path.name, split_size)


def _records(splits) -> list:
    """Every record of the splits, keyed by offset or row (the path differs)."""
    records = []
    for split in splits:
        for record_key, value in input_format(split.format).records(split, {}, None):
            records.append((record_key[1], value))
    return records


def test_file_uris_are_local_paths(pymr, tmp_path):
    out, book = tmp_path / "out", SAMPLE / "us-declaration-and-constitution.txt"
    pymr.run("submit", JOBS / "wordcount.py", book.as_uri(), "-o", out.as_uri(), "--inline", "-r", "2", check=True)
    assert word_counts(text_pairs(out)) == dict(reference_word_counts([book]))
    assert json.loads((out / "_REPORT.json").read_text())["output"] == str(out)


def test_normalize_takes_the_query_off_and_keeps_it_for_the_bucket():
    assert storage.normalize("file:///data/books/") == "/data/books"
    assert storage.normalize("s3://bucket-n/in/?endpoint_override=h:9000&scheme=http") == "s3://bucket-n/in"
    assert storage.options_for(["s3://bucket-n/other", "/local"]) == {
        "s3://bucket-n": "endpoint_override=h:9000&scheme=http"}
    assert storage.display("s3://key:secret@bucket-n/in?secret_key=x") == "s3://***@bucket-n/in"
    assert not storage.is_remote("file:///x") and storage.is_remote("gs://b/x") and not storage.is_remote("/a/b")


@pytest.mark.parametrize("mode", [["--workers", "2"], ["--inline"]], ids=["local", "inline"])
def test_multi_step_job_with_a_repeated_step_writes_to_s3(pymr, s3, key, tmp_path, mode):
    """Steps and rounds keep their scratch output beside the job's, on S3, and remove it."""
    numbers = tmp_path / "numbers.txt"
    numbers.write_text("a 1000\nb 5\nc 1\nd 64\n")
    out = f"{key}/halved"
    pymr.run("submit", TEST_JOBS / "halve_until_small.py", numbers, "-o", s3.uri(out), "--then-sum", *mode,
             check=True)
    assert s3.names(out) == ["_REPORT.json", "_SUCCESS", "part-00000"]
    assert s3.read(f"{out}/part-00000").decode() == "total\t4\n"
    rounds = [s.get("round") for s in json.loads(s3.read(f"{out}/_REPORT.json"))["steps"] if s["step"] == 2]
    assert rounds == list(range(1, 10))
    assert not [info.path for info in s3.fs.get_file_info(pafs.FileSelector(f"{BUCKET}/{key}", recursive=True))
                if ".pymr-steps-" in info.path], "the steps' scratch output must be removed"
