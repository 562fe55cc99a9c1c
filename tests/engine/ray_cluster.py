"""A real local multi-node Ray cluster for tests: `ray start` processes, no mocks.

    with LocalRayCluster(tmp_path, num_nodes=2, cpus_per_node=1) as cluster:
        with cluster.connected():      # env set, ray.init(address=...); ray.shutdown() after
            ...

Each node is its own raylet on this machine, started by its own `ray start` in its own
session. Ray gotchas this module works around (measured with ray 2.60 on a 2-core box):

* Two raylets on one machine need distinct ``--node-ip-address`` values (127.0.0.1 and
  127.0.0.2: Linux answers the whole 127/8 on the loopback interface). With one IP both
  raylets register, but Ray Train derives node_rank from the node IP, so both workers get
  node_rank 0 (local_rank 0 and 1). Ray replaces the head's 127.0.0.1 by the machine's
  primary address (192.0.2.2 here; 127.0.0.1 on a machine without one): still distinct.
* Every listening port of every node is chosen here (GCS, node manager, object manager,
  dashboard, dashboard agent http/grpc, runtime-env agent, metrics export, ray client
  server), not left at Ray's fixed defaults (6379, 8265, 10001, 52365, ...), so two
  raylets of one cluster and several clusters on one machine (parallel test sessions)
  don't collide. The dashboard process runs even with --include-dashboard=false (it then
  loads only its usage-stats module) and takes 8265 unless told otherwise. Worker ports
  are ``--min-worker-port=0 --max-worker-port=0`` (the OS picks) instead of the default
  range 10002-19999 that every cluster on the machine would share.
  ``--ray-client-server-port=0`` is rejected (1024..65535), so it gets a port too.
* Unix socket paths are limited to ~107 bytes and Ray puts its sockets under
  ``<temp-dir>/session_<date>_<time>_<pid>/sockets/``, so the temp dir is a short
  ``/tmp/rtc-XXXXXXXX`` (one subdirectory per node), never pytest's long tmp_path.
* Token auth: if ``~/.ray/auth_token`` exists and RAY_AUTH_MODE is unset, `ray start`
  turns token auth on and clients then fail with InvalidAuthToken; a local ``ray.init()``
  with RAY_AUTH_MODE unset even *creates* that file. RAY_AUTH_MODE is set explicitly for
  the `ray start` processes and in ``.env`` for drivers.
* `ray stop` kills every Ray process of the user on the machine (other tests' clusters
  included): never used. `ray start` leaves gcs_server, raylet, agents, ... running after
  it exits; they, and the workers the raylets spawn later (in per-worker process groups,
  same session), keep the session `ray start` was started in (start_new_session=True
  here). stop() finds them by session id (Linux never hands out a pid number that still
  names a live session or group) and by this cluster's unique temp dir on their command
  lines. Order matters, as in `ray stop`: a raylet that gets SIGTERM tells the GCS it is
  leaving, then kills its workers and agents itself, within a second; SIGTERM the GCS at
  the same time and raylet and GCS hang on each other until SIGKILL. So: raylets first,
  then the rest, the GCS last.
* atexit does not run when pytest dies by a signal (a CI timeout's SIGTERM/SIGKILL), so a
  small watchdog process per cluster stops the cluster when the process that started it
  is gone.
* `address="auto"` (or no address) connects to whichever cluster started last on the
  machine: always pass ``cluster.address`` (RAY_ADDRESS in ``.env``).
"""
from __future__ import annotations

import atexit
import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional

import psutil

__all__ = ["LocalRayCluster", "RayClusterError", "pick_free_ports", "start_all"]

# Per-node listening ports, as `ray start` flag names (without the leading dashes).
_NODE_PORT_FLAGS = (
    "node-manager-port",
    "object-manager-port",
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "runtime-env-agent-port",
    "metrics-export-port",
)
_HEAD_PORT_FLAGS = ("port", "ray-client-server-port", "dashboard-port")

_LOG_FILES = (
    "raylet.out",
    "raylet.err",
    "gcs_server.out",
    "gcs_server.err",
    "dashboard_agent.log",
    "runtime_env_agent.log",
)
_SESSIONS_FILE = "sessions"  # in the temp dir: the watchdog reads the session ids there

# Not the global `random`: a test that seeds it must not make parallel sessions pick the
# same ports.
_rng = random.SystemRandom()


class RayClusterError(RuntimeError):
    """The local cluster failed to start (the message carries the relevant log tails)."""


# --------------------------------------------------------------------------- ports


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _probe(port: int) -> List[socket.socket]:
    """Bind `port` on every address, IPv4 and IPv6 (Ray's GCS and raylet listen on
    ``[::]``); the open sockets on success, [] if anything holds the port."""
    held = []
    for family, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        try:
            s = socket.socket(family, socket.SOCK_STREAM)
        except OSError:  # no IPv6 here
            continue
        try:
            if family == socket.AF_INET6:
                # IPv6 only: the IPv4 side is held by the first socket already (a
                # dual-stack listener on [::] fails the IPv4 probe).
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((addr, port))
        except OSError:
            s.close()
            for h in held:
                h.close()
            return []
        held.append(s)
    return held


def pick_free_ports(n: int, exclude: Iterable[int] = ()) -> List[int]:
    """n distinct TCP ports that are free on every local address right now.

    Drawn at random *below* the kernel's ephemeral range (where outgoing connections and
    Ray's OS-assigned worker ports land), so a port chosen here is unlikely to be taken
    between this check and Ray's bind; start() retries with fresh ports if one was.
    """
    high = min(_ephemeral_low(), 65536)
    low = 20000 if high > 24000 else 1024
    chosen: List[int] = []
    held: List[socket.socket] = []
    excluded = set(exclude)
    try:
        for _ in range(5000):
            if len(chosen) == n:
                break
            port = _rng.randrange(low, high)
            if port in excluded or port in chosen:
                continue
            socks = _probe(port)
            if socks:
                held += socks  # kept open until all n are chosen: n distinct ports
                chosen.append(port)
    finally:
        for s in held:
            s.close()
    if len(chosen) != n:
        raise RayClusterError(f"could not find {n} free ports in [{low}, {high})")
    return chosen


# ---------------------------------------------------------------------- processes


def _sid(pid: int) -> Optional[int]:
    try:
        return os.getsid(pid)
    except OSError:
        return None


def process_alive(proc: psutil.Process) -> bool:
    try:
        # is_running() also compares the create time: a reused pid reads as dead.
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _name(proc: psutil.Process) -> str:
    try:
        return proc.name()
    except psutil.Error:
        return ""


def _find_processes(sessions: Iterable[int], temp_dir: Optional[Path],
                    known: Iterable[psutil.Process] = ()) -> List[psutil.Process]:
    """Live processes of one cluster: members of its `ray start` sessions, processes
    whose command line names its (unique) temp dir, and the `known` ones."""
    sessions = set(sessions)
    marker = f"{temp_dir}/" if temp_dir else None
    me = os.getpid()
    found: Dict[int, psutil.Process] = {p.pid: p for p in known}
    for p in psutil.process_iter(["cmdline"]):
        if p.pid == me or p.pid in found:
            continue
        hit = _sid(p.pid) in sessions
        if not hit and marker:
            hit = any(marker in arg for arg in (p.info.get("cmdline") or []))
        if hit:
            found[p.pid] = p
    return [p for p in found.values() if process_alive(p)]


def _terminate(procs: List[psutil.Process], grace: float) -> None:
    """SIGTERM, wait up to `grace` s, SIGKILL the rest, wait up to 5 s. Zombies count as
    gone (PID 1 of a container does not always reap orphans promptly)."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        live = [p for p in procs if process_alive(p)]
        if not live:
            return
        for p in live:
            with contextlib.suppress(psutil.Error):
                p.send_signal(sig)  # psutil refuses to signal a reused pid
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(process_alive(p) for p in live):
            time.sleep(0.05)


def stop_ray_processes(scan: Callable[[], List[psutil.Process]], grace: float = 5.0) -> None:
    """Stop the Ray processes `scan()` returns (it is called again between rounds: processes
    may start processes while we signal), in Ray's order: raylets first, newest node first (a
    raylet given SIGTERM deregisters and ends its workers), then all but the GCS, then the rest."""
    _terminate(sorted((p for p in scan() if _name(p) == "raylet"), key=lambda p: -p.pid),
               grace)
    _terminate([p for p in scan() if _name(p) != "gcs_server"], grace)
    for _ in range(3):
        left = scan()
        if not left:
            break
        _terminate(left, grace)


def _kill_cluster(sessions: Iterable[int], temp_dir: Optional[Path],
                  known: Iterable[psutil.Process] = (), grace: float = 5.0) -> None:
    sessions, known = list(sessions), list(known)
    stop_ray_processes(lambda: _find_processes(sessions, temp_dir, known), grace)


def _ray_cli() -> List[str]:
    """`ray` of the current interpreter (the workers then run this same Python)."""
    exe = Path(sys.executable).with_name("ray")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "ray.scripts.scripts"]


def _tail(path: Path, lines: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError as e:
        return f"<unreadable: {e}>"
    return "\n".join(text.splitlines()[-lines:])


# A short-lived driver: connect, wait for n alive nodes, print them as JSON.
_WAIT_NODES_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import ray
    address, n, deadline = sys.argv[1], int(sys.argv[2]), time.time() + float(sys.argv[3])
    ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    alive = []
    while time.time() < deadline:
        alive = [x for x in ray.nodes() if x["Alive"]]
        if len(alive) >= n:
            break
        time.sleep(0.25)
    print("NODES=" + json.dumps([
        {"node_id": x["NodeID"], "ip": x["NodeManagerAddress"],
         "resources": x["Resources"]} for x in alive]))
    ray.shutdown()
    sys.exit(0 if len(alive) >= n else 3)
    """
)


class LocalRayCluster:
    """`num_nodes` raylets on this machine forming one real Ray cluster.

    Node i runs with ``--node-ip-address=127.0.0.<i+1>``; node 0 is the head. ``tmp_root``
    receives the `ray start` outputs (``ray_start_node<i>.log``) and, when start() fails,
    a copy of Ray's logs (``ray_logs_node<i>/``); Ray's own temp dir is a short dir under
    /tmp that stop() removes.

    After start(): ``address`` ("127.0.0.1:<GCS port>"), ``env`` (what a driver needs:
    RAY_ADDRESS, RAY_AUTH_MODE, RAY_USAGE_STATS_ENABLED), ``nodes`` ([{"node_id", "ip",
    "resources"}] of the alive nodes), ``pids`` (every process of this cluster seen so
    far), ``temp_dir``, ``start_seconds``.
    """

    def __init__(
        self,
        tmp_root,
        num_nodes: int = 2,
        cpus_per_node: int = 1,
        *,
        object_store_mb: int = 128,
        include_dashboard: bool = False,
        auth_mode: str = "disabled",  # or "token": a fresh token in RAY_AUTH_TOKEN
        start_timeout: float = 120.0,
        stop_grace: float = 5.0,
        start_attempts: int = 2,
        extra_env: Optional[Dict[str, str]] = None,
        node_env: Optional[Dict[str, str]] = None,
        watchdog: bool = True,
    ):
        if not 1 <= num_nodes <= 250:
            raise ValueError("num_nodes must be in 1..250")
        self.tmp_root = Path(tmp_root)
        self.num_nodes = num_nodes
        self.cpus_per_node = cpus_per_node
        self.object_store_mb = object_store_mb
        self.include_dashboard = include_dashboard
        self.auth_mode = auth_mode
        self.start_timeout = start_timeout
        self.stop_grace = stop_grace
        self.start_attempts = max(1, start_attempts)
        self.extra_env = dict(extra_env or {})  # for the nodes and in .env for drivers
        self.node_env = dict(node_env or {})  # for the `ray start` processes only
        self.watchdog = watchdog

        self.address: Optional[str] = None
        self.dashboard_url: Optional[str] = None
        self.temp_dir: Optional[Path] = None
        self.nodes: List[dict] = []
        self.start_seconds: Optional[float] = None
        self._procs: Dict[int, psutil.Process] = {}
        self._watchdog_proc: Optional[psutil.Process] = None
        self._token = secrets.token_hex(16)
        self._sessions: List[int] = []
        self._started = False
        self._stopped = False

    # ------------------------------------------------------------------ public API

    @property
    def node_ips(self) -> List[str]:
        """The --node-ip-address of each node (``nodes[i]["ip"]`` is what Ray made of it)."""
        return [f"127.0.0.{i + 1}" for i in range(self.num_nodes)]

    @property
    def env(self) -> Dict[str, str]:
        """Environment variables a driver (in-process or subprocess) of this cluster needs."""
        env = self._base_env()
        if self.address:
            env["RAY_ADDRESS"] = self.address
        return env

    def subprocess_env(self) -> Dict[str, str]:
        """os.environ plus ``env``, for subprocess.run(..., env=...)."""
        return {**os.environ, **self.env}

    @property
    def pids(self) -> List[int]:
        return sorted(self._procs)

    def alive_pids(self) -> List[int]:
        """Recorded processes still running (zombies and reused pids count as dead)."""
        return sorted(pid for pid, p in self._procs.items() if process_alive(p))

    def start(self) -> "LocalRayCluster":
        if self._started:
            return self
        if self._stopped:
            raise RayClusterError("a stopped LocalRayCluster cannot be restarted")
        self._started = True
        atexit.register(self.stop)
        t0 = time.monotonic()
        self.tmp_root.mkdir(parents=True, exist_ok=True)
        self.temp_dir = Path(tempfile.mkdtemp(prefix="rtc-", dir="/tmp"))
        try:
            if self.watchdog:
                self._start_watchdog()
            failures = []
            for attempt in range(self.start_attempts):
                try:
                    self._start_nodes(t0 + self.start_timeout * (attempt + 1))
                    break
                except RayClusterError as e:
                    # A port taken between our probe and Ray's bind shows up here as a
                    # failed `ray start` or a node that never comes up: all again, new ports.
                    failures.append(f"--- attempt {attempt + 1} ---\n{e}")
                    self._save_logs()
                    _kill_cluster(self._sessions, self.temp_dir,
                                  [p for p in self._known() if p is not self._watchdog_proc],
                                  self.stop_grace)
            else:
                raise RayClusterError(
                    f"local Ray cluster ({self.num_nodes} nodes) failed to start "
                    f"{self.start_attempts} times; Ray logs copied under {self.tmp_root}\n"
                    + "\n".join(failures))
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """Stop every process of this cluster (never `ray stop`) and remove its temp dir.

        Idempotent; also registered with atexit."""
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        if self._started:
            _kill_cluster(self._sessions, self.temp_dir, self._known(), self.stop_grace)
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> "LocalRayCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @contextlib.contextmanager
    def connected(self, **init_kwargs) -> Iterator[object]:
        """This process as a driver: env set, ray.init(address=...); ray.shutdown() and
        the env restored on exit."""
        import ray

        if ray.is_initialized():
            raise RuntimeError("ray is already initialized in this process")
        saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        try:
            init_kwargs.setdefault("logging_level", "WARNING")
            yield ray.init(address=self.address, **init_kwargs)
        finally:
            ray.shutdown()
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def log_tails(self, lines: int = 25) -> str:
        """The last lines of every `ray start` output and of the main Ray logs per node."""
        out = []
        for i in range(self.num_nodes):
            start_log = self.tmp_root / f"ray_start_node{i}.log"
            if start_log.exists():
                out.append(f"==> {start_log} <==\n{_tail(start_log, lines)}")
            if self.temp_dir is None:
                continue
            logs = self.temp_dir / f"n{i}" / "session_latest" / "logs"
            for name in _LOG_FILES:
                if (logs / name).exists() and (logs / name).stat().st_size:
                    out.append(f"==> node{i}:{name} <==\n{_tail(logs / name, lines)}")
        return "\n".join(out) or "<no logs written>"

    # ------------------------------------------------------------------ internals

    def _base_env(self) -> Dict[str, str]:
        env = {
            # Explicit, or a ~/.ray/auth_token silently turns token auth on (FACTS.md).
            "RAY_AUTH_MODE": self.auth_mode,
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        if self.auth_mode == "token":
            # This cluster's own token, given to nodes and drivers alike (never written
            # to ~/.ray/auth_token, which every other local Ray on the machine would read).
            env["RAY_AUTH_TOKEN"] = self._token
        env.update(self.extra_env)
        return env

    def _starter_env(self) -> Dict[str, str]:
        env = {**os.environ, **self._base_env(), **self.node_env}
        # An inherited RAY_ADDRESS would reach the raylets' environment, hence every worker.
        env.pop("RAY_ADDRESS", None)
        return env

    def _known(self) -> List[psutil.Process]:
        return list(self._procs.values())

    def _record(self) -> None:
        for p in _find_processes(self._sessions, self.temp_dir, self._known()):
            self._procs.setdefault(p.pid, p)

    def _node_dir(self, i: int) -> Path:
        # One temp dir per node: own session dir, logs and log monitor (a log monitor per
        # node on one shared dir would send every log line to drivers twice).
        d = self.temp_dir / f"n{i}"
        d.mkdir(exist_ok=True)
        return d

    def _start_nodes(self, deadline: float) -> None:
        self._start_head()
        for i in range(1, self.num_nodes):
            self._start_node(i)
        self.nodes = self._wait_for_nodes(deadline)
        self._record()

    def _common_args(self, i: int, ports: Dict[str, int]) -> List[str]:
        args = [
            f"--node-ip-address={self.node_ips[i]}",
            f"--temp-dir={self._node_dir(i)}",
            f"--num-cpus={self.cpus_per_node}",
            "--num-gpus=0",
            f"--object-store-memory={self.object_store_mb * 1024 * 1024}",
            "--min-worker-port=0",
            "--max-worker-port=0",
            "--disable-usage-stats",
            "--log-style=record",
            "--log-color=false",
        ]
        return args + [f"--{flag}={ports[flag]}" for flag in _NODE_PORT_FLAGS]

    def _start_head(self) -> None:
        flags = _NODE_PORT_FLAGS + _HEAD_PORT_FLAGS
        ports = dict(zip(flags, pick_free_ports(len(flags))))
        args = [
            "--head",
            f"--port={ports['port']}",
            f"--ray-client-server-port={ports['ray-client-server-port']}",
            f"--include-dashboard={str(self.include_dashboard).lower()}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={ports['dashboard-port']}",
        ] + self._common_args(0, ports)
        self._run_starter(0, args)
        self.address = f"127.0.0.1:{ports['port']}"
        if self.include_dashboard:
            self.dashboard_url = f"http://127.0.0.1:{ports['dashboard-port']}"

    def _start_node(self, i: int) -> None:
        ports = dict(zip(_NODE_PORT_FLAGS, pick_free_ports(len(_NODE_PORT_FLAGS))))
        self._run_starter(i, [f"--address={self.address}"] + self._common_args(i, ports))

    def _run_starter(self, i: int, args: List[str]) -> None:
        """One `ray start` in its own session; raises RayClusterError unless it exits 0."""
        log_path = self.tmp_root / f"ray_start_node{i}.log"
        with open(log_path, "ab") as log:
            log.write(f"$ ray start {' '.join(args)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                _ray_cli() + ["start"] + args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._starter_env(),
                cwd=str(self.temp_dir),
                # Own session: everything it spawns, and what those spawn, carries this
                # session id; stop() finds them by it.
                start_new_session=True,
            )
        self._sessions.append(proc.pid)
        self._write_sessions()
        with contextlib.suppress(psutil.Error):
            self._procs[proc.pid] = psutil.Process(proc.pid)
        try:
            rc = proc.wait(timeout=self.start_timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            rc = "timeout"
        self._record()
        if rc != 0:
            raise RayClusterError(
                f"`ray start` of node {i} exited with {rc}\n{self.log_tails()}")

    def _wait_for_nodes(self, deadline: float) -> List[dict]:
        budget = max(10.0, deadline - time.monotonic())
        cmd = [sys.executable, "-c", _WAIT_NODES_SCRIPT, self.address, str(self.num_nodes),
               str(budget)]
        try:
            res = subprocess.run(cmd, env=self.subprocess_env(), capture_output=True,
                                 text=True, timeout=budget + 30, cwd=str(self.temp_dir))
        except subprocess.TimeoutExpired as e:
            raise RayClusterError(
                f"no driver could connect to {self.address} within {budget + 30:.0f} s\n"
                f"{self.log_tails()}") from e
        nodes = None
        for line in res.stdout.splitlines():
            if line.startswith("NODES="):
                nodes = json.loads(line[len("NODES="):])
        if res.returncode != 0 or nodes is None or len(nodes) < self.num_nodes:
            raise RayClusterError(
                f"expected {self.num_nodes} alive nodes at {self.address}, got "
                f"{nodes if nodes is not None else 'no answer'} (driver exit {res.returncode})"
                f"\n--- driver stderr ---\n{res.stderr[-3000:]}\n{self.log_tails()}")
        return nodes

    def _write_sessions(self) -> None:
        tmp = self.temp_dir / f"{_SESSIONS_FILE}.tmp"
        tmp.write_text(" ".join(map(str, self._sessions)))
        tmp.replace(self.temp_dir / _SESSIONS_FILE)

    def _start_watchdog(self) -> None:
        me = psutil.Process()
        proc = subprocess.Popen(
            [sys.executable, __file__, "--watchdog", str(me.pid), repr(me.create_time()),
             str(self.temp_dir)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C to the test's process group must not hit it
        )
        # Recorded like any process of ours: stop() ends it with the rest.
        self._watchdog_proc = self._procs[proc.pid] = psutil.Process(proc.pid)

    def _save_logs(self) -> None:
        if self.temp_dir is None:
            return
        for i in range(self.num_nodes):
            logs = self.temp_dir / f"n{i}" / "session_latest" / "logs"
            if logs.is_dir():
                with contextlib.suppress(OSError, shutil.Error):
                    shutil.copytree(logs, self.tmp_root / f"ray_logs_node{i}",
                                    dirs_exist_ok=True, ignore_dangling_symlinks=True)


def start_all(clusters: List[LocalRayCluster]) -> List[LocalRayCluster]:
    """Start several clusters concurrently (start() mostly waits on `ray start`); if any
    fails, stop them all and raise the first error."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, len(clusters))) as pool:
        errors = [f.exception() for f in [pool.submit(c.start) for c in clusters]]
    first = next((e for e in errors if e is not None), None)
    if first is not None:
        for c in clusters:
            c.stop()
        raise first
    return clusters


def _watchdog(parent_pid: int, parent_create_time: float, temp_dir: Path) -> None:
    """Until temp_dir is gone (a normal stop()), check once a second that the process that
    started the cluster lives; if it died without stop() (SIGKILL, SIGTERM: no atexit),
    stop the cluster from here."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while temp_dir.exists():
        try:
            parent = psutil.Process(parent_pid)
            parent_alive = (abs(parent.create_time() - parent_create_time) < 1e-3
                            and process_alive(parent))  # a killed, unreaped parent is a zombie
        except psutil.Error:
            parent_alive = False
        if not parent_alive:
            try:
                sessions = [int(x) for x in (temp_dir / _SESSIONS_FILE).read_text().split()]
            except (OSError, ValueError):
                sessions = []
            _kill_cluster(sessions, temp_dir)
            shutil.rmtree(temp_dir, ignore_errors=True)
            return
        time.sleep(1.0)


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "--watchdog":
    _watchdog(int(sys.argv[2]), float(sys.argv[3]), Path(sys.argv[4]))
