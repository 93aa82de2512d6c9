"""Ways to run a job: inline (one process, no ZeroMQ), local (a coordinator and N worker
processes on this machine), and cluster (submit to a running coordinator).

Local mode is cluster mode in miniature: the coordinator runs in a thread of this
process, the workers are forked by a fork server started fresh for the run
(``pymr.forkserver``: never forked from this process, so no ZeroMQ context, Arrow
thread pool or user state is inherited), and the job is submitted through the same
client protocol a remote ``pymr submit`` uses. A worker process that dies is
reported to the coordinator at once and replaced. Everything started is stopped when
the run ends, however it ends.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import logging
import os
import shutil
import socket
import tempfile
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import wait
from typing import Any

import zmq

from . import forkserver, storage
from . import protocol as proto
from . import scheduler as sched
from .code import check_sendable, dump_job, importable, local_side_files, side_file_paths
from .coordinator import STOP_WAIT_S, ActiveJob, Coordinator
from .errors import (ClusterError, InputError, JobCancelled, JobFailed, JobScriptError, OptionError,
                     OutputExistsError, PymrError, StorageError, exception_from)
from .executor import checked_arrow_threads, size_arrow_pools
from .inputs import (DEFAULT_SPLIT_SIZE, check_output_apart, parse_size, plan_splits, require_record_batches,
                     split_format_prefix)
from .job import AGGREGATES, OUTPUT_FORMATS, Job
from .outputs import PAIRS, JobResult, output_committer, write_report
from .http import StatusServer
from .report import job_report
from .sampling import sample_cuts
from .security import ClusterKey, Security, connect, generate_key, read_key_file, write_key_file
from .status import StatusBoard

log = logging.getLogger(__name__)
ProgressCallback = Callable[[dict[str, Any]], None]
LOST_AFTER_S = 15.0  # the coordinator sends progress at least every 5 s: three missed, it is presumed gone
RECONNECT_TIMEOUT_S = 120.0  # how long a client keeps trying to reach a coordinator that went away
WATCH_INTERVAL_S = 1.0
_REJECTIONS = {"InputError": InputError, "OutputExistsError": OutputExistsError, "ClusterError": ClusterError,
               "StorageError": StorageError}


def job_spec(job_class: type[Job], inputs: Sequence[str], output: str, *, reducers: int | None = None,
             split_size: int | str | None = None, output_format: str | None = None, overwrite: bool = False,
             skip_bad_records: bool | None = None, buffer_bytes: int | str | None = None,
             input_format: str | None = None,
             max_attempts: int | None = None, exclude_after: int | None = None) -> dict[str, Any]:
    """The JSON description of a run: the job's defaults overridden by what was given."""
    output_format = output_format or job_class.output_format
    if output_format not in OUTPUT_FORMATS:
        raise PymrError(f"unknown output format {output_format!r} (choose from {', '.join(OUTPUT_FORMATS)})")
    if job_class.aggregate is not None and job_class.aggregate not in AGGREGATES:
        raise PymrError(f"unknown aggregate {job_class.aggregate!r} (choose from {', '.join(AGGREGATES)})")
    num_reducers = int(reducers if reducers is not None else job_class.reducers)
    if num_reducers < 1:
        raise PymrError(f"reducers must be at least 1, got {num_reducers}")
    inputs = [_absolute_input(str(i)) for i in ([inputs] if isinstance(inputs, str) else inputs)]
    output = storage.normalize(str(output))
    check_output_apart(inputs, output)
    return {
        "name": job_class.__name__,
        "inputs": inputs,
        "output": output,
        # options given in URI queries (endpoint, region, ...), for the coordinator and the tasks
        "filesystems": storage.options_for([split_format_prefix(i)[1] for i in inputs] + [output]),
        "reducers": num_reducers,
        "has_reducer": job_class.has_reducer(),
        "map_batch": job_class.has_map_batch() and not job_class.has_steps(),
        "split_size": parse_size(split_size if split_size is not None else job_class.split_size),
        "output_format": output_format,
        "overwrite": bool(overwrite),
        "skip_bad_records": bool(job_class.skip_bad_records if skip_bad_records is None else skip_bad_records),
        "input_format": input_format or job_class.input_format,
        "buffer_bytes": parse_size(buffer_bytes) if buffer_bytes is not None else None,
        "max_attempts": int(max_attempts or sched.DEFAULT_MAX_ATTEMPTS),
        "exclude_after": int(exclude_after or sched.DEFAULT_EXCLUDE_AFTER),
    }


def _absolute_input(given: str) -> str:
    """An input as the coordinator must see it: absolute, keeping a ``FORMAT:`` prefix; a
    URI without its query (``storage.normalize``), a ``file://`` URI as a path."""
    forced, path = split_format_prefix(given)
    path = storage.normalize(path)
    return f"{forced}:{path}" if forced else path


def run_job(job_class: type[Job], inputs: str | Sequence[str], output: str | None = None, *,
            workers: int | None = None, inline: bool = False, coordinator: str | None = None,
            secret_file: str | None = None,
            options: dict[str, Any] | None = None, quiet: bool = True, files: Sequence[str] = (),
            py_files: Sequence[str] = (), on_progress: ProgressCallback | None = None,
            reconnect_timeout_s: float = RECONNECT_TIMEOUT_S, on_notice: Callable[[str], None] | None = None,
            http: str | None = None, arrow_threads: int | None = None, **settings: Any) -> JobResult:
    """Run a job to completion and return its result (see ``Job.run``); with ``coordinator``,
    ``reconnect_timeout_s`` and ``on_notice`` are the ``Client``'s; in local mode, ``http``
    (HOST:PORT) serves the status page while the job runs (its URL printed unless ``quiet``)
    and ``arrow_threads`` sizes each task process's Arrow pools (default: ``PYMR_ARROW_THREADS``, else 1)."""
    _check_settings(settings)
    options = checked_options(job_class, options)
    connection = {"reconnect_timeout_s": reconnect_timeout_s, "on_notice": on_notice}
    local = {"http": http, "quiet": quiet, "arrow_threads": arrow_threads}
    if output is not None:
        return _run(job_class, inputs, output, workers, inline, coordinator, secret_file, options, files, py_files,
                    on_progress, settings, connection, local)
    output = tempfile.mkdtemp(prefix=f"pymr-{job_class.__name__}-")
    settings.setdefault("overwrite", True)
    settings.setdefault("output_format", "jsonl")
    try:
        return _run(job_class, inputs, output, workers, inline, coordinator, secret_file, options, files, py_files,
                    on_progress, settings, connection, local)
    except BaseException:
        shutil.rmtree(output, ignore_errors=True)  # nobody was told where it is
        raise


def _check_settings(settings: dict[str, Any]) -> None:
    """Refuse a keyword ``Job.run`` does not take, naming ``run()`` (not an inner function)."""
    known = set(inspect.signature(job_spec).parameters) - {"job_class", "inputs", "output"}
    for name in settings:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known | _RUN_KEYWORDS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise TypeError(f"run() got an unexpected keyword argument {name!r}{hint}")


_RUN_KEYWORDS = {"workers", "inline", "coordinator", "secret_file", "options", "quiet", "files", "py_files",
                 "on_progress", "reconnect_timeout_s", "on_notice", "http", "arrow_threads"}


def checked_options(job_class: type[Job], options: dict[str, Any] | None) -> dict[str, Any]:
    """Job option values, refused (as the command line refuses them) if the job has no such
    option or lacks a required one."""
    options = dict(options or {})
    declared = {o.attr: o for o in job_class.options}
    for name in options:
        if name not in declared:
            close = difflib.get_close_matches(name, sorted(declared), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            have = ", ".join(sorted(declared)) or "none"
            raise OptionError(f"job {job_class.__name__} has no option {name!r}{hint} (its options: {have})")
    missing = [o.flag for o in job_class.options if o.required and options.get(o.attr) is None]
    if missing:
        raise OptionError(f"job {job_class.__name__} needs option(s): {', '.join(missing)}")
    return options


def _run(job_class: type[Job], inputs: str | Sequence[str], output: str, workers: int | None, inline: bool,
         coordinator: str | None, secret_file: str | None, options: dict[str, Any], files: Sequence[str],
         py_files: Sequence[str], on_progress: ProgressCallback | None, settings: dict[str, Any],
         connection: dict[str, Any], local: dict[str, Any]) -> JobResult:
    files = side_file_paths(job_class, files)
    spec = job_spec(job_class, inputs, output, **settings)
    steps = list(job_class(options).steps() or ()) if job_class.has_steps() else []
    if job_class.has_steps() and not steps:
        raise PymrError(f"job {job_class.__name__}: steps() returned no steps")
    if job_class.total_order and steps:
        raise PymrError(f"job {job_class.__name__}: total_order applies to one-step jobs; a multi-step job can end "
                        "with a one-step job that sorts, run after it")
    if job_class.total_order and spec["has_reducer"] and not steps:
        splits = plan_splits(spec["inputs"], spec["split_size"], spec.get("input_format"))
        spec["partition_cuts"] = [cut.hex() for cut in sample_cuts(job_class(options), splits, spec["reducers"])]
    if inline:
        check_sendable(job_class, options)  # what fails in local mode fails here too
        importable(py_files)
        with _arrow_pools(checked_arrow_threads(local["arrow_threads"])):
            report = _run_steps(spec, steps, lambda s, _: run_inline(job_class, options, s, files), on_progress)
    elif coordinator:
        _warn_local_only(workers=workers, arrow_threads=local["arrow_threads"])
        key = read_key_file(secret_file) if secret_file else None
        code = dump_job(job_class, options, files, py_files)
        with Client(coordinator, key, **connection) as client:
            report = _run_steps(spec, steps, lambda s, progress: client.run(s, code, progress), on_progress)
    else:
        code = dump_job(job_class, options, files, py_files)
        with LocalCluster(workers or os.cpu_count() or 1, http=local["http"],
                          arrow_threads=local["arrow_threads"]) as cluster:
            page = cluster.status_page if not local["quiet"] else None
            progress = _announcing(page, on_progress)
            with Client(cluster.address, cluster.key) as client:
                report = _run_steps(spec, steps, lambda s, progress: client.run(s, code, progress), progress)
    return JobResult(spec["output"], spec["output_format"], report["counters"], report)


@contextlib.contextmanager
def _arrow_pools(threads: int) -> Iterator[None]:
    """Arrow's pools sized as a task process's are (``--inline`` is a debugger's view of
    one), then as they were: the caller's process goes on after the job."""
    import pyarrow as pa

    before = pa.cpu_count(), pa.io_thread_count()
    size_arrow_pools(threads)
    try:
        yield
    finally:
        pa.set_cpu_count(before[0])
        pa.set_io_thread_count(before[1])


def _warn_local_only(**given: Any) -> None:
    """Say that settings of local mode's own workers do nothing for a cluster's."""
    ignored = [f"--{name.replace('_', '-')}" for name, value in given.items() if value is not None]
    if ignored:
        log.warning("%s: local mode only, ignored with --coordinator (a cluster's workers have the slots and "
                    "Arrow threads that `pymr worker --slots/--arrow-threads` gave them)", ", ".join(ignored))


def _announcing(page: StatusServer | None, on_progress: ProgressCallback | None) -> ProgressCallback | None:
    """``on_progress``, after printing the status page's address once the job was accepted
    (its first progress): a job refused at once never had a page to look at."""
    if page is None:
        return on_progress
    told: list[bool] = []

    def progress(body: dict[str, Any]) -> None:
        if not told:
            told.append(True)
            print(f"status page: {page.url}" + (f"?token={page.token}" if page.token else ""), file=sys.stderr,
                  flush=True)
        if on_progress is not None:
            on_progress(body)

    return progress


def _run_steps(spec: dict[str, Any], steps: list[Any], execute: Callable, on_progress: ProgressCallback | None):
    """Run a one-step job, or each step of a multi-step job in turn (a repeated step
    round after round), the output of one run feeding the next as Arrow pairs in a
    scratch folder beside the output."""
    if not steps:
        return execute(spec, on_progress)
    total = len(steps)
    scratch = _scratch_beside(spec["output"])
    reports: list[dict[str, Any]] = []
    previous = None
    try:
        for index, step in enumerate(steps):
            for round_number in range(1, step.max_rounds + 1):
                writes_output = index == total - 1 and step.repeat_while is None
                where = _StepRun(index, total, round_number if step.repeat_while else None)
                output = spec["output"] if writes_output else storage.join(scratch, where.folder)
                step_spec = _step_spec(spec, step, where, previous, output)
                report = _execute_step(execute, step_spec, where, on_progress)
                reports.append(dict(report, step=index + 1, **({"round": round_number} if step.repeat_while else {})))
                _drop_scratch(previous, scratch)
                previous = output
                if step.repeat_while is None or not _another_round(step, report, where):
                    break
        if steps[-1].repeat_while is not None:
            where = _StepRun(total, total, None)  # the copy into the job's output
            copy = _step_spec(spec, None, where, previous, spec["output"])
            reports.append(dict(_execute_step(execute, copy, where, on_progress), step=total))
    finally:
        _delete_quietly(scratch)
    report = _steps_report(reports)
    write_report(spec["output"], report)  # the last run wrote its own; the job's covers every step
    return report


class _StepRun:
    """Which step (and round of a repeated step) a run is, for names, folders and errors."""

    def __init__(self, index: int, total: int, round_number: int | None):
        self.index, self.total, self.round = index, total, round_number

    @property
    def label(self) -> str:
        if self.index == self.total:
            return f"writing the output of step {self.total} of {self.total}"
        return f"step {self.index + 1} of {self.total}" + (f", round {self.round}" if self.round else "")

    @property
    def folder(self) -> str:
        return f"step-{self.index + 1}" + (f"-round-{self.round}" if self.round else "")

    @property
    def progress_name(self) -> str:
        return f"{self.index + 1}/{self.total}" + (f" round {self.round}" if self.round else "")


def _step_spec(spec: dict[str, Any], step: Any, where: _StepRun, previous: str | None, output: str) -> dict[str, Any]:
    """The spec of one run of a step; ``step`` None is the map-only copy into the output."""
    has_reduce = step is not None and step.has_reduce
    if where.index == where.total:
        suffix = f"step {where.total}, output"
    else:
        suffix = f"step {where.index + 1}" + (f", round {where.round}" if where.round else "")
    step_spec = dict(spec, step=where.index, has_reducer=has_reduce, name=f"{spec['name']} ({suffix})")
    if step is not None and step.reducers is not None:
        step_spec["reducers"] = step.reducers
    if previous is not None:
        step_spec.update(inputs=[f"pairs:{previous}"], input_format=None)
    if output != spec["output"]:
        step_spec.update(output=output, output_format=PAIRS, overwrite=True)
    return step_spec


def _execute_step(execute: Callable, step_spec: dict[str, Any], where: _StepRun,
                  on_progress: ProgressCallback | None) -> dict[str, Any]:
    """Run one step, naming it in progress and in the error if it fails."""
    progress = None if on_progress is None else (lambda body: on_progress(dict(body, step=where.progress_name)))
    try:
        return execute(step_spec, progress)
    except JobFailed as exc:
        cause = getattr(exc, "report", {}).get("error") or str(exc)
        name = step_spec["name"].rsplit(" (step", 1)[0]
        raise type(exc)(f"job {name} failed: {where.label}, {cause}", exc.task_error) from exc.__cause__
    except Exception as exc:
        task = getattr(exc, "pymr_task", None)
        if task is not None:
            exc.pymr_task = f"{where.label}, {task}"
        raise


def _another_round(step: Any, report: dict[str, Any], where: _StepRun) -> bool:
    """Ask the step's ``repeat_while`` about the round that just ran."""
    try:
        return bool(step.repeat_while(report["counters"]))
    except Exception as exc:
        raise JobScriptError(f"{where.label}: repeat_while raised {type(exc).__name__}: {exc}") from exc


def _scratch_beside(output: str) -> str:
    """A fresh folder for the steps' outputs beside the job's output, where every worker
    and the coordinator can reach it (on an object store: a prefix)."""
    if not storage.is_remote(output):
        return tempfile.mkdtemp(prefix=".pymr-steps-", dir=os.path.dirname(output) or None)
    return f"{output.rstrip('/')}.pymr-steps-{uuid.uuid4().hex[:12]}"


def _drop_scratch(folder: str | None, scratch: str) -> None:
    """Delete a step's output once the run that read it is done, so rounds don't pile up."""
    if folder is not None and folder.startswith(scratch):
        _delete_quietly(folder)


def _delete_quietly(path: str) -> None:
    try:
        storage.delete(path)
    except OSError as exc:  # the job's result stands; a scratch folder left behind is only untidy
        log.warning("could not delete %s: %s", storage.display(path), exc)


def _steps_report(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """The last step's report, with counters summed over every step and each step's report."""
    report = dict(reports[-1])
    counters: dict[str, dict[str, int]] = {}
    for step in reports:
        for group, names in step["counters"].items():
            for name, amount in names.items():
                counters.setdefault(group, {})[name] = counters.get(group, {}).get(name, 0) + amount
    report.update(counters=counters, steps=reports, name=reports[0]["name"].rsplit(" (step", 1)[0],
                  map_tasks=sum(r["map_tasks"] for r in reports), reduce_tasks=sum(r["reduce_tasks"] for r in reports),
                  attempts=sum(r["attempts"] for r in reports),
                  failed_attempts=sum(r["failed_attempts"] for r in reports))
    return report


# -- inline --------------------------------------------------------------------------------
def run_inline(job_class: type[Job], options: dict[str, Any], spec: dict[str, Any],
               files: Sequence[str] = ()) -> dict[str, Any]:
    """Run every task in this process, in order; the user's exception propagates as it is."""
    local_files = local_side_files(files)
    job_id = "inline_" + uuid.uuid4().hex[:8]
    storage.configure(spec.get("filesystems"))
    committer = output_committer(spec["output"], job_id)
    splits = plan_splits(spec["inputs"], spec["split_size"] or DEFAULT_SPLIT_SIZE, spec.get("input_format"))
    if spec.get("map_batch"):
        require_record_batches(splits)
    committer.setup(spec["overwrite"])
    run = sched.new_job(job_id, spec["name"], [s.to_dict() for s in splits],
                        spec["reducers"] if spec["has_reducer"] else 0, max_attempts=1)
    active = ActiveJob(run, spec, b"", committer, b"", time.monotonic())
    scratch = tempfile.mkdtemp(prefix="pymr-inline-")
    try:
        for task in run.maps + run.reduces:
            _run_inline_task(job_class, options, active, task, scratch, local_files)
        run.state = sched.JobState.SUCCEEDED
        report = job_report(active)
        try:
            committer.commit_job(report)
        except OSError as exc:  # not a task's error: said as the coordinator says it
            raise JobFailed(f"job {spec['name']} failed: job commit failed: {exc}") from exc
        return report
    except BaseException:
        committer.abort_job()
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _run_inline_task(job_class, options, active: ActiveJob, task: sched.Task, scratch: str,
                     files: dict[str, str]) -> None:
    run, spec = active.run, active.spec
    attempt_id = f"{run.job_id}-{task.task_id}-0"
    body: dict[str, Any] = {"kind": task.kind, "attempt_dir": active.committer.attempt_dir(attempt_id),
                            "output_format": spec["output_format"], "step": spec.get("step"),
                            "filesystems": spec.get("filesystems")}
    if task.kind == "map":
        body.update(split=task.split, part=task.index, num_reducers=len(run.reduces),
                    skip_bad_records=spec["skip_bad_records"], buffer_bytes=spec.get("buffer_bytes"),
                    partition_cuts=spec.get("partition_cuts"),
                    map_output=os.path.join(scratch, attempt_id, "map.arrow"))
    else:
        body.update(partition=task.index, map_outputs=[{"path": m.result["map_output"]} for m in run.maps],
                    buffer_bytes=spec.get("buffer_bytes"))
    from .tasks import run_task

    try:
        task.result = run_task(job_class, options, body, files=files)
    except Exception as exc:
        exc.pymr_task = sched.task_description(task)  # read by the CLI to say where it failed
        raise
    task.state = sched.TaskState.DONE
    if task.kind == "reduce" or run.map_only:
        active.committer.commit_task(attempt_id, task.result["files"])


# -- client ---------------------------------------------------------------------------------
class Client:
    """Submits a job to a coordinator and follows it to the end.

    If the coordinator goes away (its connection drops, or nothing is heard from it for
    ``LOST_AFTER_S``) the client keeps trying for ``reconnect_timeout_s``: it sends
    WATCH with the job's id every ``WATCH_INTERVAL_S`` until a coordinator on the same
    address answers where the job is (a coordinator with a state dir resumes its jobs
    when it restarts), then follows the job to its end as before.
    """

    def __init__(self, address: str, key: ClusterKey | None = None, connect_timeout_s: float = 10.0,
                 reconnect_timeout_s: float = RECONNECT_TIMEOUT_S, on_notice: Callable[[str], None] | None = None):
        self.address = address
        self.connect_timeout_s = connect_timeout_s
        self.reconnect_timeout_s = reconnect_timeout_s
        self.on_notice = on_notice  # told, in a sentence, when contact is lost and found again
        self.context = zmq.Context()
        self.socket = Security(self.context, key).client(proto.configure(self.context.socket(zmq.DEALER)))
        self.monitor = self.socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        connect(self.socket, address)
        self.job_id: str | None = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.socket.disable_monitor()
        self.monitor.close(linger=0)
        self.socket.close(linger=0)
        self.context.destroy(linger=0)

    def send(self, kind: str, body: dict[str, Any] | None = None, *blobs: bytes) -> None:
        try:
            self.socket.send_multipart(proto.pack(kind, body, *blobs), zmq.NOBLOCK)
        except zmq.Again:
            raise ClusterError(f"cannot send to the coordinator at {self.address}: its queue is full "
                               "or it is unreachable") from None

    def receive(self, timeout_s: float) -> proto.Message | None:
        if not self.socket.poll(int(timeout_s * 1000)):
            return None
        return proto.unpack(self.socket.recv_multipart())

    def submit(self, spec: dict[str, Any], code: bytes) -> str:
        """Send the job; resent with backoff until answered (the coordinator runs it once)."""
        request_id = uuid.uuid4().hex
        deadline = time.monotonic() + self.connect_timeout_s
        wait_s = 1.0
        while time.monotonic() < deadline:
            self.send(proto.SUBMIT, {"spec": spec, "request_id": request_id, "versions": proto.versions()}, code)
            answer_by = min(deadline, time.monotonic() + wait_s)
            while time.monotonic() < answer_by:
                msg = self.receive(answer_by - time.monotonic())
                if msg is None:
                    break
                if msg.kind == proto.ACCEPTED:
                    self.job_id = msg.body["job_id"]
                    return self.job_id
                if msg.kind == proto.REJECTED:
                    raise _REJECTIONS.get(msg.body.get("type"), PymrError)(msg.body["error"])
            wait_s *= 2
        raise ClusterError(f"no answer from the coordinator at {self.address} within {self.connect_timeout_s:g} s "
                           "(is it running, and do both use the same --secret-file?)")

    def run(self, spec: dict[str, Any], code: bytes, on_progress: ProgressCallback | None = None) -> dict[str, Any]:
        """Submit and wait; Ctrl-C cancels the job on the coordinator before re-raising."""
        job_id = self.submit(spec, code)
        try:
            return self.wait(job_id, on_progress)
        except KeyboardInterrupt:
            self.send(proto.CANCEL_JOB, {"job_id": job_id, "reason": "interrupted (Ctrl-C)"})
            self._await_finish(job_id, timeout_s=STOP_WAIT_S + 5)  # the job ends once its attempts are dead
            raise

    def wait(self, job_id: str, on_progress: ProgressCallback | None = None) -> dict[str, Any]:
        """Follow a job this client submitted to its end, through coordinator restarts."""
        return _Follower(self, job_id, on_progress, by_id=False).run()

    def follow(self, job_id: str, on_progress: ProgressCallback | None = None) -> dict[str, Any]:
        """Follow a job by its id (submitted elsewhere, or before a restart) to its end;
        this client then hears of its progress and its end, as its other clients do."""
        return _Follower(self, job_id, on_progress, by_id=True).run()

    def connection_dropped(self) -> bool:
        """Whether the connection to the coordinator dropped since last asked (ZeroMQ
        reconnects by itself; a drop is how a coordinator that restarted shows)."""
        dropped = False
        while self.monitor.poll(0):
            self.monitor.recv_multipart()  # only EVENT_DISCONNECTED is subscribed to
            dropped = True
        return dropped

    def notice(self, text: str) -> None:
        if self.on_notice is not None:
            self.on_notice(text)

    def _await_finish(self, job_id: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            msg = self.receive(deadline - time.monotonic())
            if msg is not None and msg.kind == proto.FINISHED and msg.body.get("job_id") == job_id:
                return


class _Follower:
    """Follows one job on a coordinator: progress until FINISHED, and WATCH while out of contact.

    ``lost_s`` is when contact was found lost (None while in contact); until a WATCH is
    answered, WATCH is resent every ``WATCH_INTERVAL_S``, and after ``reconnect_timeout_s``
    the client gives up (exit 3) saying how to follow the job later.
    """

    def __init__(self, client: Client, job_id: str, on_progress: ProgressCallback | None, by_id: bool):
        self.client, self.job_id, self.on_progress, self.by_id = client, job_id, on_progress, by_id
        self.last_heard_s = time.monotonic()
        self.lost_s: float | None = time.monotonic() if by_id else None
        self.dropped = False  # the connection dropped while out of contact: the coordinator restarted
        self.next_watch_s = 0.0
        client.connection_dropped()  # forget drops before the job was accepted

    def run(self) -> dict[str, Any]:
        while True:
            msg = self.client.receive(0.25)
            self._check_contact()
            if msg is not None and msg.body.get("job_id") == self.job_id:
                self.last_heard_s = time.monotonic()
                if msg.kind == proto.FINISHED:
                    self._found(ended=True)
                    return _finished(msg)
                if msg.kind == proto.REJECTED:
                    raise ClusterError(self._unknown_job())
                if msg.kind == proto.PROGRESS:
                    if msg.body.get("watch"):
                        self._found(ended=False)
                    if self.on_progress is not None:
                        self.on_progress(msg.body)
            if self.lost_s is not None:
                self._watch()

    def _check_contact(self) -> None:
        now = time.monotonic()
        timeout = self.client.reconnect_timeout_s
        if self.client.connection_dropped() and not self.dropped:
            self.dropped = True
            if self.lost_s is None:
                self.lost_s = now
                self.client.notice(f"lost the connection to the coordinator at {self.client.address}; waiting up "
                                   f"to {timeout:g} s for it to come back (--reconnect-timeout)")
        if self.lost_s is None and now - self.last_heard_s > LOST_AFTER_S:
            self.lost_s = now
            self.client.notice(f"nothing heard from the coordinator at {self.client.address} for {LOST_AFTER_S:g} s; "
                               f"trying to reach it for up to {timeout:g} s (--reconnect-timeout)")

    def _watch(self) -> None:
        now = time.monotonic()
        if now - self.lost_s > self.client.reconnect_timeout_s:  # type: ignore[operator]
            raise ClusterError(f"lost contact with the coordinator at {self.client.address}: no answer for "
                               f"{self.client.reconnect_timeout_s:g} s (--reconnect-timeout); job {self.job_id} may "
                               f"still be running there: follow it with `pymr status {self.job_id}` or on the "
                               "coordinator's status page")
        if now >= self.next_watch_s:
            try:
                self.client.send(proto.WATCH, {"job_id": self.job_id})
            except ClusterError:  # the queue to an absent coordinator is full: try again later
                pass
            self.next_watch_s = now + WATCH_INTERVAL_S

    def _found(self, ended: bool) -> None:
        """A WATCH was answered (or the job's end arrived): contact is back."""
        if self.lost_s is not None and not self.by_id:
            how = "restarted" if self.dropped else "answers again"
            now = "had ended meanwhile" if ended else ("resumed there" if self.dropped else "is still running")
            self.client.notice(f"the coordinator at {self.client.address} {how}; job {self.job_id} {now}")
        self.lost_s, self.dropped, self.by_id = None, False, False

    def _unknown_job(self) -> str:
        address = self.client.address
        if self.by_id:
            return f"the coordinator at {address} does not know job {self.job_id} (it never ran there, or ended long ago)"
        return (f"the coordinator at {address} restarted and does not know job {self.job_id} (without --state-dir "
                "it keeps no state of its jobs): the job is lost; submit it again")


def _finished(msg: proto.Message) -> dict[str, Any]:
    """The job's report, or JobFailed carrying the task's error as data (never unpickled:
    whoever answers on the coordinator's address must not run code here)."""
    report = msg.body
    if report.get("state") == sched.JobState.SUCCEEDED.value:
        return report
    if report.get("state") == sched.JobState.CANCELLED.value:
        raise JobCancelled(f"job {report.get('name')} was cancelled: {report.get('error')}")
    detail = report.get("error_detail")
    task_error = None
    if isinstance(detail, dict):
        task_error = {**detail, **{k: str(v) for k, v in detail.items() if k in ("type", "message", "traceback")}}
    failure = JobFailed(f"job {report.get('name')} failed: {report.get('error')}", task_error)
    failure.report = report
    if task_error and "type" in task_error:
        raise failure from exception_from(task_error)
    raise failure


# -- local cluster ------------------------------------------------------------------------------
class LocalCluster:
    """A coordinator thread and ``workers`` worker processes, all stopped on exit.

    The workers are forked by one fork server (``pymr.forkserver``), which imports
    pyarrow, ZeroMQ and pymr once for all of them. The run gets its own cluster key (a
    0600 file in the run's private folder), so even on loopback no other local user can
    submit code to these workers.
    """

    def __init__(self, workers: int, slots: int = 1, http: str | None = None, arrow_threads: int | None = None):
        if workers < 1:
            raise PymrError(f"workers must be at least 1, got {workers}")
        # a bad PYMR_ARROW_THREADS is named here, not by every worker failing to start
        self.arrow_threads = checked_arrow_threads(arrow_threads)
        self.num_workers = workers
        self.slots = slots
        self._server = forkserver.take()  # first: it imports while the rest is set up
        self.root = self._server.root
        self.status_page = None
        try:
            self.key = generate_key()
            self.status_page = StatusServer(http, StatusBoard(), self.key) if http else None  # HOST:PORT, or none
            self.key_file = os.path.join(self.root, "cluster.key")
            write_key_file(self.key_file, self.key)
            self.coordinator = Coordinator("tcp://127.0.0.1:*", key=self.key)
            self.coordinator.board = self.status_page.board if self.status_page else self.coordinator.board
        except BaseException:
            self._server.close()
            if self.status_page is not None:
                self.status_page.close()
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        self.address = self.coordinator.address
        self.replaced = 0
        self._thread = threading.Thread(target=self.coordinator.serve, name="pymr-coordinator", daemon=True)
        self._watch_stop = threading.Event()
        self._wake_read, self._wake_write = socket.socketpair()  # close() wakes the watcher at once
        self._watcher = threading.Thread(target=self._watch, name="pymr-worker-watch", daemon=True)

    def __enter__(self) -> LocalCluster:
        self._thread.start()
        try:
            for i in range(self.num_workers):
                self._start_worker(f"local-{i}")
        except BaseException:
            self.close()
            raise
        self._watcher.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _start_worker(self, worker_id: str) -> None:
        options = {"coordinator": self.address, "slots": self.slots, "key_file": self.key_file,
                   "data_dir": os.path.join(self.root, worker_id), "log_level": logging.getLogger().level,
                   "arrow_threads": self.arrow_threads}
        self._server.start_worker(worker_id, options)

    def _watch(self) -> None:
        """Replace a worker process that died, and tell the coordinator at once."""
        with Client(self.address, self.key) as client:
            while not self._watch_stop.is_set():
                try:
                    if self._server.conn not in wait([self._server.conn, self._wake_read]):
                        continue
                    _, worker_id, code = self._server.conn.recv()
                except (EOFError, OSError):
                    if not self._watch_stop.is_set():
                        self._restart_server(client)
                    continue
                if self._watch_stop.is_set():
                    return
                client.send(proto.WORKER_LOST, {"worker_id": worker_id,
                                                "reason": f"its process exited with status {code}"})
                self.replaced += 1
                self._start_worker(worker_id)

    def _restart_server(self, client: Client) -> None:
        """The fork server died (killed): its workers exit with it; start them all again."""
        log.warning("local mode's fork server exited with status %s; restarting its workers",
                    self._server.process.wait())
        self._server.close()
        self._server = forkserver.ForkServer(self.root)
        for i in range(self.num_workers):
            client.send(proto.WORKER_LOST, {"worker_id": f"local-{i}", "reason": "local mode's fork server died"})
            self.replaced += 1
            self._start_worker(f"local-{i}")

    def close(self) -> None:
        self._watch_stop.set()
        self._wake_write.send(b"x")
        if self._watcher.is_alive():
            self._watcher.join(timeout=5)
        self.coordinator.stop()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._server.close()  # the server stops its workers (SIGTERM, then SIGKILL) and exits
        self._wake_read.close()
        self._wake_write.close()
        if self.status_page is not None:
            self.status_page.close()
        shutil.rmtree(self.root, ignore_errors=True)
