"""Per-attempt logs, the finished-jobs history, the status board and the progress line,
tested on their own (real files, real threads, a real child process)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time

from pymr import attempt_log, status
from pymr.cli import ProgressDisplay, progress_line

from conftest import ROOT


def _in_a_fresh_python(code: str) -> None:
    """Run ``code`` as an executor would: sys.stdout on fd 1, no logging handlers (pytest's
    own capture would otherwise take the prints before they reach the fds)."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    return result


def test_capture_takes_prints_child_processes_and_logging(tmp_path):
    path = tmp_path / "job" / "logs" / "a-m00001-0.log"
    result = _in_a_fresh_python(f"""
import logging, subprocess, sys
from pymr.attempt_log import Capture
with Capture({str(path)!r}):
    print("from print")
    print("to stderr", file=sys.stderr)
    subprocess.run([sys.executable, "-c", "import os; os.write(1, b'from a child' + bytes([10]))"], check=True)
    logging.getLogger("user").warning("from logging")
print("after the attempt")
""")
    text = path.read_text()
    for expected in ("from print", "to stderr", "from a child", "WARNING user: from logging"):
        assert expected in text and expected not in result.stdout + result.stderr
    assert result.stdout == "after the attempt\n"  # fds are back once the attempt ends
    assert attempt_log.log_tail(str(path), 2) == "from a child\nWARNING user: from logging"


def test_an_attempt_that_prints_nothing_leaves_no_file(tmp_path):
    path = tmp_path / "logs" / "quiet.log"
    with attempt_log.Capture(str(path)):
        pass
    assert not path.exists()


def test_a_log_keeps_its_last_bytes_and_says_what_was_dropped(tmp_path):
    path = tmp_path / "big.log"
    log = attempt_log.CappedFile(str(path), cap=1000)
    lines = [f"line {i:05d}\n".encode() for i in range(1000)]  # 11,000 bytes
    for line in lines:
        log.write(line)
        assert os.path.getsize(path) <= 2 * 1000 + 100
    log.close()
    text = path.read_text().splitlines()
    assert text[0].startswith("[pymr: ") and "bytes of earlier output dropped" in text[0]
    assert text[-1] == "line 00999" and all(t.startswith("line ") for t in text[1:])
    assert len(path.read_bytes()) <= 1000 + len(text[0]) + 1
    dropped = int(text[0].split()[1].replace(",", ""))
    assert dropped + sum(len(t) + 1 for t in text[1:]) == 11_000


def test_a_failed_attempt_reply_gets_the_tail_of_its_output(tmp_path):
    task = {"job_id": "job_x", "attempt_id": "job_x-m00000-0"}
    result = _in_a_fresh_python(f"""
import json
from pymr.attempt_log import run_captured
def run_one(task, settings):
    for i in range(30):
        print(f"step {{i}}")
    return ("failed", {{"type": "ValueError", "message": "boom"}}, b"")
print(json.dumps(run_captured(run_one, {task!r}, {{"data_dir": {str(tmp_path)!r}}})[1]))
""")
    assert json.loads(result.stdout)["log_tail"].splitlines() == [f"step {i}" for i in range(10, 30)]
    body, data = attempt_log.read_for_client(str(tmp_path), task)
    assert body["found"] and data.decode().count("step") == 30


def test_a_worker_keeps_only_logs_when_a_job_ends_and_prunes_old_jobs(tmp_path):
    for n in range(4):
        job = tmp_path / f"job_{n}"
        (job / "logs").mkdir(parents=True)
        (job / "logs" / f"job_{n}-m00000-0.log").write_text(f"output of job {n}")
        (job / f"job_{n}-m00000-0").mkdir()
        (job / f"job_{n}-m00000-0" / "map.arrow").write_bytes(b"data")
        attempt_log.remove_job_files(str(job), kept_jobs=2)
        os.utime(tmp_path / "logs" / f"job_{n}", (n, n))
    silent = tmp_path / "job_9"
    (silent / "m").mkdir(parents=True)  # a job whose attempts printed nothing
    attempt_log.remove_job_files(str(silent), kept_jobs=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs"]  # no job folder is left
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["job_2", "job_3"]
    body, data = attempt_log.read_for_client(str(tmp_path), {"job_id": "job_3", "attempt_id": "job_3-m00000-0"})
    assert body["found"] and data == b"output of job 3"
    assert not attempt_log.read_for_client(str(tmp_path), {"job_id": "job_0", "attempt_id": "job_0-m00000-0"})[0]["found"]
    try:
        attempt_log.read_for_client(str(tmp_path), {"job_id": "..", "attempt_id": "../../etc/passwd"})
    except PermissionError:
        pass
    else:  # basename() leaves nothing to escape with: it reads DATA_DIR/../logs/passwd.log, which is refused
        raise AssertionError("a path outside the data dir's logs was served")


def test_an_attempt_without_room_for_its_log_runs_uncaptured(tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")  # the data dir is a file: no log can be created under it
    result = _in_a_fresh_python(f"""
from pymr.attempt_log import run_captured
print(run_captured(lambda task, settings: ("done", {{}}), {{"job_id": "job_x", "attempt_id": "job_x-m00000-0"}},
                   {{"data_dir": {str(blocked)!r}}}))
""")
    assert result.stdout.strip() == "('done', {})"


def test_finished_jobs_are_bounded_and_only_recent_ones_keep_their_tasks():
    history = status.FinishedJobs(kept=5, detailed=2)
    for n in range(8):
        history.add({"job_id": f"j{n}", "name": "x", "state": "succeeded", "tasks": [{"task_id": "m00000"}]})
    assert [s["job_id"] for s in history.summaries()] == ["j3", "j4", "j5", "j6", "j7"]
    assert [("tasks" in history.get(f"j{n}")) for n in range(3, 8)] == [False, False, False, True, True]
    assert history.get("j0") is None


def test_a_large_jobs_detail_lists_failed_and_running_tasks_first():
    from pymr import scheduler as sched

    run = sched.new_job("j", "big", [{"path": f"/in/{i}", "start": 0, "end": 10} for i in range(50)], 0)
    for i in range(48):  # all but two maps start; then 7 fail once and 30 finish
        sched.assign(run, "w1", float(i))
    for task in run.maps[40:47]:
        sched.fail(run, task.attempts[0].attempt_id, {"type": "ValueError", "message": "x"})
    for task in run.maps[:30]:
        sched.finish(run, task.attempts[0].attempt_id, {"counters": {}}, 1.0)
    listed = status.listed_tasks(run.maps, limit=20)
    assert len(listed) == 20
    assert {t.index for t in listed} >= set(range(40, 47)) | set(range(30, 40)) | {47}  # failed, then running
    assert [t.index for t in listed] == sorted(t.index for t in listed)  # in task order
    assert status.listed_tasks(run.maps, limit=100) == run.maps


def test_the_board_answers_from_the_loop_thread_and_reuses_answers():
    board = status.StatusBoard()
    built = []
    stop = threading.Event()

    def build(key):
        if key == "broken":
            raise ZeroDivisionError("a bug")
        built.append((key, threading.current_thread().name))
        return key.upper()

    def loop():
        while not stop.is_set():
            board.answer(build)  # a build that raises must not end the loop
            stop.wait(0.05)

    thread = threading.Thread(target=loop, name="coordinator-loop")
    thread.start()
    try:
        assert board.query("jobs") == "JOBS"
        assert board.query("jobs") == "JOBS"  # within the half second: not built again
        try:
            board.query("broken")
        except status.BuildFailed as exc:
            assert "ZeroDivisionError: a bug" in str(exc)
        else:
            raise AssertionError("a failed build must reach the asker")
        assert board.query("workers") == "WORKERS"
    finally:
        stop.set()
        thread.join()
    assert built == [("jobs", "coordinator-loop"), ("workers", "coordinator-loop")]
    try:
        status.StatusBoard().query("jobs", timeout_s=0.2)  # nobody answers
    except TimeoutError as exc:
        assert "did not answer" in str(exc)
    else:
        raise AssertionError("a query nobody answers must time out")


BODY = {"job_id": "job_1", "maps_done": 3, "maps_total": 10, "reduces_done": 0, "reduces_total": 2, "running": 2,
        "failed_attempts": 1, "map_bytes_done": 30 * 2**20, "map_bytes_total": 100 * 2**20, "elapsed_s": 10.0}


def test_the_progress_line_shows_percent_of_bytes_throughput_and_eta():
    phase, line = progress_line(BODY)
    assert phase == "map"
    assert line.startswith("map  30% (3/10)  reduce 0/2  3.0 MiB/s  ETA 23.3s  running 2  failed attempts 1")
    phase, line = progress_line(dict(BODY, maps_done=10, map_bytes_done=100 * 2**20, reduces_done=1))
    assert phase == "reduce" and "map 100% (10/10)  reduce 1/2" in line and "ETA" not in line
    _, line = progress_line(dict(BODY, maps_done=10, map_bytes_done=100 * 2**20, reduces_done=1), 6.0)
    assert "reduce 1/2  ETA 4.0s" in line  # one of two reduces done in the 4 s since the maps ended
    _, line = progress_line(dict(BODY, map_bytes_read=50 * 2**20))  # running maps have read 20 MiB more
    assert line.startswith("map  50% (3/10)  reduce 0/2  5.0 MiB/s  ETA 10.0s")
    _, line = progress_line(dict(BODY, maps_done=10, map_bytes_done=100 * 2**20, reduce_fraction=0.25), 6.0)
    assert "reduce 0/2 25%  ETA 12.0s" in line  # half of one of two reduces read in 4 s


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_rewrites_one_line_on_a_terminal_and_prints_lines_in_a_pipe():
    tty = Terminal()
    display = ProgressDisplay(tty)
    for done in range(4):
        display(dict(BODY, maps_done=done))
    display.end()
    assert tty.getvalue().startswith("pymr: job job_1\n\rmap ")
    assert tty.getvalue().count("\r") == 4 and tty.getvalue().count("\n") == 2

    pipe = io.StringIO()
    display = ProgressDisplay(pipe)
    for done in range(4):  # within PIPE_INTERVAL_S: one line for the phase, not one per message
        display(dict(BODY, maps_done=done))
    display(dict(BODY, maps_done=10, map_bytes_done=BODY["map_bytes_total"]))  # a new phase prints at once
    display.end()
    lines = pipe.getvalue().splitlines()
    assert "\r" not in pipe.getvalue() and "\x1b" not in pipe.getvalue()
    assert lines[0] == "pymr: job job_1" and len(lines) == 3 and lines[2].startswith("map 100% (10/10)")


def test_a_costly_answer_is_reused_longer_so_the_loop_keeps_most_of_its_time():
    board = status.StatusBoard()
    builds = []

    def build(key):
        builds.append(time.monotonic())
        time.sleep(0.06)  # at most 5% of the loop: reused for 1.2 s, not 0.5 s
        return len(builds)

    stop = threading.Event()

    def loop():
        while not stop.is_set():
            board.answer(build)
            stop.wait(0.02)

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        assert board.query("job:big") == 1
        time.sleep(0.7)
        assert board.query("job:big") == 1  # past ANSWER_TTL_S, still within 20 times its build time
    finally:
        stop.set()
        thread.join()
    assert len(builds) == 1
