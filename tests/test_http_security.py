"""Who may read the status page: loopback is open to this machine; any other address
needs the cluster key and then a token on every request (tested on a real non-loopback
address inside a network namespace); addresses that cannot be served are errors."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import pytest

from cluster import free_port
from conftest import ROOT, stop_processes

ADDRESS = "10.231.78.1"


def _coordinator(tmp_path, *args: str, env: dict | None = None) -> subprocess.Popen:
    log = open(tmp_path / "coordinator.log", "ab")
    return subprocess.Popen([sys.executable, "-m", "pymr", "coordinator", *args], stdout=log, stderr=log,
                            cwd=ROOT, env=env or os.environ, stdin=subprocess.DEVNULL)


def test_a_non_loopback_page_without_the_cluster_key_is_refused(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pymr", "coordinator", "--bind", f"tcp://127.0.0.1:{free_port()}",
                             "--http", f"{ADDRESS}:8080"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 2
    assert f"{ADDRESS}:8080 without --secret-file" in result.stderr


def test_an_address_given_that_is_taken_is_an_error_naming_it(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "pymr", "coordinator", "--bind",
                                 f"tcp://127.0.0.1:{free_port()}", "--http", f"127.0.0.1:{port}"],
                                capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 2
    assert f"cannot serve the status page on 127.0.0.1:{port}" in result.stderr


def test_when_the_default_port_is_taken_the_page_moves_to_a_free_one(tmp_path):
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", 8780))  # taken by us, or already by someone else: taken either way
        holder.listen()
    except OSError:
        pass
    env = {k: v for k, v in os.environ.items() if k != "PYMR_HTTP"}
    process = _coordinator(tmp_path, "--bind", f"tcp://127.0.0.1:{free_port()}", env=env)
    try:
        deadline = time.monotonic() + 30
        url = None
        while url is None and time.monotonic() < deadline:
            match = re.search(r"status page at (http://127\.0\.0\.1:(\d+)/)", (tmp_path / "coordinator.log").read_text())
            url = match.group(1) if match else None
            time.sleep(0.2)
        assert url is not None, (tmp_path / "coordinator.log").read_text()
        assert not url.endswith(":8780/")
        assert "8780 is in use" in (tmp_path / "coordinator.log").read_text()
        with urllib.request.urlopen(url + "api/jobs", timeout=10) as response:
            assert response.read() == b"[]"
        # a page elsewhere whose domain name was rebound to 127.0.0.1 gets nothing
        rebound = urllib.request.Request(url + "api/jobs", headers={"Host": "attacker.example:8780"})
        try:
            urllib.request.urlopen(rebound, timeout=10)
        except urllib.error.HTTPError as exc:
            assert exc.code == 403 and exc.read().startswith(b"403 forbidden")
        else:
            raise AssertionError("a request for another host name was answered")
    finally:
        stop_processes([process])
        holder.close()


def test_http_off_serves_no_page(tmp_path):
    process = _coordinator(tmp_path, "--bind", f"tcp://127.0.0.1:{free_port()}", "--http", "off")
    try:
        deadline = time.monotonic() + 30
        while "listening on" not in (tmp_path / "coordinator.log").read_text():
            assert time.monotonic() < deadline and process.poll() is None, (tmp_path / "coordinator.log").read_text()
            time.sleep(0.1)
        assert "status page" not in (tmp_path / "coordinator.log").read_text()
    finally:
        stop_processes([process])


def _netns_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create a network namespace"
    if shutil.which("ip") is None:
        return "needs the `ip` command (iproute2)"
    return None


CLIENT = r"""
import json, sys, urllib.request, urllib.error
url, token = sys.argv[1], sys.argv[2]

class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None

opener = urllib.request.build_opener(NoRedirect)
def get(path, headers={}):
    try:
        with opener.open(urllib.request.Request(url + path, headers=headers), timeout=10) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()

print(json.dumps({
    "none": get("api/jobs"),
    "page": get(""),
    "metrics": get("metrics"),
    "wrong": get("api/jobs", {"Authorization": "Bearer " + "0" * len(token)}),
    "bearer": get("api/workers", {"Authorization": "Bearer " + token}),
    "query": get("?token=" + token),
    "cookie": get("api/jobs", {"Cookie": "pymr_token=" + token}),
}))
"""


@pytest.mark.slow
def test_a_non_loopback_page_answers_only_requests_with_the_token(tmp_path):
    reason = _netns_unavailable()
    if reason:
        pytest.skip(reason)
    namespace = f"pymr-http-{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", namespace], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {made.stderr.strip()}")
    inside = ["ip", "netns", "exec", namespace]
    process = None
    try:
        # a private, non-loopback address (on the namespace's own lo: no device module needed)
        for command in (["ip", "link", "set", "lo", "up"], ["ip", "addr", "add", f"{ADDRESS}/32", "dev", "lo"]):
            subprocess.run(inside + command, check=True, capture_output=True)
        key = tmp_path / "cluster.key"
        subprocess.run([sys.executable, "-m", "pymr", "keygen", str(key)], check=True, capture_output=True, cwd=ROOT)
        http = f"{ADDRESS}:8780"
        log = open(tmp_path / "coordinator.log", "ab")
        process = subprocess.Popen(inside + [sys.executable, "-m", "pymr", "coordinator", "--bind",
                                             f"tcp://{ADDRESS}:5555", "--secret-file", str(key), "--http", http],
                                   stdout=log, stderr=log, cwd=ROOT, stdin=subprocess.DEVNULL)
        token = subprocess.run([sys.executable, "-m", "pymr", "token", "--secret-file", str(key), "--http", http],
                               capture_output=True, text=True, cwd=ROOT, check=True)
        assert f"open: http://{http}/?token={token.stdout.strip()}" in token.stderr
        deadline = time.monotonic() + 30
        while f"status page at http://{http}/" not in (tmp_path / "coordinator.log").read_text():
            assert time.monotonic() < deadline and process.poll() is None, (tmp_path / "coordinator.log").read_text()
            time.sleep(0.2)
        answered = subprocess.run(inside + [sys.executable, "-c", CLIENT, f"http://{http}/", token.stdout.strip()],
                                  capture_output=True, text=True, timeout=60)
        assert answered.returncode == 0, answered.stderr
        import json

        replies = json.loads(answered.stdout)
        for name in ("none", "page", "metrics", "wrong"):
            status, headers, body = replies[name]
            assert status == 401, (name, status)
            assert body.startswith("401 unauthorized") and "[" not in body and "pymr_" not in body
        assert replies["bearer"][0] == 200 and json.loads(replies["bearer"][2]) == []
        status, headers, _ = replies["query"]
        assert status == 303 and headers["Location"] == "/"  # the token leaves the address bar
        cookie = headers["Set-Cookie"]
        assert f"pymr_token={token.stdout.strip()}" in cookie and "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        assert replies["cookie"][0] == 200 and json.loads(replies["cookie"][2]) == []
    finally:
        if process is not None:
            stop_processes([process])
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
