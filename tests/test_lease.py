"""stilts_ds.lease with real processes and a real directory: a holder in another process, a
holder killed with SIGKILL, records from other hosts, six processes racing for one lease,
heartbeats and takeovers. Nothing is mocked; timings are shrunk (heartbeat_s ~0.05-0.2 s)."""
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from stilts_ds.lease import Lease, LeaseHeld, holder

REPO = Path(__file__).resolve().parents[1]

# A holder process: takes the lease, then holds it until its stdin closes (or it is killed).
HOLDER = r"""
import sys
from stilts_ds.lease import Lease
lease = Lease(sys.argv[1], what="study runs/t", heartbeat_s=0.1, stale_after_s=5.0).acquire()
sys.stdin.read()
lease.release()
"""

# A racer: says it is ready, waits for the start file, tries once, prints the outcome and,
# if it won, holds the lease until the stop file appears (so no later racer can win too).
RACER = r"""
import os, sys, time
from stilts_ds.lease import Lease, LeaseHeld
path, start, stop, ready = sys.argv[1:5]
notes = []
lease = Lease(path, what="node race", heartbeat_s=0.1, stale_after_s=3.0, say=notes.append)
open(ready, "w").close()
while not os.path.exists(start):
    time.sleep(0.001)
try:
    lease.acquire(wait=False)
except LeaseHeld:
    print("held", flush=True)
    sys.exit(0)
print("won", len([n for n in notes if "taking over" in n]), flush=True)
while not os.path.exists(stop):
    time.sleep(0.01)
lease.release()
"""


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _wait_for(cond, timeout=5.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def _start_holder(path: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE,
                            cwd=REPO, env=_env())
    # The file exists as soon as the O_EXCL create succeeds; the record follows at once.
    _wait_for(lambda: (holder(path) or {}).get("pid") == proc.pid or proc.poll() is not None,
              what="the holder process to take the lease")
    assert proc.poll() is None, "holder process exited early"
    return proc


def _record(**fields):
    now = time.time()
    rec = {"host": "other-host", "pid": 4242, "pid_started": now - 100, "token": secrets.token_hex(16),
           "what": "study runs/other", "started": now - 100, "heartbeat": now, "cmd": "stilts-ds pipeline x"}
    rec.update(fields)
    return rec


def _write(path: Path, rec: dict) -> None:
    tmp = path.with_name(path.name + ".by-hand")
    tmp.write_text(json.dumps(rec))
    os.replace(tmp, path)


def _leftovers(d: Path):
    return sorted(p.name for p in d.iterdir())


# 1 ---------------------------------------------------------------------------------------------

def test_live_holder_in_another_process_is_respected_then_waited_for(tmp_path):
    path = tmp_path / ".lease"
    proc = _start_holder(path)
    try:
        with pytest.raises(LeaseHeld) as exc:
            Lease(path, what="study runs/t", heartbeat_s=0.1, stale_after_s=5.0).acquire()
        msg = str(exc.value)
        assert msg.startswith(f"{path}: study runs/t is being run by host {socket.gethostname()}, pid {proc.pid} (")
        assert "last heartbeat" in msg and "--wait" in msg
        assert exc.value.record["pid"] == proc.pid

        t0 = time.monotonic()
        with pytest.raises(LeaseHeld, match="still held after waiting 0.5 s"):
            Lease(path, what="study runs/t", heartbeat_s=0.1, stale_after_s=5.0, say=lambda m: None).acquire(wait=0.5)
        assert 0.45 <= time.monotonic() - t0 < 1.5

        # wait=True: release the holder shortly after we start waiting.
        notes = []
        lease = Lease(path, what="study runs/t", heartbeat_s=0.1, stale_after_s=5.0, say=notes.append)
        released_at = []

        def let_go():
            time.sleep(0.3)
            proc.stdin.close()
            proc.wait(timeout=5)
            released_at.append(time.monotonic())

        t = threading.Thread(target=let_go)
        t.start()
        lease.acquire(wait=True)
        got_at = time.monotonic()
        t.join()
        assert proc.returncode == 0
        assert got_at - released_at[0] < 1.0
        assert any("waiting for it" in n for n in notes)
        assert not any("taking over" in n for n in notes)   # a clean release, not a takeover
        assert holder(path)["pid"] == os.getpid()
        lease.release()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert _leftovers(tmp_path) == []


def test_holder_dying_while_we_wait_is_taken_over(tmp_path):
    path = tmp_path / ".lease"
    proc = _start_holder(path)
    killer = threading.Timer(0.3, lambda: (proc.send_signal(signal.SIGKILL), proc.wait()))
    killer.start()
    notes = []
    try:
        lease = Lease(path, what="study runs/t", heartbeat_s=0.1, stale_after_s=5.0, say=notes.append)
        lease.acquire(wait=3.0)
    finally:
        killer.join()
    assert any(f"pid {proc.pid} is no longer running" in n for n in notes)
    lease.release()


# 2 ---------------------------------------------------------------------------------------------

def test_sigkilled_holder_is_taken_over_at_once(tmp_path):
    path = tmp_path / ".lease"
    proc = _start_holder(path)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=5)
    assert path.exists()                        # a crash leaves the file behind
    info = holder(path)
    assert info["alive"] is False and "no longer running" in info["dead_because"]

    notes = []
    t0 = time.monotonic()
    lease = Lease(path, what="study runs/t", heartbeat_s=0.1, stale_after_s=5.0, say=notes.append).acquire()
    assert time.monotonic() - t0 < 0.5          # no waiting for the heartbeat to go stale
    assert len(notes) == 1
    assert f"pid {proc.pid}" in notes[0] and f"host {socket.gethostname()}" in notes[0]
    assert "taking over study runs/t" in notes[0] and "no longer running" in notes[0]
    assert holder(path)["token"] == lease.token
    lease.release()
    assert _leftovers(tmp_path) == []


def test_reused_pid_is_judged_dead(tmp_path):
    # Our own live pid, but a start time that is not ours: the pid was reused.
    path = tmp_path / ".lease"
    me = os.getpid()
    _write(path, _record(host=socket.gethostname(), pid=me, pid_started=time.time() - 10_000))
    notes = []
    lease = Lease(path, what="x", heartbeat_s=0.1, stale_after_s=5.0, say=notes.append).acquire()
    assert "belongs to another process" in notes[0]
    lease.release()


# 3 ---------------------------------------------------------------------------------------------

def test_other_host_record_is_respected_while_fresh_and_taken_over_once_stale(tmp_path):
    path = tmp_path / ".lease"
    rec = _record(heartbeat=time.time() - 0.1)
    _write(path, rec)
    notes = []
    lease = Lease(path, what="study runs/t", heartbeat_s=0.05, stale_after_s=0.6, say=notes.append)
    with pytest.raises(LeaseHeld) as exc:
        lease.acquire()
    assert "host other-host, pid 4242 (stilts-ds pipeline x)" in str(exc.value)
    assert str(exc.value).startswith(f"{path}: study runs/other is being run by")
    assert holder(path, stale_after_s=0.6)["alive"] is True
    assert notes == []

    time.sleep(0.7)
    assert holder(path, stale_after_s=0.6)["alive"] is False
    lease.acquire()
    assert len(notes) == 1
    assert "host other-host, pid 4242" in notes[0] and "last heartbeat" in notes[0]
    assert "more than 0.6 s" in notes[0]
    lease.release()

    # Taken over while waiting: the record goes stale during acquire(wait=...).
    _write(path, _record(heartbeat=time.time()))
    t0 = time.monotonic()
    notes.clear()
    lease.acquire(wait=3.0)
    assert 0.5 < time.monotonic() - t0 < 2.0
    assert any("taking over" in n for n in notes)
    lease.release()
    assert _leftovers(tmp_path) == []


def test_half_written_record(tmp_path):
    # A creator that died between O_EXCL and write leaves an empty file: respected while
    # fresh (its creator may be writing it right now), taken over once older than stale_after_s.
    path = tmp_path / ".lease"
    path.touch()
    lease = Lease(path, what="node a", heartbeat_s=0.05, stale_after_s=1.0, say=lambda m: None)
    with pytest.raises(LeaseHeld, match="unreadable or still being written"):
        lease.acquire()
    old = time.time() - 5
    os.utime(path, (old, old))
    lease.acquire()
    assert holder(path)["token"] == lease.token
    lease.release()


# 4 ---------------------------------------------------------------------------------------------

def _race(tmp_path: Path, n: int, tag: str, stale: dict | None):
    d = tmp_path / tag
    d.mkdir()
    path = d / ".lease"
    if stale is not None:
        _write(path, stale)
    start, stop = tmp_path / f"{tag}.start", tmp_path / f"{tag}.stop"
    readies = [tmp_path / f"{tag}.ready{i}" for i in range(n)]
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(path), str(start), str(stop), str(r)],
                              stdout=subprocess.PIPE, text=True, cwd=REPO, env=_env())
             for r in readies]
    try:
        _wait_for(lambda: all(r.exists() for r in readies), timeout=10, what="racers to be ready")
        start.touch()
        # Losers exit at once; the winner holds until the stop file appears.
        _wait_for(lambda: sum(p.poll() is not None for p in procs) >= n - 1, timeout=10,
                  what="losers to exit")
        stop.touch()
        outs = [p.communicate(timeout=10)[0].split() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert all(p.returncode == 0 for p in procs), outs
    winners = [o for o in outs if o and o[0] == "won"]
    assert len(winners) == 1, outs
    assert sum(1 for o in outs if o == ["held"]) == n - 1, outs
    assert _leftovers(d) == []        # the winner released; no .stale-/.break/.hb- files
    return winners[0]


def test_race_exactly_one_of_six_wins(tmp_path):
    for i in range(2):
        _race(tmp_path, 6, f"fresh{i}", stale=None)


def test_race_over_a_stale_record_exactly_one_of_six_wins(tmp_path):
    for i in range(2):
        # Stale for every racer (heartbeat 100 s old, other host).
        won = _race(tmp_path, 6, f"stale{i}", stale=_record(heartbeat=time.time() - 100))
        assert int(won[1]) <= 1   # at most the one that broke it says "taking over"


def test_dead_breaker_does_not_block_takeover(tmp_path):
    # A contender that died while holding the takeover lock must not wedge the lease.
    path = tmp_path / ".lease"
    _write(path, _record(heartbeat=time.time() - 100))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    brk = tmp_path / ".lease.break"
    brk.write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout), "token": "x",
                               "heartbeat": time.time()}))
    notes = []
    lease = Lease(path, what="x", heartbeat_s=0.1, stale_after_s=5.0, say=notes.append).acquire()
    assert any("taking over" in n for n in notes)
    lease.release()
    assert _leftovers(tmp_path) == []


# 5 ---------------------------------------------------------------------------------------------

def test_heartbeat_advances_and_a_takeover_is_noticed(tmp_path):
    path = tmp_path / ".lease"
    notes = []
    lease = Lease(path, what="node english/phase1", heartbeat_s=0.05, stale_after_s=2.0, say=notes.append)
    lease.acquire()
    first = json.loads(path.read_text())
    _wait_for(lambda: json.loads(path.read_text())["heartbeat"] > first["heartbeat"], timeout=2,
              what="a heartbeat")
    later = json.loads(path.read_text())
    assert later["token"] == first["token"] == lease.token
    assert later["started"] == first["started"]
    assert not lease.lost and lease.held

    intruder = _record(host="other-host", pid=777, cmd="stilts-ds pipeline --other")
    _write(path, intruder)
    _wait_for(lambda: lease.lost, timeout=1.0, what="lost")
    assert not lease.held
    assert any("lost the lease for node english/phase1" in n and "host other-host, pid 777" in n
               for n in notes)
    time.sleep(0.2)                                   # heartbeating has stopped
    assert json.loads(path.read_text()) == intruder
    lease.release()
    assert json.loads(path.read_text()) == intruder   # not ours: left alone
    path.unlink()
    assert _leftovers(tmp_path) == []


def test_removed_file_is_noticed(tmp_path):
    path = tmp_path / ".lease"
    notes = []
    lease = Lease(path, what="node a", heartbeat_s=0.05, stale_after_s=2.0, say=notes.append).acquire()
    path.unlink()
    _wait_for(lambda: lease.lost, timeout=1.0, what="lost")
    assert any("was removed" in n for n in notes)
    lease.release()
    assert not path.exists()


# 6 ---------------------------------------------------------------------------------------------

def test_holder_release_and_cleanliness(tmp_path):
    path = tmp_path / "sub" / ".lease"
    assert holder(path) is None
    lease = Lease(path, what="study runs/q", heartbeat_s=0.05, stale_after_s=2.0)
    with lease:
        info = holder(path)
        assert info["alive"] is True and 0 <= info["age_s"] < 1.0
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
        assert info["what"] == "study runs/q" and info["token"] == lease.token
        assert info["cmd"] == " ".join(sys.argv)
        assert abs(info["pid_started"] - psutil.Process().create_time()) < 1
        # Same process, another Lease object: still a live holder.
        with pytest.raises(LeaseHeld, match=r"\(this process\)"):
            Lease(path, what="study runs/q").acquire()
        time.sleep(0.2)                   # let a few heartbeats run: their temp files must go
    assert not path.exists() and holder(path) is None
    lease.release()                       # twice: harmless
    assert _leftovers(path.parent) == []

    # Reacquire the same object; a dead record reports alive False.
    lease.acquire()
    lease.release()
    _write(path, _record(heartbeat=time.time() - 100))
    info = holder(path)
    assert info["alive"] is False and info["age_s"] > 99 and "more than 60 s" in info["dead_because"]


def test_forked_child_does_not_release_parents_lease(tmp_path):
    path = tmp_path / ".lease"
    lease = Lease(path, what="x", heartbeat_s=0.05, stale_after_s=2.0).acquire()
    pid = os.fork()
    if pid == 0:
        try:
            lease.release()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert holder(path)["token"] == lease.token
    lease.release()
    assert not path.exists()


def test_bad_timings_rejected(tmp_path):
    with pytest.raises(ValueError):
        Lease(tmp_path / ".lease", what="x", heartbeat_s=5, stale_after_s=5)
