"""The power-loss run: cut the power under gq again and again, check each time.

    python tests/powerloss/runner.py [CUTS] [--dir DIR] [--seed SEED]

Each cut: mount lazyfs over the data dir's backing directory, start the
workload's client and worker (forked from this already-imported process),
let them run a random fraction of a second, SIGKILL both (the instant of the
cut: every acknowledgement logged so far was made before it), unmount (the
disk loses, reorders or tears what was never synced), remount, open the data
dir with gq, run `gq check`, read every record and classify (verdict.py).

The cuts are spread over five kinds, in episodes of up to 5 cuts on one data
dir (so each workload also starts on a store recovered from a cut):

  drop / reorder / torn   the cut's variant (lazyfs.py)
  eio                     the Nth fsync of data.mdb fails (N random), then a
                          cut of a random variant
  control                 the negative control: sync off (workload.py); a
                          fresh data dir every cut; it must lose acknowledged jobs

The last line is the summary the CI reads:
  power-loss: cuts=N acked=A lost=L corrupt=C duplicated=D control_lost=K eio_faults=E
(A, L, C, D over every kind but the control). Exit status 0 only if nothing
was lost, corrupted or run twice, the control lost something, every
injected EIO reached gq, and no load process ended before its cut (a storage
fault must not take a worker down).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter

import mounts
import snapshot
import verdict
import workload

KINDS = ("drop", "reorder", "torn", "eio", "control")
EPISODE = 5
CHECK_TIMEOUT = 60.0


def spawn(fn, *args, out: str) -> int:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            fn(*args)
            code = 0
        except BaseException:  # noqa: BLE001 - into the child's output file
            import traceback
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def reap(pid: int, timeout: float) -> bool:
    """Wait for a child; SIGKILL it after `timeout`. True if it exited 0."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status) == 0
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return False
        time.sleep(0.005)


def plan(cuts: int, kinds=KINDS) -> list[tuple[str, int]]:
    """Episodes (kind, cuts), the kinds taking turns; every kind runs when cuts >= 5."""
    per = max(1, min(EPISODE, cuts // len(kinds)))
    out, left, i = [], cuts, 0
    while left:
        n = min(per, left)
        out.append((kinds[i % len(kinds)], n))
        left -= n
        i += 1
    return out


class Tally:
    def __init__(self):
        self.by_kind: dict[str, Counter] = {k: Counter() for k in KINDS}
        self.problems: list[str] = []

    def add(self, kind: str, **counts) -> None:
        self.by_kind[kind].update(counts)

    def total(self, key: str, control: bool = False) -> int:
        return sum(c[key] for k, c in self.by_kind.items() if (k == "control") == control)


class Episode:
    """One data dir and its log, over several cuts."""

    def __init__(self, base: str, name: str):
        self.dir = os.path.join(base, name)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.disk = os.path.join(self.dir, "disk")
        self.log = os.path.join(self.dir, "log")
        self.acks = self.store_errors = self.errors = self.reopens = self.worker_errors = 0
        self.lost: set = set()
        self.duplicated: set = set()


def cut_once(ep: Episode, mnt: str, kind: str, rng: random.Random, tally: Tally) -> None:
    started = time.monotonic()
    control = kind == "control"
    variant = kind if kind in ("drop", "reorder", "torn") else \
        "drop" if control else rng.choice(("drop", "reorder", "torn"))
    eio_at = rng.randint(2, 20) if kind == "eio" else 0
    data = os.path.join(mnt, "data")
    if os.path.exists(ep.disk + ".eio"):
        os.unlink(ep.disk + ".eio")
    m = mounts.Mount(ep.disk, mnt, variant, rng.getrandbits(32), eio_at)
    pids, died = [], []
    try:
        seed = rng.getrandbits(32)
        pids.append(spawn(workload.client, data, ep.log, seed, control,
                          out=os.path.join(ep.dir, "client.out")))
        pids.append(spawn(workload.worker, data, ep.log, seed, control,
                          out=os.path.join(ep.dir, "worker.out")))
        time.sleep(rng.uniform(0.2, 0.45))
        if eio_at:    # let the load go on past the fault: acks after it must survive too
            deadline = time.monotonic() + 5
            while not os.path.exists(ep.disk + ".eio") and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.1, 0.3))
    finally:
        for pid in pids:          # the power cut
            os.kill(pid, signal.SIGKILL)
        for pid, role in zip(pids, ("client", "worker")):
            status = os.waitpid(pid, 0)[1]
            if not os.WIFSIGNALED(status):    # it ended by itself before the cut
                died.append(f"the {role} process ended before the cut (exit "
                            f"{os.waitstatus_to_exitcode(status)}, see {role}.out)")
        fs = m.cut()
    snap_path = os.path.join(ep.dir, "snapshot")
    if os.path.exists(snap_path):
        os.unlink(snap_path)
    m = mounts.Mount(ep.disk, mnt, "drop", 0)
    try:
        pid = spawn(snapshot.take, data, snap_path, out=os.path.join(ep.dir, "check.out"))
        reap(pid, CHECK_TIMEOUT)
    finally:
        m.cut()
    snap = None
    if os.path.exists(snap_path):
        with open(snap_path, "rb") as f:
            snap = pickle.load(f)
    with open(ep.log, errors="replace") as f:
        log = verdict.parse(f.read())
    v = verdict.judge(log, snap)
    injected = fs.get("injected", 0)
    unnoticed = int(injected > 0 and log.store_errors == ep.store_errors)
    # whom the fault reached: a caller (PersistenceError), else the worker's own
    # writes, else only a write nobody waits on (the store logged and reopened)
    to_caller = int(injected > 0 and log.errors > ep.errors)
    to_worker = int(injected > 0 and not to_caller and log.worker_errors > ep.worker_errors)
    new_lost, new_dup = v.lost - ep.lost, v.duplicated - ep.duplicated
    tally.add(kind, cuts=1, acked=log.acks - ep.acks, lost=len(new_lost),
              corrupt=len(v.corrupt), duplicated=len(new_dup), rerun=len(v.rerun),
              eio_faults=injected, eio_unnoticed=unnoticed,
              caller_errors=log.errors - ep.errors, reopens=log.reopens - ep.reopens,
              store_errors=log.store_errors - ep.store_errors,
              eio_to_caller=to_caller, eio_to_worker=to_worker,
              pending=fs.get("pending", 0), cut_with_loss=int(bool(new_lost)),
              died=len(died),
              ms=int((time.monotonic() - started) * 1000))
    if not control and (new_lost or v.corrupt or new_dup or unnoticed or died):
        tally.problems.append(f"{kind} cut in {ep.dir}: " + "; ".join(
            v.problems[:5] + (["an injected EIO that gq never saw"] if unnoticed else [])
            + died))
    ep.acks, ep.store_errors, ep.errors, ep.reopens, ep.worker_errors = \
        log.acks, log.store_errors, log.errors, log.reopens, log.worker_errors
    ep.lost |= v.lost
    ep.duplicated |= v.duplicated


def run(cuts: int, base: str, seed: int, kinds=KINDS) -> Tally:
    rng = random.Random(seed)
    tally = Tally()
    mnt = os.path.join(base, "mnt")
    try:
        for e, (kind, n) in enumerate(plan(cuts, kinds)):
            ep = Episode(base, f"ep{e}-{kind}")
            for _ in range(n):
                if kind == "control" and ep.acks:
                    ep = Episode(base, f"ep{e}-{kind}")    # the control starts fresh
                cut_once(ep, mnt, kind, rng, tally)
            if not tally.problems and not os.environ.get("GQ_POWERLOSS_KEEP"):
                shutil.rmtree(ep.dir, ignore_errors=True)
    finally:
        mounts.unmount(mnt)
    return tally


COLUMNS = (("cuts", "cuts"), ("acked", "acked"), ("lost", "lost"), ("corrupt", "corrupt"),
           ("duplicated", "dup"), ("rerun", "rerun"), ("cut_with_loss", "cuts_lost"),
           ("eio_faults", "eio"), ("eio_to_caller", "to_caller"),
           ("eio_to_worker", "to_worker"), ("eio_unnoticed", "unseen"),
           ("reopens", "reopens"), ("died", "died"), ("pending", "unsynced"))


def report(tally: Tally, cuts: int, seconds: float, out=sys.stdout) -> str:
    print("kind    " + " ".join(f"{h:>9}" for _, h in COLUMNS) + "     s/cut", file=out)
    for kind, c in tally.by_kind.items():
        if c["cuts"]:
            print(f"{kind:8}" + " ".join(f"{c[k]:>9}" for k, _ in COLUMNS)
                  + f" {c['ms'] / c['cuts'] / 1000:>9.2f}", file=out)
    for p in tally.problems[:20]:
        print("PROBLEM:", p, file=out)
    t = tally.total
    line = (f"power-loss: cuts={cuts} acked={t('acked')} lost={t('lost')} "
            f"corrupt={t('corrupt')} duplicated={t('duplicated')} "
            f"control_lost={t('lost', control=True)} eio_faults={t('eio_faults')}")
    print(f"({seconds:.0f} s)", file=out)
    print(line, file=out, flush=True)
    return line


def passed(tally: Tally) -> bool:
    t = tally.total
    control_ran = tally.by_kind["control"]["cuts"] > 0
    return (t("lost") == t("corrupt") == t("duplicated") == t("eio_unnoticed") == 0
            and t("died") == 0
            and (t("lost", control=True) > 0 or not control_ran))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cuts", nargs="?", default="200")
    ap.add_argument("--dir", help="work dir (default: a new temporary one, removed after)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--json", help="also write the figures per kind to this file")
    ap.add_argument("--kinds", default=",".join(KINDS),
                    help="which kinds of cut to run (comma-separated; default all)")
    args = ap.parse_args(argv)
    if not args.cuts.isdigit() or int(args.cuts) < 1:
        print(f"power-loss: CUTS must be a positive whole number of power cuts, "
              f"got {args.cuts!r}", file=sys.stderr)
        return 2
    kinds = tuple(args.kinds.split(","))
    if not kinds or set(kinds) - set(KINDS):
        print(f"power-loss: --kinds takes some of {','.join(KINDS)}, got {args.kinds!r}",
              file=sys.stderr)
        return 2
    why = mounts.problem()
    if why:
        print(f"power-loss: cannot simulate power loss: {why}", file=sys.stderr)
        return 2
    import lazyfs  # noqa: F401 - libfuse loaded once here, inherited by each forked mount
    seed = args.seed if args.seed is not None else random.SystemRandom().getrandbits(32)
    base = args.dir or tempfile.mkdtemp(prefix="gq-powerloss-")
    os.makedirs(base, exist_ok=True)
    print(f"power-loss: {args.cuts} cuts, seed {seed}, work dir {base}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # run the finally blocks
    started = time.monotonic()
    tally = run(int(args.cuts), base, seed, kinds)
    report(tally, int(args.cuts), time.monotonic() - started)
    ok = passed(tally)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"by_kind": tally.by_kind, "problems": tally.problems,
                       "passed": ok}, f)
    if ok and not args.dir:
        shutil.rmtree(base, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
