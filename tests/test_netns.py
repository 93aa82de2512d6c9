"""A cluster on separate network hosts: network namespaces made (and removed) by the test.

Each host is a namespace with its own address on a private bridge (which lives in a
namespace of its own, so the machine's own network is never touched). The coordinator
and three workers run on four hosts; one worker host is killed in the middle of a job
(its processes SIGKILLed and its link cut), and the output must equal a failure-free
run's. Needs root and `ip netns`; skipped elsewhere with the reason.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

import pytest

from conftest import ROOT, SAMPLE, TEST_JOBS, text_pairs

pytestmark = pytest.mark.slow
SUBNET = "10.231.77"


def _ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    command = ["ip", *(["netns", "exec", ns, "ip"] if ns else []), *args]
    return subprocess.run(command, capture_output=True, text=True, check=check)


def _netns_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "needs the `ip` command (iproute2)"
    probe = f"pymr-probe-{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


class Hosts:
    """Namespaces joined by a bridge that lives in a namespace of its own."""

    def __init__(self, names: list[str]):
        tag = uuid.uuid4().hex[:4]
        self.switch = f"pymr-sw-{tag}"
        self.names = {name: f"pymr-{name}-{tag}" for name in names}
        self.links = {}
        self.address = {name: f"{SUBNET}.{i + 1}" for i, name in enumerate(names)}
        _ip("netns", "add", self.switch)
        _ip("link", "add", "br0", "type", "bridge", ns=self.switch)
        _ip("link", "set", "br0", "up", ns=self.switch)
        for i, (name, ns) in enumerate(self.names.items()):
            inside, outside = f"ph{tag}{i}", f"ps{tag}{i}"
            _ip("netns", "add", ns)
            _ip("link", "add", inside, "type", "veth", "peer", "name", outside)
            _ip("link", "set", inside, "netns", ns)
            _ip("link", "set", outside, "netns", self.switch)
            _ip("link", "set", outside, "master", "br0", "up", ns=self.switch)
            _ip("addr", "add", f"{self.address[name]}/24", "dev", inside, ns=ns)
            _ip("link", "set", inside, "up", ns=ns)
            _ip("link", "set", "lo", "up", ns=ns)
            self.links[name] = outside

    def popen(self, name: str, args: list[str], log_path) -> subprocess.Popen:
        log = open(log_path, "ab")
        return subprocess.Popen(["ip", "netns", "exec", self.names[name], sys.executable, "-m", "pymr", *args],
                                stdout=log, stderr=log, cwd=ROOT, stdin=subprocess.DEVNULL)

    def pids(self, name: str) -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", self.names[name]], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def kill_host(self, name: str) -> None:
        """The machine dies: every process on it is killed and its network link goes down."""
        _ip("link", "set", self.links[name], "down", ns=self.switch, check=False)
        for pid in self.pids(name):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def remove(self) -> None:
        for name in self.names:
            self.kill_host(name)
        for ns in [*self.names.values(), self.switch]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_cluster_on_separate_hosts_survives_a_host_dying(tmp_path):
    reason = _netns_unavailable()
    if reason:
        pytest.skip(reason)
    key = tmp_path / "cluster.key"
    subprocess.run([sys.executable, "-m", "pymr", "keygen", key], check=True, capture_output=True)
    hosts = Hosts(["coord", "w1", "w2", "w3"])
    processes = []
    try:
        coordinator = f"tcp://{hosts.address['coord']}:5555"
        processes.append(hosts.popen("coord", ["coordinator", "--bind", coordinator, "--secret-file", str(key),
                                               "--worker-timeout", "3"], tmp_path / "coord.log"))
        for name in ("w1", "w2", "w3"):
            processes.append(hosts.popen(name, ["worker", "--coordinator", coordinator, "--secret-file", str(key),
                                                "--host", hosts.address[name], "--worker-id", name,
                                                "--data-dir", str(tmp_path / f"data-{name}")], tmp_path / f"{name}.log"))

        def submit(out, *extra):
            return hosts.popen("coord", ["submit", str(TEST_JOBS / "slow_words.py"), str(SAMPLE), "-o", str(out),
                                         "--coordinator", coordinator, "--secret-file", str(key), "-r", "3",
                                         "--split-size", "512K", *extra], tmp_path / f"submit-{out.name}.log")

        clean = submit(tmp_path / "clean")
        assert clean.wait(timeout=180) == 0, (tmp_path / "submit-clean.log").read_text()
        faulty = submit(tmp_path / "faulty", "--delay", "3")  # 4 rounds of 3 s tasks: w2 dies mid-task
        time.sleep(5)
        hosts.kill_host("w2")
        assert faulty.wait(timeout=240) == 0, (tmp_path / "submit-faulty.log").read_text() + \
            (tmp_path / "coord.log").read_text()
        assert text_pairs(tmp_path / "faulty") == text_pairs(tmp_path / "clean")
        assert "lost worker w2" in (tmp_path / "coord.log").read_text()
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
        hosts.remove()
        for process in processes:
            process.wait(timeout=10)
