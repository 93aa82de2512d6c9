"""Shared helpers: run pymr as a real command, read output folders, find leftover processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
JOBS = ROOT / "jobs"
TEST_JOBS = Path(__file__).resolve().parent / "jobs"
SAMPLE = ROOT / "sample_data" / "books"


def processes_mentioning(text: str) -> list[tuple[int, str]]:
    """Live processes whose command line contains ``text``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append((int(entry), cmdline))
    return found


class Pymr:
    """Runs ``python -m pymr`` with its own TMPDIR, so anything it leaves running can be found."""

    def __init__(self, tmp_path: Path):
        self.tmpdir = tmp_path / "pymr-tmp"
        self.tmpdir.mkdir()
        self.env = dict(os.environ, TMPDIR=str(self.tmpdir), PYTHONUNBUFFERED="1")

    def run(self, *args: str, timeout: float = 120, check: bool = False, **kwargs) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "pymr", *map(str, args)], capture_output=True, text=True,
                                env=self.env, timeout=timeout, cwd=ROOT, **kwargs)
        if check and result.returncode != 0:
            raise AssertionError(f"pymr {' '.join(map(str, args))} exited {result.returncode}:\n{result.stderr}")
        return result

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "pymr", *map(str, args)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=self.env, cwd=ROOT)

    def leftovers(self) -> list[tuple[int, str]]:
        return processes_mentioning(str(self.tmpdir))


@pytest.fixture
def pymr(tmp_path):
    runner = Pymr(tmp_path)
    yield runner
    left = runner.leftovers()
    for pid, _ in left:
        try:
            os.kill(pid, 9)
        except OSError:
            pass
    assert not left, f"processes left running: {left}"


def read_parts(folder: Path) -> list[list[str]]:
    """Lines of each part file, in part order."""
    parts = sorted(p for p in folder.iterdir() if p.name.startswith("part-"))
    return [p.read_text(encoding="utf-8").splitlines() for p in parts]


def text_pairs(folder: Path) -> dict[str, str]:
    pairs = {}
    for lines in read_parts(folder):
        for line in lines:
            key, _, value = line.partition("\t")
            assert key not in pairs, f"key {key!r} in two places"
            pairs[key] = value
    return pairs


def reference_word_counts(paths) -> Counter:
    """Word count computed in plain Python: ``str.split()`` tokens, as jobs/wordcount.py documents."""
    counts: Counter = Counter()
    for path in paths:
        with open(path, encoding="utf-8", newline="") as f:
            for line in f:
                counts.update(line.split())
    return counts


def word_counts_as_text(paths) -> dict[str, str]:
    """``reference_word_counts`` as text output reads back: word -> count as a string."""
    return {word: str(n) for word, n in reference_word_counts(paths).items()}


def stop_processes(processes, grace_s: float = 10.0) -> None:
    """SIGTERM every process still running, give each ``grace_s`` to exit, then kill it."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for(predicate, timeout_s: float, what: str) -> None:
    """Poll ``predicate`` until it holds; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def mounted_tmpfs(mount_point: Path, options: str):
    """A tmpfs of its own at ``mount_point`` (``options`` e.g. ``size=2m`` or ``size=1m,ro``),
    unmounted at the end; skips the test where mounting needs a root it does not have."""
    mount_point.mkdir(exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)], capture_output=True,
                          text=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, check=False)


def interrupt_when_running(proc: subprocess.Popen, out: Path) -> str:
    """Ctrl-C a `pymr submit` once its job runs (its output has ``_temporary``); its stderr."""
    wait_for(lambda: (out / "_temporary").exists(), 60, "the job to start")
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    return err
