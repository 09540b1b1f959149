"""Helpers of the worker tests: deadlines, an in-process worker on a chosen event
loop, and a `gq worker` subprocess whose log lines can be waited for.

Nothing here mocks the store: every worker runs on a real LMDB data dir.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time

import gq

HERE = os.path.dirname(os.path.abspath(__file__))
APPS_DIR = os.path.join(HERE, "apps")


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.005, what: str = ""):
    """Poll `predicate` until it returns something truthy (returned) or the deadline
    passes (AssertionError naming `what` and the last value seen)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for "
                                 f"{what or predicate}; last value: {value!r}")
        time.sleep(interval)


def state_of(q, job_id) -> gq.State:
    return q.get(job_id).state


def wait_state(q, job_id, *states, timeout: float = 10.0):
    """Wait until job `job_id` is in one of `states`; return its JobInfo."""
    wanted = {gq.State(s) for s in states}
    holder = {}

    def check():
        holder["job"] = job = q.get(job_id)
        return job.state in wanted
    try:
        wait_until(check, timeout, what=f"job {job_id} to be {sorted(wanted)}")
    except AssertionError as e:
        raise AssertionError(f"{e}; job is {holder.get('job')!r}") from None
    return holder["job"]


def wait_all(q, job_ids, *states, timeout: float = 20.0):
    wanted = {gq.State(s) for s in states}
    left = set(job_ids)

    def check():
        for jid in list(left):
            if q.get(jid).state in wanted:
                left.discard(jid)
        return not left
    try:
        wait_until(check, timeout, interval=0.02,
                   what=f"{len(job_ids)} jobs to be {sorted(wanted)}")
    except AssertionError as e:
        sample = [q.get(j) for j in sorted(left)[:5]]
        raise AssertionError(f"{e}; {len(left)} are not, e.g. {sample}") from None
    return [q.get(j) for j in job_ids]


class InProcessWorker:
    """`worker.serve()` on its own thread, under `asyncio.run` or `uvloop.run`."""

    def __init__(self, queue, loop_kind: str, **options):
        self.worker = gq.Worker(queue, **options)
        self.loop_kind = loop_kind
        self.error: BaseException | None = None
        self.returned = None
        self.loop_type = None
        self._thread = threading.Thread(target=self._main, daemon=True,
                                        name=f"test-worker-{loop_kind}")

    def _main(self) -> None:
        async def serve():
            self.loop_type = type(asyncio.get_running_loop())
            return await self.worker.serve()
        try:
            if self.loop_kind == "uvloop":
                import uvloop
                self.returned = uvloop.run(serve())
            else:
                self.returned = asyncio.run(serve())
        except BaseException as e:  # noqa: BLE001 - re-raised by stop()
            self.error = e

    def start(self) -> "InProcessWorker":
        self._thread.start()
        wait_until(lambda: self.worker._loop is not None or self.error is not None, 10,
                   what="the worker's event loop")
        if self.error is not None:
            raise self.error
        import uvloop
        is_uvloop = issubclass(self.loop_type, uvloop.Loop)
        assert is_uvloop == (self.loop_kind == "uvloop"), self.loop_type
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> float:
        """Ask for a graceful stop; return how long serve() took to return."""
        t0 = time.monotonic()
        self.worker.stop()
        self._thread.join(timeout)
        took = time.monotonic() - t0
        assert not self._thread.is_alive(), f"serve() did not return within {timeout}s"
        if self.error is not None:
            raise self.error
        assert self.returned == 0, self.returned
        return took


class WorkerProcess:
    """`python -m gq.cli worker MODULE:QUEUE` (or the `gq` console script), run
    from tests/worker/apps so the app modules there are importable."""

    def __init__(self, target: str, data_dir: str, markers: str, *args: str,
                 console_script: bool = False, env: dict | None = None,
                 cli_data: str | None = None):
        if console_script:
            script = os.path.join(os.path.dirname(sys.executable), "gq")
            assert os.path.exists(script), f"no gq console script next to {sys.executable}"
            cmd = [script]
        else:
            cmd = [sys.executable, "-m", "gq.cli"]
        cmd += ["worker", target, "--data", cli_data or data_dir, *args]
        full_env = dict(os.environ, GQ_TEST_DATA=data_dir, GQ_TEST_MARKERS=markers,
                        PYTHONUNBUFFERED="1")
        full_env.update(env or {})
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, cwd=APPS_DIR, env=full_env, text=True,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.pid = self.proc.pid
        self._lines: list[str] = []
        self._stderr: list[str] = []
        self._cond = threading.Condition()
        self._readers = [threading.Thread(target=self._read, args=(stream, sink), daemon=True)
                         for stream, sink in ((self.proc.stdout, None),
                                              (self.proc.stderr, self._stderr))]
        for t in self._readers:
            t.start()

    def _read(self, stream, sink) -> None:
        for line in stream:
            with self._cond:
                self._lines.append(line)
                if sink is not None:
                    sink.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def output(self) -> str:
        """stdout and stderr, interleaved as read."""
        with self._cond:
            return "".join(self._lines)

    @property
    def stderr(self) -> str:
        with self._cond:
            return "".join(self._stderr)

    def count(self, text: str) -> int:
        with self._cond:
            return sum(text in line for line in self._lines)

    def wait_for_log(self, text: str, timeout: float = 15.0, times: int = 1) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while sum(text in line for line in self._lines) < times:
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and
                                 not any(t.is_alive() for t in self._readers)):
                    raise AssertionError(
                        f"{text!r} not logged {times}x within {timeout}s by {self.cmd} "
                        f"(exit {self.proc.poll()}); output:\n{''.join(self._lines)}")
                self._cond.wait(min(left, 0.1))

    def wait_started(self, processes: int = 1, timeout: float = 20.0) -> None:
        self.wait_for_log("started (concurrency", timeout, times=processes)

    def signal(self, signum=signal.SIGTERM) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.cmd} still running {timeout}s later; output:\n"
                                 f"{self.output}") from None
        for t in self._readers:
            t.join(5)
        return rc

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait for the drain; the exit code."""
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def cleanup(self) -> None:
        """Teardown: never leave a worker behind (SIGTERM, then SIGKILL, by pid)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for t in self._readers:
            t.join(5)


def run_cli(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
    """A one-shot `gq` command in its own process."""
    return subprocess.run([sys.executable, "-m", "gq.cli", *args], text=True,
                          capture_output=True, timeout=timeout, cwd=APPS_DIR)


def marker_path(markers_dir: str, job_id: str, what: str) -> str:
    """Where the app handlers of tests/worker/apps drop their markers."""
    return os.path.join(markers_dir, f"{job_id}.{what}")
