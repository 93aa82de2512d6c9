"""A real cluster for tests: `pymr coordinator` and `pymr worker` processes on loopback.

Each worker advertises its own loopback address (127.0.0.2, 127.0.0.3, ...), so pymr
treats them as different hosts and reducers fetch map outputs over ZeroMQ.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from conftest import stop_processes

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, tmp_path: Path, workers: int = 3, worker_timeout_s: float = 3.0, slots: int = 1,
                 state_dir: Path | None = None):
        self.dir = tmp_path / "cluster"
        self.dir.mkdir()
        self.env = dict(os.environ, TMPDIR=str(self.dir), PYTHONUNBUFFERED="1")
        self.key = self.dir / "cluster.key"
        subprocess.run([sys.executable, "-m", "pymr", "keygen", str(self.key)], check=True, env=self.env,
                       capture_output=True)
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.worker_timeout_s = worker_timeout_s
        self.slots = slots
        self.state_dir = state_dir
        self.coordinator = self.start_coordinator()
        self.workers: dict[str, subprocess.Popen] = {}
        for i in range(workers):
            self.start_worker(f"w{i}")

    def _start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.dir / f"{name}.log", "ab")
        return subprocess.Popen([sys.executable, "-m", "pymr", *args], stdout=log, stderr=log,
                                env=dict(self.env, **(env or {})), cwd=ROOT, stdin=subprocess.DEVNULL)

    def start_coordinator(self, env: dict[str, str] | None = None) -> subprocess.Popen:
        """The coordinator, with the cluster's --state-dir if it has one (``env``: extra variables)."""
        state = ["--state-dir", str(self.state_dir)] if self.state_dir else []
        self.coordinator = self._start("coordinator", ["coordinator", "--bind", self.address, "--secret-file",
                                                       str(self.key), "--worker-timeout", str(self.worker_timeout_s),
                                                       *state], env)
        return self.coordinator

    def kill_coordinator(self) -> None:
        self.coordinator.kill()
        self.coordinator.wait()

    def start_worker(self, name: str, host: str | None = None, data_dir: Path | None = None,
                     extra: list[str] = ()) -> subprocess.Popen:
        host = host or f"127.0.0.{len(self.workers) + 2}"
        self.workers[name] = self._start(name, [
            "worker", "--coordinator", self.address, "--secret-file", str(self.key), "--host", host,
            "--worker-id", name, "--slots", str(self.slots), "--data-dir", str(data_dir or self.dir / f"data-{name}"),
            *extra])
        return self.workers[name]

    def restart_coordinator(self) -> None:
        self.coordinator.send_signal(signal.SIGTERM)
        self.coordinator.wait(timeout=10)
        self.start_coordinator()

    def shuffle_address(self, name: str, timeout_s: float = 20.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            match = re.search(r"served at (tcp://\S+)", (self.dir / f"{name}.log").read_text(errors="replace"))
            if match:
                return match.group(1)
            time.sleep(0.1)
        raise AssertionError(f"worker {name} never started:\n{self.log(name)}")

    def log(self, name: str) -> str:
        return (self.dir / f"{name}.log").read_text(errors="replace")

    def submit_args(self) -> list[str]:
        return ["--coordinator", self.address, "--secret-file", str(self.key)]

    def submit(self, *args, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pymr", "submit", *map(str, args), *self.submit_args()],
                              capture_output=True, text=True, env=self.env, timeout=timeout, cwd=ROOT)

    def popen_submit(self, *args) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "pymr", "submit", *map(str, args), *self.submit_args()],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env, cwd=ROOT)

    def kill_worker(self, name: str) -> None:
        self.workers[name].kill()
        self.workers[name].wait()

    def alive(self) -> bool:
        return self.coordinator.poll() is None and all(w.poll() is None for w in self.workers.values())

    def stop(self) -> None:
        stop_processes([self.coordinator, *self.workers.values()])
