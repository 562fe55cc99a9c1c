"""A lease (lock file) on a shared filesystem: one driver runs a study or node at a time.

    with Lease(out_dir / ".lease", what=f"study {out_dir}"):    # LeaseHeld if a live owner has it
        ...
    lease = Lease(path, what="node english/phase1").acquire(wait=True)   # or wait=30.0 (seconds)
    try:
        ...                                  # check ``lease.lost`` before anything irreversible
    finally:
        lease.release()
    holder(path)                             # the record, with "alive" and "age_s"; None if free

The lease is a small JSON file: host, pid, the process's start time, a random token, what it
guards, when it was taken, a heartbeat and the command line. Two drivers on one output
directory, on one host or on several hosts sharing an NFS/Lustre filesystem, never both hold
it:

* Taking it is ``os.open(O_CREAT | O_EXCL)``: exclusive on local disks and on NFSv3+, so
  there is no check-then-create race.
* A daemon thread refreshes ``heartbeat`` every ``heartbeat_s`` (write a temporary file in the
  same directory, ``os.replace`` it over the lease), but only after re-reading the lease and
  finding its own token there. If the token is gone the lease was taken over: ``lost`` turns
  true, heartbeating stops and ``say`` names the new holder. Long-running owners must check
  ``lost`` and stop touching shared state when it is set.
* The owner is dead when it is on this machine (same host name, boot and pid namespace) and
  its pid is gone, a zombie, or reused by another process (different start time); or, on any
  host, when its heartbeat is older than ``stale_after_s``. Ages compare the heartbeat the
  owner wrote (its clock) with this machine's clock: keep hosts NTP-synchronised and
  ``stale_after_s`` well above both ``heartbeat_s`` and any clock skew. A file that is not
  a valid record yet (its creator is between the O_EXCL create and the write, or died
  there) counts as live until its mtime is ``stale_after_s`` old.
* A dead owner's lease is taken over, with a message via ``say`` naming it and why it was
  judged dead. Contenders serialise takeovers on a second O_EXCL file (``<path>.break``,
  held for milliseconds), and the breaker moves the stale lease aside
  (``os.rename`` to ``<path>.stale-<token>``) and re-checks that what it moved is the
  exact file it judged (same inode and bytes) before deleting it; anything else is linked
  back. Then it competes for the O_EXCL create like everyone else.

A normal interpreter exit releases (atexit); a forked child inherits the object but never
releases the parent's lease.

What no lease can prevent: an owner that stalls (suspend, hung NFS) for longer than
``stale_after_s`` is judged dead and taken over while it is still running. It finds out at
its next heartbeat (``lost``); that is why ``stale_after_s`` should be several heartbeats.
"""
from __future__ import annotations

import atexit
import errno
import json
import os
import secrets
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import psutil

from stilts_ds.errors import StiltsError

__all__ = ["Lease", "LeaseHeld", "holder"]

# Waiting re-checks the holder with this backoff (seconds): quick at first, for a holder
# that is just finishing, then every half second.
_POLL_FIRST_S = 0.05
_POLL_MAX_S = 0.5
# Two start times of one pid closer than this are the same process: psutil derives the
# start time from the boot time, which NTP may nudge between two readings.
_CREATE_TIME_SLACK_S = 1.0


class LeaseHeld(StiltsError):
    """The lease is held by a live owner; the message names the file and the holder."""

    def __init__(self, message: str, path: str | os.PathLike | None = None, record: dict | None = None):
        super().__init__(message)   # args == (message,): pickles across processes (Ray)
        self.path = Path(path) if path is not None else None
        self.record = record


def _say_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _read_first_line(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.readline().strip() or None
    except OSError:
        return None


def _machine() -> dict:
    """What makes "same host" trustworthy for a pid check: host names repeat across
    containers (``--network host``) and reboots, boot ids and pid namespaces do not."""
    try:
        pid_ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pid_ns = None
    return {"host": socket.gethostname(),
            "boot_id": _read_first_line("/proc/sys/kernel/random/boot_id"),
            "pid_ns": pid_ns}


def _same_machine(record: dict, here: dict) -> bool:
    if record.get("host") != here["host"]:
        return False
    # A record or a platform without the finer ids falls back to the host name alone.
    for key in ("boot_id", "pid_ns"):
        theirs, ours = record.get(key), here[key]
        if theirs is not None and ours is not None and theirs != ours:
            return False
    return True


def _create_time(pid: int) -> float:
    return psutil.Process(pid).create_time()


@dataclass
class _Seen:
    """One reading of a lease file: its bytes, parsed record, and identity."""

    raw: bytes
    record: dict | None          # None: not (yet) valid JSON, e.g. its creator is mid-write
    ino: int
    mtime: float
    mtime_ns: int

    def same_file(self, other: "_Seen") -> bool:
        # The bytes hold a unique token and the heartbeat, so they tell records apart; the
        # inode and mtime tell apart two empty files (a dead creator's and a fresh one's).
        return (self.ino, self.mtime_ns, self.raw) == (other.ino, other.mtime_ns, other.raw)


def _inspect(path: str) -> _Seen | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        st = os.fstat(fd)
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    raw = b"".join(chunks)
    try:
        record = json.loads(raw.decode("utf-8"))
        if not isinstance(record, dict):
            record = None
    except (UnicodeDecodeError, ValueError):
        record = None
    return _Seen(raw=raw, record=record, ino=st.st_ino, mtime=st.st_mtime, mtime_ns=st.st_mtime_ns)


def _judge(seen: _Seen, stale_after_s: float, here: dict, now: float) -> tuple[bool, str, float]:
    """(alive, why dead, age in seconds) of the owner of a lease file."""
    record = seen.record
    if record is None:
        # Nothing to check but the file's age: a fresh one is being written by its creator
        # (which owns it), an old one was left by a creator that died mid-write.
        age = now - seen.mtime
        if age > stale_after_s:
            return False, (f"the file is not a valid lease record and was last written "
                           f"{age:.0f} s ago (more than {stale_after_s:g} s)"), age
        return True, "", age
    try:
        age = now - float(record.get("heartbeat", seen.mtime))
    except (TypeError, ValueError):
        age = now - seen.mtime
    if _same_machine(record, here):
        pid = record.get("pid")
        try:
            proc = psutil.Process(int(pid))
            if proc.status() == psutil.STATUS_ZOMBIE:
                return False, f"pid {pid} on this host has exited (zombie)", age
            started = record.get("pid_started")
            if started is not None and abs(proc.create_time() - float(started)) > _CREATE_TIME_SLACK_S:
                return False, (f"pid {pid} on this host now belongs to another process "
                               f"(started {_when(proc.create_time())})"), age
        except psutil.NoSuchProcess:
            return False, f"pid {pid} is no longer running on this host", age
        except (psutil.AccessDenied, TypeError, ValueError):
            pass  # cannot tell: fall through to the heartbeat's age
    if age > stale_after_s:
        return False, f"its last heartbeat is {age:.0f} s old (more than {stale_after_s:g} s)", age
    return True, "", age


def _when(t) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(t)))
    except (TypeError, ValueError, OverflowError, OSError):
        return "?"


def _describe(record: dict | None, age: float) -> str:
    """"host h1, pid 1234 (cmd), since ..., last heartbeat 3 s ago" for messages."""
    if record is None:
        return f"a process whose lease record is unreadable or still being written ({age:.0f} s old)"
    cmd = str(record.get("cmd") or "?")
    if len(cmd) > 200:
        cmd = cmd[:197] + "..."
    me = " (this process)" if (record.get("pid") == os.getpid()
                               and record.get("host") == socket.gethostname()) else ""
    return (f"host {record.get('host', '?')}, pid {record.get('pid', '?')}{me} ({cmd}), "
            f"since {_when(record.get('started'))}, last heartbeat {age:.0f} s ago")


def holder(path: str | os.PathLike, *, stale_after_s: float = 60.0) -> dict | None:
    """The lease record at ``path`` with ``alive`` (bool) and ``age_s`` (seconds since its last
    heartbeat, by this machine's clock) added, and ``dead_because`` when not alive; an
    unreadable record is ``{"unreadable": True, ...}``. None if there is no lease file."""
    seen = _inspect(os.fspath(path))
    if seen is None:
        return None
    alive, why, age = _judge(seen, stale_after_s, _machine(), time.time())
    info = dict(seen.record) if seen.record is not None else {"unreadable": True}
    info.update(alive=alive, age_s=age)
    if not alive:
        info["dead_because"] = why
    return info


class Lease:
    """A lease file at ``path``; see the module docstring.

    ``what`` labels what it guards in messages ("study runs/quickstart"); ``say`` receives
    takeover, waiting and lost notices (default: stderr).
    """

    def __init__(self, path: str | os.PathLike, *, what: str, heartbeat_s: float = 10.0,
                 stale_after_s: float = 60.0, say: Callable[[str], None] | None = None):
        if heartbeat_s <= 0 or stale_after_s <= heartbeat_s:
            raise ValueError(f"need 0 < heartbeat_s < stale_after_s, got heartbeat_s={heartbeat_s}, "
                             f"stale_after_s={stale_after_s}")
        self.path = Path(path)
        self.what = what
        self.heartbeat_s = float(heartbeat_s)
        self.stale_after_s = float(stale_after_s)
        self.say = say or _say_stderr
        self.token = secrets.token_hex(16)
        self._here = _machine()
        self._owner_pid: int | None = None   # the process that acquired (forks must not release)
        self._record: dict | None = None
        self._lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Heartbeat and release both rewrite or remove the file; never both at once.
        self._io = threading.Lock()

    # -- public -------------------------------------------------------------------------------

    @property
    def lost(self) -> bool:
        """True once the heartbeat found the lease file no longer ours (taken over or removed)."""
        return self._lost

    @property
    def held(self) -> bool:
        """Acquired by this process, not released, not lost."""
        return self._owner_pid == os.getpid() and not self._lost

    def acquire(self, wait: float | bool = False) -> "Lease":
        """Take the lease. ``wait=False``: raise ``LeaseHeld`` at once if a live owner holds it;
        ``True``: wait as long as it takes; a number: wait at most that many seconds."""
        if self._owner_pid == os.getpid():
            raise RuntimeError(f"{self.path}: this Lease is already acquired (not reentrant)")
        if wait is True:
            wait_s, deadline = None, None
        else:
            wait_s = max(0.0, float(wait or 0))
            deadline = time.monotonic() + wait_s
        path = os.fspath(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lost = False
        self.token = secrets.token_hex(16)   # fresh per acquisition: records never repeat
        takeover_note = None
        delay = _POLL_FIRST_S
        announced = False
        while True:
            if self._create(path):
                if takeover_note:
                    self.say(takeover_note)
                self._start_heartbeat()
                return self
            seen = _inspect(path)
            if seen is None:
                continue  # released or moved aside between our create and our read: try again
            alive, why, age = _judge(seen, self.stale_after_s, self._here, time.time())
            if not alive:
                outcome = self._break(path, seen)
                if outcome == "removed":
                    takeover_note = (f"{path}: taking over {self._their_what(seen)} from "
                                     f"{_describe(seen.record, age)}: judged dead because {why}")
                    continue
                if outcome == "changed":
                    continue  # the file changed under us: judge it afresh
                # "busy": another contender is breaking it right now (milliseconds; a
                # breaker that dies is itself judged dead): look again shortly.
                time.sleep(0.01)
                continue
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                waited = f"; still held after waiting {wait_s:g} s" if wait_s else ""
                raise LeaseHeld(
                    f"{path}: {self._their_what(seen)} is being run by {_describe(seen.record, age)}"
                    f"{waited}; wait for it to finish (--wait), or stop that process",
                    path, seen.record)
            if not announced:
                self.say(f"{path}: {self._their_what(seen)} is being run by "
                         f"{_describe(seen.record, age)}; waiting for it")
                announced = True
            time.sleep(delay if remaining is None else min(delay, remaining))
            delay = min(delay * 2, _POLL_MAX_S)

    def release(self) -> None:
        """Stop heartbeating and remove the lease file if it still holds our token. Idempotent;
        a no-op in a process that did not acquire (a fork inherits the object, not the lease)."""
        if self._owner_pid != os.getpid():
            return
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        with self._io:
            self._owner_pid = None
            path = os.fspath(self.path)
            seen = _inspect(path)
            if seen is not None and seen.record is not None and seen.record.get("token") == self.token:
                _remove_if_same(path, seen, self.token)
        try:
            atexit.unregister(self.release)
        except Exception:
            pass

    def __enter__(self) -> "Lease":
        return self.acquire(wait=False)

    def __exit__(self, *exc) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "lost" if self._lost else ("held" if self._owner_pid else "free")
        return f"Lease({str(self.path)!r}, what={self.what!r}, {state})"

    # -- internals ----------------------------------------------------------------------------

    def _their_what(self, seen: _Seen) -> str:
        if seen.record is not None and seen.record.get("what"):
            return str(seen.record["what"])
        return self.what

    def _new_record(self) -> dict:
        pid = os.getpid()
        now = time.time()
        return {"host": self._here["host"], "pid": pid, "pid_started": _create_time(pid),
                "boot_id": self._here["boot_id"], "pid_ns": self._here["pid_ns"],
                "token": self.token, "what": self.what, "started": now, "heartbeat": now,
                "cmd": " ".join(sys.argv)}

    def _create(self, path: str) -> bool:
        """O_EXCL-create the lease with our record; False if the file exists."""
        record = self._new_record()
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            return False
        try:
            payload = json.dumps(record, indent=1).encode("utf-8")
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            # Ours alone (just created, not yet a valid record anyone could have judged live).
            try:
                os.unlink(path)
            except OSError:
                pass
            raise
        os.close(fd)
        self._record = record
        self._owner_pid = os.getpid()
        return True

    def _break(self, path: str, seen: _Seen) -> str:
        """Remove the dead owner's lease ``seen``: "removed", "changed" (the file is no longer
        what we judged) or "busy" (another contender is breaking it right now)."""
        # Without this second lock, a contender that judged the dead file and is slow to
        # rename it could move aside the fresh lease a faster contender just created, and a
        # third could create another in the gap: two owners. With it, only one contender at
        # a time may move the lease, and only after re-checking it is the file it judged.
        brk = path + ".break"
        if not self._take_break_lock(brk):
            return "busy"
        try:
            now_seen = _inspect(path)
            if now_seen is None or not now_seen.same_file(seen):
                return "changed"
            return "removed" if _remove_if_same(path, seen, self.token) else "changed"
        finally:
            # Our own break lock (token-checked, so a lock someone judged dead and replaced
            # is left to its new owner).
            cur = _inspect(brk)
            if cur is not None and cur.record is not None and cur.record.get("token") == self.token:
                _remove_if_same(brk, cur, self.token)

    def _take_break_lock(self, brk: str) -> bool:
        for _ in range(2):
            try:
                fd = os.open(brk, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                seen = _inspect(brk)
                if seen is None:
                    continue
                # Held for milliseconds; one that lives on has a dead breaker behind it.
                alive, why, _ = _judge(seen, self.stale_after_s, self._here, time.time())
                if alive:
                    return False
                _remove_if_same(brk, seen, self.token)
                continue
            try:
                now = time.time()
                os.write(fd, json.dumps({
                    "host": self._here["host"], "pid": os.getpid(), "pid_started": _create_time(os.getpid()),
                    "boot_id": self._here["boot_id"], "pid_ns": self._here["pid_ns"],
                    "token": self.token, "heartbeat": now}).encode("utf-8"))
            finally:
                os.close(fd)
            return True
        return False

    def _start_heartbeat(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._heartbeat_loop, name=f"lease-heartbeat {self.path}",
                                        daemon=True)
        self._thread.start()
        # A normal interpreter exit releases; a crash leaves the file for the pid check.
        atexit.register(self.release)

    def _heartbeat_loop(self) -> None:
        failing = False
        while not self._stop.wait(self.heartbeat_s):
            with self._io:
                if self._stop.is_set():
                    return
                try:
                    if not self._beat():
                        return
                    failing = False
                except Exception as e:  # noqa: BLE001 - a dead heartbeat thread would go stale silently
                    # A filesystem hiccup: keep trying; if it lasts past stale_after_s others
                    # may take over, which the next successful re-read will notice (lost).
                    if not failing:
                        failing = True
                        self._tell(f"{self.path}: could not refresh the lease heartbeat ({e}); retrying")

    def _tell(self, message: str) -> None:
        # From the heartbeat thread: a failing ``say`` must not stop the heartbeat.
        try:
            self.say(message)
        except Exception:  # noqa: BLE001
            pass

    def _beat(self) -> bool:
        """Refresh our heartbeat if the file is still ours; False (and ``lost``) if not."""
        path = os.fspath(self.path)
        seen = _inspect(path)
        if seen is None or seen.record is None or seen.record.get("token") != self.token:
            self._lost = True
            if seen is None:
                now_held = "the lease file was removed"
            else:
                age = _judge(seen, self.stale_after_s, self._here, time.time())[2]
                now_held = f"it is now held by {_describe(seen.record, age)}"
            self._tell(f"{self.path}: lost the lease for {self.what}: {now_held}; "
                     f"this process must stop working on it")
            return False
        record = dict(self._record, heartbeat=time.time())
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.hb-", suffix=".tmp", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o666 & ~_umask())
            with os.fdopen(fd, "wb") as f:
                f.write(json.dumps(record, indent=1).encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        self._record = record
        return True


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _remove_if_same(path: str, seen: _Seen, token: str) -> bool:
    """Delete ``path`` only if it is still the file ``seen``; True if it was deleted.

    There is no compare-and-delete on a filesystem, so: move it aside to a name only we use
    (one mover wins; the rest get FileNotFoundError), look at what we moved, and put it
    back with ``os.link`` (which, unlike rename, never replaces a file) if it is not ours
    to delete."""
    aside = f"{path}.stale-{token}"
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False
    try:
        moved = _inspect(aside)
        if moved is not None and moved.same_file(seen):
            return True
        try:
            os.link(aside, path)
        except FileExistsError:
            pass  # taken again meanwhile; the moved file's owner finds out at its next heartbeat
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            # No hard links here: a rename back, checked first (a small window, only on the
            # rare path where the file changed under us).
            if not os.path.exists(path):
                os.rename(aside, path)
        return False
    finally:
        try:
            os.unlink(aside)
        except FileNotFoundError:
            pass
