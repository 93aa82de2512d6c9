"""Key files, listen addresses and log lines (issue 12, items 4, 6, 7, 11): each mistake a user
can make gives one clear line and exit 2, never a traceback, and nothing listens wider than asked."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
import time

import pytest
import zmq

from cluster import ROOT, free_port
from conftest import JOBS, stop_processes, text_pairs

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (coordinator|worker|client)\[\d+\] "
                      r"(DEBUG|INFO|WARNING|ERROR|CRITICAL) pymr\.")


def pymr(*args, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pymr", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout, stdin=subprocess.DEVNULL)


def assert_clear_error(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.splitlines()[-1].startswith("pymr: error: "), done.stderr
    for word in words:
        assert word in done.stderr, done.stderr


@pytest.fixture
def key(tmp_path):
    path = tmp_path / "cluster.key"
    assert pymr("keygen", path).returncode == 0
    return path


def edited_key(key, tmp_path, **fields):
    data = json.loads(key.read_text())
    data.update(fields)
    path = tmp_path / "edited.key"
    path.write_text(json.dumps(data))
    path.chmod(0o600)
    return path


def test_a_key_that_is_not_z85_is_refused_clearly(key, tmp_path):
    bad = edited_key(key, tmp_path, secret="~" * 40)
    assert_clear_error(pymr("coordinator", "--secret-file", bad), str(bad), "secret key is not 40 Z85 characters")
    bad = edited_key(key, tmp_path, public="~" * 40)
    assert_clear_error(pymr("worker", "--coordinator", "tcp://127.0.0.1:1", "--secret-file", bad),
                       "public key is not 40 Z85 characters")


def test_a_public_key_that_is_not_the_secret_keys_pair_is_refused_at_load(key, tmp_path):
    other_public = zmq.curve_keypair()[0].decode()
    bad = edited_key(key, tmp_path, public=other_public)
    assert_clear_error(pymr("coordinator", "--secret-file", bad), str(bad), "not the pair of its secret key")


def test_keygen_into_a_missing_folder(tmp_path):
    assert_clear_error(pymr("keygen", tmp_path / "no" / "such" / "k"), "folder", "does not exist")


def test_keygen_force_replaces_a_symlink_not_its_target(tmp_path):
    target = tmp_path / "someone-elses-file"
    target.write_text("precious\n")
    link = tmp_path / "cluster.key"
    link.symlink_to(target)
    assert_clear_error(pymr("keygen", link), "already exists")
    done = pymr("keygen", "--force", link)
    assert done.returncode == 0, done.stderr
    assert target.read_text() == "precious\n"
    assert not link.is_symlink()
    assert stat.S_IMODE(link.stat().st_mode) == 0o600
    key = json.loads(link.read_text())
    assert zmq.curve_public(key["secret"].encode()).decode() == key["public"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".pymr-key")] == []


def test_coordinator_bind_mistakes_are_one_line_and_exit_2(key):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert_clear_error(pymr("coordinator", "--bind", f"tcp://127.0.0.1:{port}", "--secret-file", key),
                           "port is in use")
    assert_clear_error(pymr("coordinator", "--bind", "tcp://no-such-host.invalid:5555", "--secret-file", key),
                       "cannot listen on tcp://no-such-host.invalid:5555", "unknown name")
    assert_clear_error(pymr("coordinator", "--bind", "tcp://127.0.0.1:70000", "--secret-file", key),
                       "over 65535")


def test_worker_address_mistakes_are_one_line_and_exit_2(key, tmp_path):
    """An advertised address that is not this machine's is refused, not served on 0.0.0.0 instead."""
    assert_clear_error(pymr("worker", "--coordinator", "tcp://127.0.0.1:9", "--secret-file", key,
                            "--host", "192.0.2.1", "--data-dir", tmp_path / "d1"),  # TEST-NET-1: nobody's
                       "cannot listen on tcp://192.0.2.1:*", "not an address of this machine")
    assert_clear_error(pymr("worker", "--coordinator", "coordinator-host:5555", "--secret-file", key,
                            "--data-dir", tmp_path / "d2"), "cannot connect to coordinator-host:5555")


def listening(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.settimeout(2)
        return probe.connect_ex((host, port)) == 0


def read_until(stream, pattern: str, timeout_s: float = 30) -> re.Match:
    deadline = time.monotonic() + timeout_s
    seen = ""
    while time.monotonic() < deadline:
        line = stream.readline()
        seen += line
        match = re.search(pattern, line)
        if match:
            return match
    raise AssertionError(f"{pattern!r} not in:\n{seen}")


def test_ipv6_loopback_without_a_secret_listens_on_ipv6_loopback_only(tmp_path):
    """Coordinator and worker on [::1]; the shuffle server is on ::1 and nowhere else; a job runs.
    Every log line of the coordinator carries an ISO time and its role."""
    if not socket.has_ipv6 or not listening_possible_on_ipv6():
        pytest.skip("no IPv6 loopback here")
    address = f"tcp://[::1]:{free_port()}"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    processes = []
    try:
        coordinator = subprocess.Popen([sys.executable, "-m", "pymr", "-v", "coordinator", "--bind", address],
                                       cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        processes.append(coordinator)
        read_until(coordinator.stderr, r"listening on tcp://\[::1\]")
        worker = subprocess.Popen([sys.executable, "-m", "pymr", "worker", "--coordinator", address, "--host", "::1",
                                   "--data-dir", tmp_path / "data"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
        processes.append(worker)
        port = int(read_until(worker.stderr, r"served at tcp://\[::1\]:(\d+)").group(1))
        assert listening("::1", port)
        assert not listening("127.0.0.1", port), "the shuffle server listens on IPv4 too (0.0.0.0?)"

        words = tmp_path / "words.txt"
        words.write_text("un deux\ndeux\n")
        done = pymr("submit", JOBS / "wordcount.py", words, "-o", tmp_path / "out", "--coordinator", address, "-q",
                    timeout=120)
        assert done.returncode == 0, done.stderr
        assert text_pairs(tmp_path / "out") == {"un": "1", "deux": "2"}
    finally:
        stop_processes(processes)
    log_lines = [line for line in coordinator.stderr.read().splitlines() if not line.startswith("pymr coordinator")]
    assert any("worker" in line and "joined" in line for line in log_lines), log_lines
    for line in log_lines:
        assert LOG_LINE.match(line) and line.split(" ", 2)[1].startswith("coordinator["), line


def listening_possible_on_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_log_lines_of_a_local_run_carry_time_and_role(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("a b a\n")
    done = pymr("-v", "submit", JOBS / "wordcount.py", words, "-o", tmp_path / "out", "-w", "1", "-q", timeout=120)
    assert done.returncode == 0, done.stderr
    log_lines = [line for line in done.stderr.splitlines() if " pymr." in line]
    assert log_lines, done.stderr
    for line in log_lines:
        assert LOG_LINE.match(line) and " client[" in line, line
