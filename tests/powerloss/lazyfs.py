"""A power-loss simulator in the spirit of LazyFS: a FUSE pass-through file system
that keeps every write not yet made durable in memory.

    python tests/powerloss/lazyfs.py BACKING MOUNT VARIANT SEED [EIO_AT]

Reads see the backing file with the unsynced writes laid over it, in order, so
the processes above cannot tell it from a page cache. fsync/fdatasync of a
file (or a write through an O_SYNC/O_DSYNC descriptor) moves that file's writes
to the backing directory: that is "the disk". Metadata operations (create,
unlink, rename, mkdir, truncate) reach the disk at once; gq's durability does
not rest on them.

When the file system is unmounted (the harness kills every process using it
first: that instant is the power cut), what was never synced meets VARIANT:

  drop     every unsynced write is lost;
  reorder  a random subset of them reaches the disk, in random order (the
           disk's cache reordered them);
  torn     the writes reach the disk in order up to a random point, and the
           last one only as a prefix of 512-byte sectors of one page.

EIO_AT N makes the Nth sync of data.mdb (an fsync/fdatasync, or a write
through an O_DSYNC descriptor) fail with EIO and drops that file's unsynced
writes, as Linux does after a failed writeback ("fsyncgate").
As in Linux since 4.13 (errseq), every other descriptor of the file that was
open at the time reports the error once, on its next fsync; after that a
fsync succeeds although the data is gone.

The fault also creates BACKING.eio, so the runner can let the load go on
after it. At exit the daemon writes "injected=K pending=P" to BACKING/../fs.stats.
Single-threaded (nothreads): the order of writes is the order FUSE hands them in.
GQ_LAZYFS_TRACE=FILE logs the syncs and header reads of data.mdb there.

LMDB's lock file lives on the mount too: its shared mmap works through FUSE
(one page cache for every process on the mount), so it needs no tmpfs. A cut
loses the lock file's unsynced writes as well, as a reboot would.

The binding is mfusepy (the maintained fork of fusepy): pure Python over
ctypes, so it loads Debian's libfuse3 with nothing to compile, and its
synchronous, single-threaded loop keeps the order of writes obvious. pyfuse3
would need libfuse3's headers and a compiler at install time, and trio.
"""

from __future__ import annotations

import errno
import os
import random
import sys

import mfusepy as fuse

PAGE = 4096
SECTOR = 512
EIO_FILE = "data.mdb"
TRACE = os.environ.get("GQ_LAZYFS_TRACE")


def trace(msg: str) -> None:
    with open(TRACE, "a") as f:
        f.write(f"{msg}\n")


class Pending:
    """The unsynced writes of one file, oldest first."""

    __slots__ = ("writes", "size")

    def __init__(self):
        self.writes: list[tuple[int, bytes]] = []
        self.size = 0         # the file's size counting the unsynced writes


class LazyFS(fuse.Operations):
    use_ns = True

    def __init__(self, root: str, eio_at: int = 0):
        self.root = root
        self.pending: dict[str, Pending] = {}     # backing path -> unsynced writes
        self.handles: dict[int, tuple[str, bool]] = {}   # fh -> (path, synchronous)
        self.errseq: dict[int, bool] = {}         # fh -> an EIO not yet reported to it
        self.eio_at = eio_at
        self.fsyncs = 0          # of data.mdb
        self.injected = 0

    def _full(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/"))

    # -- metadata: straight to the backing directory -----------------------------
    def getattr(self, path, fh=None):
        full = self._full(path)
        try:
            st = os.lstat(full)
        except OSError as e:
            raise fuse.FuseOSError(e.errno) from None
        if TRACE and full.endswith(EIO_FILE):
            p = self.pending.get(full)
            trace(f"getattr {st.st_size} {p and p.size}")
        out = {k: getattr(st, k) for k in ("st_mode", "st_nlink", "st_uid", "st_gid",
                                           "st_size", "st_atime_ns", "st_mtime_ns",
                                           "st_ctime_ns")}
        for k in ("st_atime", "st_mtime", "st_ctime"):
            out[k] = out.pop(k + "_ns")
        p = self.pending.get(full)
        if p is not None:
            out["st_size"] = max(st.st_size, p.size)
        return out

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._full(path))

    def mkdir(self, path, mode):
        os.mkdir(self._full(path), mode)

    def rmdir(self, path):
        os.rmdir(self._full(path))

    def mknod(self, path, mode, dev):   # the doorbell's Unix sockets
        os.mknod(self._full(path), mode, dev)

    def unlink(self, path):
        full = self._full(path)
        os.unlink(full)
        self.pending.pop(full, None)

    def rename(self, old, new):
        os.rename(self._full(old), self._full(new))
        p = self.pending.pop(self._full(old), None)
        if p is not None:
            self.pending[self._full(new)] = p

    def chmod(self, path, mode):
        os.chmod(self._full(path), mode)

    def chown(self, path, uid, gid):
        os.chown(self._full(path), uid, gid)

    def utimens(self, path, times=None):
        os.utime(self._full(path), ns=times)

    def statfs(self, path):
        st = os.statvfs(self._full(path))
        return {k: getattr(st, k) for k in ("f_bavail", "f_bfree", "f_blocks", "f_bsize",
                                            "f_favail", "f_ffree", "f_files", "f_flag",
                                            "f_frsize", "f_namemax")}

    def truncate(self, path, length, fh=None):
        full = self._full(path)
        if TRACE:
            trace(f"truncate {full} {length}")
        self._flush(full)        # (LMDB does not truncate while it runs)
        os.truncate(full, length)

    # -- data: writes wait in memory until the file is synced ---------------------
    def open(self, path, flags):
        if TRACE and path.endswith(EIO_FILE):
            trace(f"open {flags:o}")
        return self._handle(path, flags, os.open(self._full(path), flags & ~os.O_CREAT))

    def create(self, path, mode, flags):
        return self._handle(path, flags, os.open(self._full(path), flags | os.O_CREAT, mode))

    def _handle(self, path, flags, fd):
        self.handles[fd] = (self._full(path), bool(flags & (os.O_SYNC | os.O_DSYNC)))
        return fd

    def release(self, path, fh):
        self.handles.pop(fh, None)
        self.errseq.pop(fh, None)
        os.close(fh)

    def read(self, path, size, offset, fh):
        full = self.handles[fh][0]
        data = bytearray(os.pread(fh, size, offset))
        if TRACE and offset == 0 and full.endswith(EIO_FILE):
            trace(f"read0 size={size} got={len(data)} pending={self.pending.get(full) and self.pending[full].size}")
        p = self.pending.get(full)
        if p is not None:
            end = min(offset + size, p.size)
            if end > offset + len(data):
                data.extend(bytes(end - offset - len(data)))
            for off, buf in p.writes:
                lo, hi = max(off, offset), min(off + len(buf), end)
                if lo < hi:
                    data[lo - offset:hi - offset] = buf[lo - off:hi - off]
        return bytes(data)

    def write(self, path, data, offset, fh):
        full, synchronous = self.handles[fh]
        if synchronous:
            # O_DSYNC: durable when it returns (LMDB's meta page, metasync on).
            # The file's earlier writes go first, so none of them can later land
            # over this one. It is a sync point, so it can fail like one.
            self._sync_point(full, fh)
            self._flush(full)
            os.pwrite(fh, data, offset)
            if self.errseq.pop(fh, False):
                raise fuse.FuseOSError(errno.EIO)
            return len(data)
        p = self.pending.get(full)
        if p is None:
            p = self.pending[full] = Pending()
            p.size = os.fstat(fh).st_size
        p.writes.append((offset, bytes(data)))
        p.size = max(p.size, offset + len(data))
        return len(data)

    def fsync(self, path, datasync, fh):
        full = self.handles[fh][0]
        self._sync_point(full, fh)
        self._flush(full)
        if self.errseq.pop(fh, False):
            raise fuse.FuseOSError(errno.EIO)    # reported once per descriptor
        return 0

    def _sync_point(self, full: str, fh: int) -> None:
        """An fsync/fdatasync or an O_DSYNC write: the EIO_AT-th one of data.mdb fails."""
        if os.path.basename(full) != EIO_FILE:
            return
        self.fsyncs += 1
        if TRACE:
            trace(f"sync point #{self.fsyncs} fh={fh}")
        if self.fsyncs != self.eio_at:
            return
        # the writeback failed: the data is gone, the pages count as clean
        self.injected += 1
        self.pending.pop(full, None)
        for other, (other_path, _) in self.handles.items():
            if other != fh and other_path == full:
                self.errseq[other] = True
        with open(self.root.rstrip("/") + ".eio", "w"):
            pass       # tells the runner: the fault happened, cut a bit later
        raise fuse.FuseOSError(errno.EIO)

    def flush(self, path, fh):
        return 0      # close(2) is no sync

    def _flush(self, full: str) -> None:
        p = self.pending.pop(full, None)
        if p is None:
            return
        fd = os.open(full, os.O_WRONLY)
        try:
            for off, buf in p.writes:
                os.pwrite(fd, buf, off)
        finally:
            os.close(fd)

    # -- the power cut ------------------------------------------------------------
    def cut(self, variant: str, rng: random.Random) -> int:
        """Apply VARIANT to what was never synced; returns how many writes were pending."""
        total = 0
        for full, p in sorted(self.pending.items()):
            writes = p.writes
            total += len(writes)
            if variant == "drop" or not writes or not os.path.exists(full):
                continue
            if variant == "reorder":
                chosen = [w for w in writes if rng.random() < 0.5]
                rng.shuffle(chosen)
            elif variant == "torn":
                chosen = writes[:rng.randint(0, len(writes))]
                if chosen:
                    off, buf = chosen[-1]
                    page = rng.randrange(0, max(1, len(buf) // PAGE)) * PAGE
                    keep = rng.randrange(0, PAGE // SECTOR) * SECTOR
                    chosen[-1] = (off, buf[:page + keep])
            else:
                raise ValueError(f"unknown variant {variant!r}")
            fd = os.open(full, os.O_WRONLY)
            try:
                for off, buf in chosen:
                    os.pwrite(fd, buf, off)
            finally:
                os.close(fd)
        self.pending.clear()
        return total


def serve(backing: str, mount: str, variant: str, seed: int, eio_at: int = 0) -> None:
    fs = LazyFS(backing, eio_at)
    # foreground, one thread: the order of writes is the order they arrive in
    fuse.FUSE(fs, mount, foreground=True, nothreads=True)   # (libfuse 3: big writes by default)
    pending = fs.cut(variant, random.Random(seed))
    with open(os.path.join(os.path.dirname(os.path.abspath(backing)), "fs.stats"), "w") as f:
        f.write(f"injected={fs.injected} pending={pending}\n")


if __name__ == "__main__":
    if len(sys.argv) not in (5, 6):
        raise SystemExit(__doc__)
    serve(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]),
          int(sys.argv[5]) if len(sys.argv) == 6 else 0)
