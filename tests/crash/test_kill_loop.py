"""The kill loop: a process that submits and executes jobs at once is SIGKILLed at
a random moment, again and again, and restarted each time; then a last worker
drains the queue. Every job is classified as Jepsen's total-queue checker does:

- lost: acknowledged (its submit returned) but never completed — must be 0;
- duplicated: executed more than once — each extra run must be explained by a
  kill that caught the job in flight (running in the store when its worker died);
- phantom: completed without any execution on record — must be 0;
- every job stored (acknowledged or not) ends in a terminal state, and
  `gq check` finds the store clean.

Rounds: GQ_KILL_LOOP_ROUNDS (default 50, the CI figure; more locally).
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time

import gq

MIXED = os.path.join(os.path.dirname(__file__), "mixed.py")
TERMINAL = {gq.State.COMPLETED, gq.State.FAILED, gq.State.CANCELLED, gq.State.DEAD_LETTER}


class Zygote:
    """mixed.py's parent: forks ready-imported load processes on request."""

    def __init__(self, data_dir, ledger):
        self.proc = subprocess.Popen([sys.executable, MIXED, data_dir, ledger],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.children: set[int] = set()

    def _ask(self, line: str) -> int:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        assert answer, "the zygote died"
        return int(answer)

    def spawn(self, out: str, tag: str, submit: bool = True) -> int:
        pid = self._ask(f"spawn {out} {tag} {int(submit)}")
        self.children.add(pid)
        return pid

    def wait(self, pid: int) -> int:
        code = self._ask(f"wait {pid}")
        self.children.discard(pid)
        return code

    def close(self) -> None:
        """Never leave a load process behind: kill what was not reaped (by pid)."""
        for pid in self.children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.stdin.close()
        self.proc.wait(10)


def acked_ids(path: str) -> set[str]:
    with open(path) as f:
        text = f.read()
    return {line.split()[1] for line in text.splitlines(keepends=True)
            if line.startswith("ACK ") and line.endswith("\n")}   # a torn line is no ack


def wait_for_first_ack(path: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                if "ACK " in f.read():
                    return
        except FileNotFoundError:   # the child has not created it yet
            pass
        time.sleep(0.005)
    raise AssertionError(f"no acknowledgement within {timeout}s: {open(path).read()}")


def test_kill_loop_loses_nothing_and_duplicates_only_in_flight_jobs(tmp_path, data_dir, rng):
    rounds = int(os.environ.get("GQ_KILL_LOOP_ROUNDS", "50"))
    ledger = str(tmp_path / "ledger")
    acked: set[str] = set()
    allowance: collections.Counter = collections.Counter()   # job -> kills in flight
    in_flight_total = 0
    started = time.monotonic()
    q = gq.Queue(data_dir)
    zygote = Zygote(data_dir, ledger)
    try:
        for r in range(rounds):
            out = str(tmp_path / f"round-{r}.out")
            pid = zygote.spawn(out, f"r{r}")
            wait_for_first_ack(out)
            time.sleep(rng.uniform(0.0, 0.5))
            os.kill(pid, signal.SIGKILL)
            assert zygote.wait(pid) == -signal.SIGKILL, open(out).read()
            acked |= acked_ids(out)
            # the only worker is dead: whatever is running now was in flight
            for job_id, _owner, _deadline in q.store.running_leases():
                allowance[job_id] += 1
                in_flight_total += 1

        out = str(tmp_path / "drain.out")
        drain = zygote.spawn(out, "drain", submit=False)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            stats = q.stats()["by_state"]
            if not (stats["pending"] or stats["scheduled"] or stats["running"]):
                break
            time.sleep(0.05)
        os.kill(drain, signal.SIGTERM)
        assert zygote.wait(drain) == 0, open(out).read()
        assert "Recovery completed" in open(out).read()

        executions: collections.Counter = collections.Counter()
        with open(ledger) as f:
            for line in f:
                if line.endswith("\n"):
                    executions[line.split()[0]] += 1

        states = collections.Counter()
        lost, phantom, unfinished, over = [], [], [], []
        stored = {j.id: j for state in TERMINAL | {gq.State.PENDING, gq.State.SCHEDULED,
                                                   gq.State.RUNNING}
                  for j in q.list(state=state, limit=10_000_000)}
        quarantined = 0
        for job_id in acked:
            job = stored.get(job_id)
            if job is not None and job.state is gq.State.DEAD_LETTER and \
                    allowance[job_id] >= 3:
                quarantined += 1    # its worker died under it 3 times: by design
            elif job is None or job.state is not gq.State.COMPLETED:
                lost.append((job_id, job and job.state))
        for job_id, job in stored.items():
            states[job.state.value] += 1
            if job.state not in TERMINAL:
                unfinished.append(job_id)
            if job.state is gq.State.COMPLETED and executions[job_id] == 0:
                phantom.append(job_id)
            if executions[job_id] > 1 + allowance[job_id]:
                over.append((job_id, executions[job_id], allowance[job_id]))
        duplicated = sum(n - 1 for n in executions.values() if n > 1)
        unknown = set(executions) - set(stored)
        check = subprocess.run([sys.executable, "-m", "gq.cli", "check", "--data", data_dir],
                               capture_output=True, text=True, timeout=120)
        print(f"kill loop: {rounds} rounds in {time.monotonic() - started:.1f}s, "
              f"{len(acked)} jobs acknowledged ({len(stored)} stored), "
              f"lost {len(lost)}, duplicated executions {duplicated} "
              f"(jobs in flight at the kills: {in_flight_total}), phantom {len(phantom)}, "
              f"quarantined {quarantined}, final states {dict(states)} ({rng})")
        assert not lost, f"{len(lost)} acknowledged jobs lost, e.g. {lost[:5]}"
        assert not phantom, f"completed without an execution: {phantom[:5]}"
        assert not over, f"duplicates not explained by a kill in flight: {over[:5]}"
        assert duplicated <= in_flight_total
        assert not unfinished, f"{len(unfinished)} jobs not terminal: {unfinished[:5]}"
        assert not unknown, f"executions of jobs the store does not hold: {sorted(unknown)[:5]}"
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        zygote.close()
        q.close()
