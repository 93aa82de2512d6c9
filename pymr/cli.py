"""The ``pymr`` command: submit, worker, coordinator. A thin layer over ``runners``.

Known errors (``PymrError``) become one clear message and their exit code; a failed
task shows the user's own traceback. Exit status 0 means the output is committed.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Sequence
from typing import Any

import click

from . import __version__
from .errors import JobCancelled, JobFailed, JobScriptError, PymrError
from .code import importable
from .inputs import parse_size
from .job import OUTPUT_FORMATS, Job, Option, load_job_class
from .errors import describe_error
from .http import DEFAULT_HTTP

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class SizeType(click.ParamType):
    name = "BYTES"

    def convert(self, value: Any, param, ctx) -> int:
        try:
            return parse_size(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


SIZE = SizeType()


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="pymr")
@click.option("-v", "--verbose", count=True,
              help="Log more (-v: info, -vv: debug). Lines start with UTC time, role and pid.")
def main(verbose: int) -> None:
    """pymr: MapReduce batch processing for Python.

    Write a job script with a pymr.Job subclass, then run it with `pymr submit`,
    on this machine (several worker processes) or on a cluster.
    """
    role = ROLES.get(click.get_current_context().invoked_subcommand or "", "pymr")
    configure_logging(role, logging.WARNING - 10 * min(verbose, 2))
    if verbose:  # workers started from here (local mode) show their tasks' output live
        os.environ.setdefault("PYMR_ECHO_TASK_OUTPUT", "1")


ROLES = {"submit": "client", "worker": "worker", "coordinator": "coordinator", "keygen": "keygen"}


def configure_logging(role: str, level: int) -> None:
    """Log lines that can be merged across machines: UTC ISO time, role and pid, level, logger."""
    formatter = logging.Formatter(f"%(asctime)s.%(msecs)03dZ {role}[%(process)d] %(levelname)s %(name)s: %(message)s",
                                  datefmt="%Y-%m-%dT%H:%M:%S")
    formatter.converter = time.gmtime
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    logging.basicConfig(level=level, handlers=[handler])


# -- submit -----------------------------------------------------------------------------------
def _submit_params(with_script: bool) -> list[click.Parameter]:
    params: list[click.Parameter] = []
    if with_script:
        params.append(click.Argument(["job_script"], metavar="JOB.py", type=click.Path(dir_okay=False)))
    return params + [
        click.Argument(["inputs"], nargs=-1, required=True, metavar="INPUT..."),
        click.Option(["-o", "--output"], required=True, metavar="DIR",
                     help="Output folder or URI, e.g. s3://bucket/prefix (must not exist unless --overwrite, "
                          "nor lie in an input folder unless its name starts with _)."),
        click.Option(["--workers", "-w"], type=click.IntRange(min=1), default=None,
                     help="Worker processes in local mode [default: number of CPU cores]; a cluster has the "
                          "workers it has."),
        click.Option(["--reducers", "-r"], type=click.IntRange(min=1), default=None,
                     help="Reduce tasks, one part file each [default: the job's, usually 1]."),
        click.Option(["--split-size"], type=SIZE, default=None,
                     help="Bytes of input per map task; suffixes K, M, G [default: the job's, 64M]."),
        click.Option(["--inline"], is_flag=True, help="Run everything in this process, without ZeroMQ (for debuggers)."),
        click.Option(["--overwrite"], is_flag=True,
                     help="Replace the output folder if it exists, once the job succeeds (a failed job leaves it "
                          "as it was)."),
        click.Option(["--output-format"], type=click.Choice(OUTPUT_FORMATS), default=None,
                     help="text: key<TAB>value lines; jsonl: [key, value] lines; parquet: key and value "
                          "columns [default: the job's, text]."),
        click.Option(["--coordinator"], metavar="ADDR", envvar="PYMR_COORDINATOR", default=None,
                     help="Submit to a running coordinator (tcp://HOST:PORT) instead of local mode [env PYMR_COORDINATOR]."),
        click.Option(["--secret-file"], metavar="FILE", envvar="PYMR_SECRET_FILE", default=None,
                     help="The cluster key (from `pymr keygen`) for --coordinator [env PYMR_SECRET_FILE]."),
        click.Option(["--reconnect-timeout"], type=click.FloatRange(min=0), default=120.0, show_default=True,
                     envvar="PYMR_RECONNECT_TIMEOUT", metavar="SECONDS",
                     help="With --coordinator: how long to keep trying to reach a coordinator that went away "
                          "(restarted with --state-dir, it resumes the job and this command follows it to the "
                          "end) [env PYMR_RECONNECT_TIMEOUT]."),
        click.Option(["--job", "job_name"], metavar="NAME", default=None,
                     help="The Job class to run, when the script defines several."),
        click.Option(["--input-format"], metavar="NAME", default=None,
                     help="Format of every input (text, jsonl, csv, parquet, arrow, wholefile) [default: by "
                          "file extension, else text]; or prefix one input: csv:orders/."),
        click.Option(["--skip-bad-records"], is_flag=True, default=None,
                     help="Count and skip undecodable input lines instead of failing."),
        click.Option(["--file", "files"], multiple=True, metavar="PATH",
                     help="A small file or folder to ship to every task, read there at self.files[NAME] "
                          "(repeat for more)."),
        click.Option(["--py-files", "py_files"], multiple=True, metavar="PATH",
                     help="A module the job imports that is not beside JOB.py: a .py file, a package folder or "
                          "a .zip, shipped to every task (repeat for more). Modules beside JOB.py ship by "
                          "themselves; installed packages must be installed on the workers."),
        click.Option(["--sort-buffer"], type=SIZE, default=None,
                     help="Map output held in memory before spilling to disk, per task [default: 128M]."),
        click.Option(["--max-attempts"], type=click.IntRange(min=1), default=None,
                     help="Attempts per task before the job fails [default: 4]."),
        click.Option(["--exclude-after"], type=click.IntRange(min=1), default=None,
                     help="Failed attempts on one worker after which it gets no more of the job's tasks, while "
                          "another worker can take them [default: 2]."),
        click.Option(["--quiet", "-q"], is_flag=True, help="No progress display or summary."),
        click.Option(["--http", "http_address"], metavar="HOST:PORT|off", default="127.0.0.1:0",
                     help="Local mode: serve the status page here while the job runs [default: a free "
                          "loopback port]; off: no page."),
        click.Option(["--arrow-threads"], type=click.IntRange(min=1), default=None, metavar="N",
                     help="Local mode: threads of Arrow's CPU and I/O pools in each task process (with --inline, "
                          "in this one, for the run) [default: env PYMR_ARROW_THREADS, else 1]; a cluster's workers "
                          "take theirs from `pymr worker`."),
        click.Option(["--json", "json_report"], is_flag=True,
                     help="Print the job's report (DIR/_REPORT.json: counters, tasks, attempts, times) to stdout."),
    ]


def _option_param(option: Option) -> click.Option:
    if option.type is bool:
        return click.Option([option.flag + "/--no-" + option.flag[2:], option.attr], default=bool(option.default),
                            help=option.help + " [job option]")
    extra = {"default": option.default, "show_default": True} if option.default is not None else {}
    return click.Option([option.flag, option.attr], type=option.type, required=option.required,
                        help=option.help + " [job option]", **extra)


class SubmitCommand(click.Command):
    """``pymr submit``: its flags grow the job's own options once the script is known."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.base_params = list(self.params)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        self.params = list(self.base_params)
        script = next((a for a in args if a.endswith(".py") and not a.startswith("-")), None)
        if script is not None and os.path.isfile(script):
            name = _value_after(args, "--job")
            try:
                importable(_values_after(args, "--py-files"))  # the script may import from them
                job_class = load_job_class(script, name)
            except JobScriptError as exc:
                raise click.exceptions.Exit(_fail(str(exc), exc.exit_code)) from None
            ctx.meta["pymr.job_class"] = job_class
            self.params += [_option_param(o) for o in job_class.options]
        return super().parse_args(ctx, args)


def _value_after(args: list[str], flag: str) -> str | None:
    values = _values_after(args, flag)
    return values[0] if values else None


def _values_after(args: list[str], flag: str) -> list[str]:
    values = []
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            values.append(args[i + 1])
        elif arg.startswith(flag + "="):
            values.append(arg.split("=", 1)[1])
    return values


def _submit(job_class: type[Job] | None, job_script: str | None = None, **kwargs: Any) -> None:
    """Run the job and exit with its status."""
    if job_class is None:
        job_class = click.get_current_context().meta.get("pymr.job_class") or _load_or_exit(job_script, kwargs)
    options = {o.attr: kwargs.pop(o.attr) for o in job_class.options if o.attr in kwargs}
    quiet = kwargs.pop("quiet")
    json_report = kwargs.pop("json_report")
    kwargs.pop("job_name", None)
    progress = None if quiet else ProgressDisplay()
    settings = dict(
        workers=kwargs["workers"], reducers=kwargs["reducers"], split_size=kwargs["split_size"],
        inline=kwargs["inline"], overwrite=kwargs["overwrite"], output_format=kwargs["output_format"],
        coordinator=kwargs["coordinator"], secret_file=kwargs["secret_file"],
        skip_bad_records=kwargs["skip_bad_records"],
        buffer_bytes=kwargs["sort_buffer"], max_attempts=kwargs["max_attempts"],
        exclude_after=kwargs["exclude_after"],
        input_format=kwargs["input_format"], files=list(kwargs["files"]), py_files=list(kwargs["py_files"]),
        reconnect_timeout_s=kwargs["reconnect_timeout"], on_notice=None if progress is None else progress.notice,
        quiet=quiet, http=None if kwargs["http_address"].strip().lower() == "off" else kwargs["http_address"],
        arrow_threads=kwargs["arrow_threads"],
    )
    if not settings["inline"] and not settings["coordinator"]:
        from . import forkserver

        forkserver.start_early()  # local mode: the workers' imports overlap this process's
    from .runners import run_job

    started = time.monotonic()
    try:
        result = run_job(job_class, list(kwargs["inputs"]), kwargs["output"], options=options,
                         on_progress=progress, **settings)
    except KeyboardInterrupt:
        _end_progress(progress)
        what = "the old output kept" if kwargs["overwrite"] else "its output removed"
        sys.exit(_fail(f"interrupted: the job was cancelled and {what}", 130))
    except JobCancelled as exc:
        _end_progress(progress)
        sys.exit(_fail(str(exc), exc.exit_code))
    except JobFailed as exc:
        _end_progress(progress)
        sys.exit(_fail(_failure_text(exc), exc.exit_code))
    except PymrError as exc:
        _end_progress(progress)
        sys.exit(_fail(str(exc), exc.exit_code))
    except Exception as exc:  # the user's own exception, raised in --inline mode
        _end_progress(progress)
        error = describe_error(exc)
        where = getattr(exc, "pymr_task", "a task")
        sys.exit(_fail(f"job {job_class.__name__} failed: {where} raised {error['type']}:\n{error['traceback']}", 1))
    _end_progress(progress)
    if not quiet:
        click.echo(summary(job_class.__name__, result.report, time.monotonic() - started), err=True)
    if json_report:
        click.echo(json.dumps(result.report, indent=2, default=repr))


def _load_or_exit(job_script: str | None, kwargs: dict[str, Any]) -> type[Job]:
    try:
        return load_job_class(job_script or "", kwargs.get("job_name"))
    except JobScriptError as exc:
        sys.exit(_fail(str(exc), exc.exit_code))


def _fail(message: str, code: int) -> int:
    click.echo(f"pymr: error: {message}", err=True)
    return code


def _failure_text(exc: JobFailed) -> str:
    detail = exc.task_error or {}
    text = str(exc)
    if detail.get("traceback"):
        text += "\n" + detail["traceback"]
    if detail.get("log_tail"):
        text += "\nlast lines of the failed attempt's output:\n" + detail["log_tail"]
    return text


submit = SubmitCommand(
    "submit",
    context_settings=CONTEXT,
    callback=lambda **kw: _submit(None, **kw),
    params=_submit_params(with_script=True),
    help="""Run the job in JOB.py over INPUT... (files, folders, glob patterns) into DIR.

    Without --coordinator this runs in local mode: a coordinator and --workers worker
    processes on this machine, forked from one process that imports pyarrow and
    pymr once; each task process runs Arrow with --arrow-threads threads
    (default 1). Exit status is 0 only when the output is committed
    (DIR/_SUCCESS written). Job options declared by the script appear below once
    JOB.py is given (try: pymr submit JOB.py --help).""",
)
main.add_command(submit)


def submit_job_main(job_class: type[Job], argv: Sequence[str] | None = None) -> None:
    """``python job.py INPUT... -o DIR``: the same flags as ``pymr submit``, for one job."""
    params = _submit_params(with_script=False) + [_option_param(o) for o in job_class.options]
    params = [p for p in params if p.name != "job_name"]
    command = click.Command(job_class.__name__, context_settings=CONTEXT, params=params,
                            callback=lambda **kw: _submit(job_class, job_name=None, **kw),
                            help=(job_class.__doc__ or f"Run {job_class.__name__}.").strip())
    configure_logging("client", logging.WARNING)
    command.main(args=list(argv) if argv is not None else None, prog_name=os.path.basename(sys.argv[0]))


class ProgressDisplay:
    """Job progress on stderr: % of input bytes mapped, reduce tasks done, map throughput
    and ETA. On a terminal one line rewritten in place; in a pipe or a CI log, one line
    every ``PIPE_INTERVAL_S`` (and at each change of phase), without control characters.
    Prints each job id as it first appears, so the job can be followed or cancelled
    from another terminal."""

    PIPE_INTERVAL_S = 5.0

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.last = ""
        self.last_s = 0.0
        self.last_phase = ""
        self.job_ids: set[str] = set()
        self.reduce_started_s: float | None = None  # the job's elapsed time when its maps were seen done

    def __call__(self, body: dict[str, Any]) -> None:
        job_id = body.get("job_id")
        if job_id and job_id not in self.job_ids:
            self.job_ids.add(job_id)
            self.reduce_started_s = None
            self._write_line(f"pymr: job {job_id}" + (f" (step {body['step']})" if "step" in body else ""))
        if body["maps_done"] == body["maps_total"] and self.reduce_started_s is None:
            self.reduce_started_s = float(body.get("elapsed_s") or 0.0)
        phase, line = progress_line(body, self.reduce_started_s)
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r" + line.ljust(len(self.last)))
            self.stream.flush()
            self.last = line
        elif phase != self.last_phase or now - self.last_s >= self.PIPE_INTERVAL_S:
            self.stream.write(line + "\n")
            self.stream.flush()
            self.last_phase, self.last_s = phase, now

    def _write_line(self, text: str) -> None:
        if self.tty and self.last:
            self.stream.write("\r" + " " * len(self.last) + "\r")
            self.last = ""
        self.stream.write(text + "\n")
        self.stream.flush()

    def notice(self, text: str) -> None:
        """A line about the job's connection (lost, found again), not overwritten by progress."""
        if self.tty:
            self.stream.write("\r" + f"pymr: {text}".ljust(len(self.last)) + "\n")
            self.last = ""
        else:
            self.stream.write(f"pymr: {text}\n")
        self.stream.flush()

    def end(self) -> None:
        if self.tty and self.last:
            self.stream.write("\n")
            self.stream.flush()
            self.last = ""


def progress_line(body: dict[str, Any], reduce_started_s: float | None = None) -> tuple[str, str]:
    """The phase a progress message is in, and the line that shows it (the reduce phase's
    ETA from its pace since ``reduce_started_s``, running tasks' progress included)."""
    elapsed = float(body.get("elapsed_s") or 0.0)
    maps_done, maps_total = body["maps_done"], body["maps_total"]
    bytes_total = body.get("map_bytes_total") or 0
    bytes_done = body.get("map_bytes_read") or body.get("map_bytes_done") or 0  # running maps' reads included
    fraction = bytes_done / bytes_total if bytes_total else (maps_done / maps_total if maps_total else 1.0)
    parts = [f"map {fraction:4.0%} ({maps_done}/{maps_total})"]
    if body["reduces_total"]:
        share = body.get("reduce_fraction")
        parts.append(f"reduce {body['reduces_done']}/{body['reduces_total']}"
                     + (f" {share:.0%}" if share and body["reduces_done"] < body["reduces_total"] else ""))
    phase = "map" if maps_done < maps_total else "reduce" if body["reduces_done"] < body["reduces_total"] else "done"
    rate = bytes_done / elapsed if elapsed > 0 and bytes_done else None
    if phase == "map" and rate:
        parts.append(f"{_bytes(rate)}/s")
        parts.append(f"ETA {_duration((bytes_total - bytes_done) / rate)}")
    elif phase == "map" and maps_done and elapsed > 0:
        parts.append(f"ETA {_duration(elapsed * (maps_total - maps_done) / maps_done)}")
    elif phase == "reduce" and reduce_started_s is not None:
        spent = elapsed - reduce_started_s
        share = body.get("reduce_fraction") or body["reduces_done"] / body["reduces_total"]
        if share:
            parts.append(f"ETA {_duration(spent * (1 - share) / share)}")
    parts.append(f"running {body['running']}")
    if body.get("failed_attempts"):
        parts.append(f"failed attempts {body['failed_attempts']}")
    parts.append(_duration(elapsed))
    if "step" in body:
        parts.insert(0, f"step {body['step']}")
        phase = f"{body['step']} {phase}"
    return phase, "  ".join(parts)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}m{seconds:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def _end_progress(progress: ProgressDisplay | None) -> None:
    if progress is not None:
        progress.end()


def summary(name: str, report: dict[str, Any], wall_s: float) -> str:
    """The end-of-job summary: tasks, records and bytes per phase, counters, time."""
    counters = report.get("counters", {})
    fw = counters.get("pymr", {})
    lines = [
        f"pymr: job {name} succeeded in {wall_s:.2f} s -> {report['output']}",
        f"  tasks: {report['map_tasks']} map, {report['reduce_tasks']} reduce"
        f" ({report['attempts']} attempts, {report['failed_attempts']} failed)",
        f"  map: {fw.get('map input records', 0):,} records in ({_bytes(fw.get('map input bytes', 0))}),"
        f" {fw.get('map output records', 0):,} out",
    ]
    if report["reduce_tasks"]:
        lines.append(f"  shuffle: {_bytes(fw.get('shuffle bytes', 0))}"
                     f" ({fw.get('reduce input records', 0):,} records, {fw.get('reduce input groups', 0):,} keys)")
        lines.append(f"  reduce: {fw.get('reduce output records', 0):,} records out ({_bytes(fw.get('output bytes', 0))})")
    for group, names in counters.items():
        if group == "pymr":
            continue
        for counter, amount in names.items():
            lines.append(f"  {group}: {counter} = {amount:,}")
    if fw.get("bad records skipped"):
        lines.append(f"  bad records skipped: {fw['bad records skipped']:,}")
    return "\n".join(lines)


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


# -- services ---------------------------------------------------------------------------------
SECRET_HELP = "The cluster key file from `pymr keygen` [env PYMR_SECRET_FILE]."


def _key_or_exit(secret_file: str | None, address: str, what: str):
    from .security import is_loopback, read_key_file

    if secret_file is None:
        if not is_loopback(address):
            sys.exit(_fail(f"refusing to use {address} without --secret-file: a {what} runs code it is sent, so "
                           "non-loopback traffic must be authenticated (create a key with: pymr keygen FILE)", 2))
        click.echo(f"pymr {what}: no --secret-file: unauthenticated, loopback only", err=True)
        return None
    try:
        return read_key_file(secret_file)
    except PymrError as exc:
        sys.exit(_fail(str(exc), exc.exit_code))


@main.command(context_settings=CONTEXT)
@click.option("--coordinator", "address", required=True, envvar="PYMR_COORDINATOR", metavar="ADDR",
              help="The coordinator to serve (tcp://HOST:PORT) [env PYMR_COORDINATOR].")
@click.option("--secret-file", envvar="PYMR_SECRET_FILE", metavar="FILE", default=None, help=SECRET_HELP)
@click.option("--slots", type=click.IntRange(min=1), default=1, show_default=True, envvar="PYMR_SLOTS",
              help="Tasks this worker runs at the same time, each in its own process [env PYMR_SLOTS].")
@click.option("--data-dir", envvar="PYMR_DATA_DIR", type=click.Path(file_okay=False), default=None,
              help="Where map outputs are kept [default: a new temporary folder] [env PYMR_DATA_DIR].")
@click.option("--host", envvar="PYMR_HOST", default=None, metavar="ADDR",
              help="The address other workers reach this one at, to fetch map outputs; its shuffle server "
                   "listens there and nowhere else (IPv6: ::1) [default: 127.0.0.1 without a secret, else this "
                   "host's address] [env PYMR_HOST].")
@click.option("--worker-id", default=None, help="A name for this worker [default: host-pid-random].")
@click.option("--stale-job-age", type=click.FloatRange(min=0), default=24 * 3600.0, show_default=True,
              envvar="PYMR_STALE_JOB_AGE", metavar="SECONDS",
              help="At start-up, delete the files of jobs in --data-dir untouched for this long (the rest go "
                   "once the coordinator says their jobs are over) [env PYMR_STALE_JOB_AGE].")
@click.option("--arrow-threads", type=click.IntRange(min=1), default=None, metavar="N",
              help="Threads of Arrow's CPU and I/O pools in each task process: raise it for few slots on a big "
                   "machine whose jobs spend their time in Arrow [default: env PYMR_ARROW_THREADS, else 1].")
@click.option("--exit-with-parent", is_flag=True, hidden=True)
def worker(address: str, secret_file: str | None, slots: int, data_dir: str | None, host: str | None,
           worker_id: str | None, stale_job_age: float, arrow_threads: int | None, exit_with_parent: bool) -> None:
    """Run a worker that takes tasks from a coordinator until it is stopped.

    The worker runs each task in a child process, keeps map outputs in --data-dir and
    serves them to reducers on other machines. If the coordinator goes away, the
    worker keeps trying to reconnect. Each task process runs Arrow with
    --arrow-threads threads (default 1: a task process runs one task at a time).
    """
    from .worker import Worker

    from .security import is_loopback_host

    key = _key_or_exit(secret_file, address, "worker")
    if key is None and host is not None and not is_loopback_host(host):
        sys.exit(_fail("--host other than loopback needs --secret-file", 2))
    try:
        service = Worker(address, worker_id, slots, data_dir, exit_with_parent, key=key, host=host,
                         stale_job_age_s=stale_job_age, arrow_threads=arrow_threads)
    except PymrError as exc:  # the address (not this machine's, unknown name, ...), PYMR_ARROW_THREADS
        sys.exit(_fail(str(exc), exc.exit_code))
    if not exit_with_parent:  # local mode's workers stay quiet
        click.echo(f"pymr worker {service.worker_id}: {slots} slot(s), map outputs in {service.data_dir}, "
                   f"served at {service.shuffle.address}", err=True)
    try:
        code = service.run()
    except KeyboardInterrupt:
        code = 0
    except PymrError as exc:  # the coordinator's address is not one
        code = _fail(str(exc), exc.exit_code)
    sys.exit(code)


@main.command(context_settings=CONTEXT)
@click.option("--bind", default="tcp://127.0.0.1:5555", show_default=True, envvar="PYMR_BIND", metavar="ADDR",
              help="Address to listen on, e.g. tcp://[::1]:5555 for IPv6 [env PYMR_BIND]; non-loopback "
                   "addresses need --secret-file.")
@click.option("--secret-file", envvar="PYMR_SECRET_FILE", metavar="FILE", default=None, help=SECRET_HELP)
@click.option("--worker-timeout", type=float, default=10.0, show_default=True,
              help="Seconds without a heartbeat after which a worker is taken for dead (heartbeats: every 1 s).")
@click.option("--state-dir", envvar="PYMR_STATE_DIR", metavar="DIR", default=None,
              help="Keep the cluster's state (jobs, task commits, finished jobs) in an SQLite database in DIR, so "
                   "that a coordinator started again on it resumes the jobs that were running [env PYMR_STATE_DIR]. "
                   "Without it, a coordinator that stops loses its running jobs.")
@click.option("--http", "http_address", default=DEFAULT_HTTP, show_default=True, envvar="PYMR_HTTP",
              metavar="HOST:PORT|off",
              help="Serve the status page, its JSON API and /metrics here; off: no page [env PYMR_HTTP]. "
                   "If the default port is taken, a free loopback port is used. A non-loopback address "
                   "needs --secret-file, and a token (pymr token).")
@click.pass_context
def coordinator(ctx: click.Context, bind: str, secret_file: str | None, worker_timeout: float, state_dir: str | None,
                http_address: str) -> None:
    """Run a coordinator that accepts jobs and workers until Ctrl-C or SIGTERM.

    Several jobs may run at once; tasks go to workers oldest job first. Without
    --state-dir, stopping the coordinator cancels its running jobs (what they wrote is
    removed; the old output of an --overwrite job is kept); with it, they resume when a
    coordinator starts again on the same --state-dir, and the `pymr submit` processes
    waiting for them follow them to the end. Workers wait for the coordinator to come back.
    """
    import signal

    from .coordinator import Coordinator

    key = _key_or_exit(secret_file, bind, "coordinator")
    if not logging.getLogger().isEnabledFor(logging.INFO):  # jobs, workers and failures are this service's news
        logging.getLogger("pymr.coordinator").setLevel(logging.INFO)
    explicit = ctx.get_parameter_source("http_address") != click.core.ParameterSource.DEFAULT
    page = _status_page_or_exit(http_address, key, explicit)
    try:
        service = Coordinator(bind, worker_timeout_s=worker_timeout, key=key, state_dir=state_dir)
    except PymrError as exc:  # the address (in use, unknown name, ...), the state dir
        if page is not None:
            page.close()
        sys.exit(_fail(str(exc), exc.exit_code))
    if page is not None:
        service.board = page.board
    signal.signal(signal.SIGTERM, lambda *_: service.stop())
    if page is not None:  # (before "listening on", which tests and scripts wait for)
        click.echo(f"pymr coordinator: status page at {page.url}" + (" (needs its token: pymr token)"
                                                                      if page.token else ""), err=True)
    click.echo(f"pymr coordinator listening on {service.address}", err=True)
    try:
        service.serve()
    except KeyboardInterrupt:
        service.stop()
    finally:
        if page is not None:
            page.close()


def _status_page_or_exit(address: str, key, explicit: bool):
    """The status page's server, None for "off", or exit 2 naming the address."""
    from .http import StatusServer
    from .status import StatusBoard

    if address.strip().lower() == "off":
        return None
    try:
        return StatusServer(address, StatusBoard(), key, explicit=explicit)
    except PymrError as exc:
        sys.exit(_fail(str(exc), exc.exit_code))


@main.command(context_settings=CONTEXT)
@click.argument("path", metavar="FILE", required=False)
@click.option("-o", "--output", "output", metavar="FILE", default=None, help="The key file (instead of FILE).")
@click.option("--force", is_flag=True, help="Replace FILE if it exists (a symbolic link itself, not its target).")
def keygen(path: str | None, output: str | None, force: bool) -> None:
    """Create a cluster key FILE (mode 0600) for --secret-file.

    Copy it to every machine of the cluster: anyone who holds it can submit jobs,
    run workers and read shuffle data, and nobody else can.
    """
    from .security import generate_key, write_key_file

    path = path or output
    if not path:
        raise click.UsageError("give the key file: pymr keygen FILE")

    try:
        write_key_file(path, generate_key(), overwrite=force)
    except PymrError as exc:
        sys.exit(_fail(str(exc), exc.exit_code))
    click.echo(f"wrote cluster key to {path} (mode 0600)", err=True)


@main.command(context_settings=CONTEXT)
@click.option("--secret-file", envvar="PYMR_SECRET_FILE", metavar="FILE", required=True, help=SECRET_HELP)
@click.option("--http", "http_address", default=DEFAULT_HTTP, show_default=True, envvar="PYMR_HTTP",
              metavar="HOST:PORT", help="The coordinator's --http address, for the URL printed [env PYMR_HTTP].")
def token(secret_file: str, http_address: str) -> None:
    """Print the status page's access token (derived from the cluster key) and the URL to open.

    A coordinator serving its page on a non-loopback address answers only requests that
    carry it: `Authorization: Bearer TOKEN`, or ?token=TOKEN once in a browser (it then
    sets a cookie).
    """
    from .http import access_token, parse_address
    from .security import read_key_file

    try:
        key = read_key_file(secret_file)
        host, port = parse_address(http_address)
    except PymrError as exc:
        sys.exit(_fail(str(exc), exc.exit_code))
    value = access_token(key)
    click.echo(value)
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"open: http://{shown}:{port}/?token={value}", err=True)


# -- steering a running cluster ------------------------------------------------------------------
def _cluster_options(command):
    command = click.option("--secret-file", envvar="PYMR_SECRET_FILE", metavar="FILE", default=None,
                           help=SECRET_HELP)(command)
    return click.option("--coordinator", "address", envvar="PYMR_COORDINATOR", default="tcp://127.0.0.1:5555",
                        show_default=True, metavar="ADDR",
                        help="The coordinator (tcp://HOST:PORT) [env PYMR_COORDINATOR].")(command)


def _control(address: str, secret_file: str | None):
    from .control import Control
    from .security import read_key_file

    try:
        return Control(address, read_key_file(secret_file) if secret_file else None)
    except PymrError as exc:
        sys.exit(_fail(str(exc), exc.exit_code))


def _steer(address: str, secret_file: str | None, action) -> Any:
    """Run ``action(control)``; a known error becomes its message and exit code."""
    with _control(address, secret_file) as control:
        try:
            return action(control)
        except PymrError as exc:
            sys.exit(_fail(str(exc), exc.exit_code))


@main.command(context_settings=CONTEXT)
@click.option("--all", "everything", is_flag=True, help="Finished jobs too (the last 1,000).")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON list (as GET /api/jobs gives it).")
@_cluster_options
def jobs(everything: bool, as_json: bool, address: str, secret_file: str | None) -> None:
    """List the running jobs of a cluster (with --all, finished ones too)."""
    listed = _steer(address, secret_file, lambda c: c.jobs(everything))
    if as_json:
        click.echo(json.dumps(listed, indent=2))
        return
    if not listed:
        click.echo("no running job" if not everything else "no job", err=True)
        return
    click.echo(f"{'JOB':<30} {'STATE':<10} {'MAPS':>9} {'REDUCES':>9} {'FAILED':>6} {'TIME':>9}  NAME")
    for job in listed:
        click.echo(f"{job['job_id']:<30} {job['state']:<10} {job['maps_done']:>4}/{job['maps_total']:<4} "
                   f"{job['reduces_done']:>4}/{job['reduces_total']:<4} {job['failed_attempts']:>6} "
                   f"{(job.get('elapsed_s') or 0):>8.1f}s  {job['name']}")


@main.command(context_settings=CONTEXT)
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON object (as GET /api/jobs/JOB_ID gives it).")
@click.option("--follow", "-f", is_flag=True, help="Show progress until the job ends; exit with its status as "
                                                   "pymr submit would.")
@_cluster_options
def status(job_id: str, as_json: bool, follow: bool, address: str, secret_file: str | None) -> None:
    """Show one job: state, progress, error. Exit 2 if the cluster does not know it."""
    if follow:
        sys.exit(_steer(address, secret_file, lambda c: _follow(c, job_id, as_json)))
    job = _steer(address, secret_file, lambda c: c.job(job_id))
    click.echo(json.dumps(job, indent=2) if as_json else _job_text(job))


def _follow(control, job_id: str, as_json: bool) -> int:
    """Poll the job every second until it ends; its exit status is submit's."""
    progress = None if as_json else ProgressDisplay()
    while True:
        job = control.job(job_id, brief=True)
        if job.get("ended"):  # committed (or removed): as submit, which returns only then
            break
        if progress is not None:
            progress(job)
        time.sleep(1.0)
    _end_progress(progress)
    click.echo(json.dumps(job, indent=2) if as_json else _job_text(job), err=not as_json)
    return {"succeeded": 0, "cancelled": JobCancelled.exit_code}.get(job["state"], JobFailed.exit_code)


def _job_text(job: dict[str, Any]) -> str:
    lines = [f"job {job['job_id']} ({job['name']}): {job['state']}, {job.get('elapsed_s') or 0:.1f} s"]
    for name, phase in (job.get("phases") or {}).items():
        if phase["tasks_total"]:
            line = f"  {name}: {phase['tasks_done']}/{phase['tasks_total']} tasks ({phase['fraction']:.0%})"
            if phase.get("bytes_total"):
                line += f", {_bytes(phase.get('bytes_read', phase['bytes_done']))} of {_bytes(phase['bytes_total'])} read"
            if phase["running"]:
                line += f", {phase['running']} running"
            lines.append(line)
    if job.get("failed_attempts"):
        lines.append(f"  failed attempts: {job['failed_attempts']}")
    if job.get("output"):
        lines.append(f"  output: {job['output']}")
    if job.get("error"):
        lines.append(f"  error: {job['error']}")
    detail = job.get("error_detail") or {}
    if detail.get("traceback"):
        lines.append(detail["traceback"])
    if detail.get("log_tail"):
        lines.append("last lines of the attempt's output:\n" + detail["log_tail"])
    return "\n".join(lines)


@main.command(context_settings=CONTEXT)
@click.argument("job_id")
@_cluster_options
def cancel(job_id: str, address: str, secret_file: str | None) -> None:
    """Cancel a running job: nothing is committed and its output is removed, as Ctrl-C on submit."""
    job = _steer(address, secret_file, lambda c: c.cancel(job_id))
    if job["state"] == "cancelled":
        click.echo(f"job {job_id} cancelled", err=True)
    else:
        click.echo(f"job {job_id} had already ended: {job['state']}", err=True)


@main.command(context_settings=CONTEXT)
@click.argument("job_id")
@click.argument("task_id", required=False)
@click.option("--attempt", type=click.IntRange(min=0), default=None,
              help="Which attempt of TASK_ID (0 is the first) [default: all of its attempts].")
@_cluster_options
def logs(job_id: str, task_id: str | None, attempt: int | None, address: str, secret_file: str | None) -> None:
    """Print what an attempt printed or logged (by default: every failed attempt of the job).

    TASK_ID is as the status page and `pymr status --json` name tasks: m00003, r00000.
    """
    if attempt is not None and task_id is None:
        raise click.UsageError("--attempt needs a TASK_ID")
    places = _steer(address, secret_file, lambda c: c.logs(job_id, task_id, attempt))
    if not places:
        click.echo(f"job {job_id} has no failed attempt (name a task to see its output: pymr logs {job_id} "
                   "m00000)", err=True)
    for place in places:
        click.echo(f"==> {place['task_id']} attempt {place['attempt']} on {place['worker_id']} "
                   f"({place['state']}) <==", err=True)
        if place.get("problem"):
            click.echo(f"(cannot read it: {place['problem']})", err=True)
        elif not place["text"]:
            click.echo("(no output captured)", err=True)
        else:
            click.echo(place["text"].rstrip("\n"))


@main.command(context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print the JSON list (as GET /api/workers gives it).")
@_cluster_options
def workers(as_json: bool, address: str, secret_file: str | None) -> None:
    """List the workers of a cluster: host, slots, running attempts, last heartbeat."""
    listed = _steer(address, secret_file, lambda c: c.workers())
    if as_json:
        click.echo(json.dumps(listed, indent=2))
        return
    click.echo(f"{'WORKER':<24} {'HOST':<16} {'SLOTS':>5} {'RUNNING':>7} {'HEARD':>7} {'FAILED':>6}  EXCLUDED")
    for w in listed:
        click.echo(f"{w['worker_id']:<24} {w.get('host') or '-':<16} {w['slots']:>5} {len(w['running']):>7} "
                   f"{w['last_heartbeat_s']:>6.1f}s {w['failed_attempts']:>6}  {'yes' if w['excluded'] else 'no'}")


def run() -> None:
    try:
        main(prog_name="pymr")
    except KeyboardInterrupt:
        sys.exit(_fail("interrupted", 130))


__all__ = ["main", "submit_job_main", "summary", "traceback"]
