"""A throwaway OpenSSH server on 127.0.0.1 for tests: own config, keys, port and HOME.

    with ThrowawaySshd(tmp_dir, env={"TMPDIR": ...}) as sshd:   # or sshd.start() / sshd.stop()
        sshd.ssh("echo hi")                 # ssh -i <client key> -p <port> root@127.0.0.1 ...
        sshd.proxy_command                  # for a client that cannot be given a port

Nothing outside ``tmp_dir`` is read or written except ``/run/sshd`` (the privilege separation
directory Debian's sshd requires; created empty if missing, like the package's service does,
and left in place because another sshd may be using it). The server:

* listens on 127.0.0.1 only, on a free port (never 22), in the foreground (``sshd -D``, a child
  of this process, ended by stop());
* has its own host key and accepts exactly one freshly generated client key (its own
  AuthorizedKeysFile), no passwords, no PAM;
* gives every session ``HOME=<tmp_dir>/home`` and the variables in ``env`` (sshd_config
  ``SetEnv``), so a client's ``~/...`` (dotfiles, ``~/.bashrc``, files a launcher copies to
  ``~``) lands in the temp dir, not in the user's real home. ``SetEnv`` also gives every
  session the marker ``STILTS_TEST_SSHD=<token>``: every process started through this server
  carries it in its environment, which is how processes_with_env() finds them afterwards.

Where sshd cannot run (not installed, no root, no /run/sshd, the port taken, ...), start()
raises SshdUnavailable with the reason; tests turn that into a skip that says why.

Also a small process toolbox (processes_with_env, stop_processes, start_watchdog) for the
cluster-launcher test (tests/test_cluster_launch.py), and its command line:

    python tests/sshd.py stop-ray KEY=VALUE   # `ray stop` for only the processes whose environment has KEY=VALUE
    python tests/sshd.py relay HOST PORT      # ssh ProxyCommand: stdin/stdout <-> HOST:PORT (like `nc`)
    python tests/sshd.py watchdog PID CREATE_TIME ROOT KEY=VALUE...   # see start_watchdog()
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional

import psutil

SSHD = "/usr/sbin/sshd"  # sshd re-execs itself and insists on an absolute path
MARKER = "STILTS_TEST_SSHD"
_RAY_CLUSTER = "stilts_tests_ray_cluster"  # the module name tests/conftest.py loads it under

__all__ = ["ThrowawaySshd", "SshdUnavailable", "processes_with_env", "stop_processes", "free_port",
           "missing_tools", "start_watchdog"]


class SshdUnavailable(RuntimeError):
    """sshd (or ssh, ssh-keygen, rsync) cannot run here; the message says why."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (bound by the kernel, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def missing_tools() -> List[str]:
    """The programs a loopback `ray up` needs that are not installed."""
    need = {"sshd": SSHD, "ssh": "ssh", "ssh-keygen": "ssh-keygen", "rsync": "rsync"}
    return [name for name, exe in need.items()
            if not (os.access(exe, os.X_OK) if exe.startswith("/") else shutil.which(exe))]


class ThrowawaySshd:
    def __init__(self, root: Path, env: Optional[Dict[str, str]] = None, user: str = "root",
                 start_timeout: float = 15.0):
        self.root = Path(root)
        self.env = dict(env or {})
        self.user = user
        self.start_timeout = start_timeout
        self.token = secrets.token_hex(8)
        self.home = self.root / "home"
        self.client_key = self.root / "client_ed25519"
        self.config = self.root / "sshd_config"
        self.log = self.root / "sshd.log"
        self.port: Optional[int] = None
        self.proc: Optional[subprocess.Popen] = None

    # ------------------------------------------------------------------ public API

    @property
    def marker(self) -> str:
        """``KEY=VALUE`` that every session of this server has in its environment."""
        return f"{MARKER}={self.token}"

    @property
    def proxy_command(self) -> str:
        """An ssh ProxyCommand that connects to this server whatever port the client asks for
        (for clients such as Ray's cluster launcher that always dial port 22)."""
        return f"{sys.executable} {Path(__file__).resolve()} relay 127.0.0.1 {self.port}"

    def ssh_args(self) -> List[str]:
        return ["ssh", "-i", str(self.client_key), "-p", str(self.port),
                "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={os.devnull}",
                "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10",
                f"{self.user}@127.0.0.1"]

    def ssh(self, command: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
        return subprocess.run(self.ssh_args() + [command], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def start(self) -> "ThrowawaySshd":
        missing = missing_tools()
        if missing:
            raise SshdUnavailable(f"not installed: {', '.join(missing)} "
                                  "(Debian: apt-get install -y openssh-server rsync)")
        if os.geteuid() != 0 and self.user == "root":
            raise SshdUnavailable("not root: a throwaway sshd for root needs root")
        try:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        except OSError as e:
            raise SshdUnavailable(f"cannot create sshd's privilege separation dir /run/sshd: {e}")
        self.root.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(mode=0o700, exist_ok=True)
        host_key = self.root / "ssh_host_ed25519_key"
        for key in (host_key, self.client_key):
            if not key.exists():
                self._keygen(key)
        shutil.copy(f"{self.client_key}.pub", self.root / "authorized_keys")
        (self.root / "authorized_keys").chmod(0o600)

        errors = []
        for _ in range(3):  # the port may be taken between free_port() and sshd's bind
            self.port = free_port()
            self._write_config(host_key)
            problem = self._launch()
            if problem is None:
                return self
            errors.append(problem)
        self.stop()
        raise SshdUnavailable("sshd did not start:\n" + "\n".join(errors))

    def stop(self) -> None:
        """End sshd and every process started through it (by the marker in their
        environment); idempotent."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        stop_processes(processes_with_env(MARKER, self.token))

    def __enter__(self) -> "ThrowawaySshd":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no sshd log>"

    # ------------------------------------------------------------------ internals

    def _keygen(self, key: Path) -> None:
        res = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "stilts-ds-test",
                              "-f", str(key)], capture_output=True, text=True, timeout=30)
        if res.returncode != 0:
            raise SshdUnavailable(f"ssh-keygen failed: {res.stderr.strip()}")

    def _write_config(self, host_key: Path) -> None:
        env = {"HOME": str(self.home), MARKER: self.token, **self.env}
        for k, v in env.items():
            if any(c in f"{k}{v}" for c in ' "\n\t'):
                raise ValueError(f"SetEnv value with a blank or quote: {k}={v!r}")
        lines = [
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {host_key}",
            f"PidFile {self.root / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.root / 'authorized_keys'}",
            f"AllowUsers {self.user}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            # The key files live under /tmp (world-writable): StrictModes would refuse them.
            "StrictModes no",
            "PrintMotd no",
            "PrintLastLog no",
            "X11Forwarding no",
            "AllowTcpForwarding yes",  # `ray exec --port-forward`, `ray dashboard`
            "MaxStartups 50",  # the launcher opens several connections at once
            "MaxSessions 50",
            "LogLevel VERBOSE",
            # After sshd's own HOME/USER/PATH: these win (OpenSSH applies SetEnv last).
            "SetEnv " + " ".join(f"{k}={v}" for k, v in env.items()),
        ]
        self.config.write_text("\n".join(lines) + "\n")

    def _launch(self) -> Optional[str]:
        """Start sshd; None once it accepts a login, else the reason it did not."""
        test = subprocess.run([SSHD, "-t", "-f", str(self.config)], capture_output=True, text=True,
                              timeout=30)
        if test.returncode != 0:
            return f"`sshd -t` rejected the config: {test.stderr.strip()}"
        self.log.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.config)],
            stdin=subprocess.DEVNULL, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
            env={**os.environ, MARKER: self.token},
            start_new_session=True,  # a Ctrl-C to pytest must not reach it before stop()
        )
        deadline = time.monotonic() + self.start_timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return f"sshd exited with {self.proc.returncode}:\n{self.log_tail()}"
            with contextlib.suppress(OSError):
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    res = self.ssh("echo ready", timeout=20)
                    if res.returncode == 0 and "ready" in res.stdout:
                        return None
                    last = f"ssh login failed ({res.returncode}): {res.stderr.strip()}"
            time.sleep(0.2)
        self.proc.kill()
        self.proc.wait()
        return f"sshd did not accept a login within {self.start_timeout:.0f} s: {last}\n{self.log_tail()}"


# ------------------------------------------------------------------------ processes


def _ray_cluster():
    """tests/engine/ray_cluster.py, loaded by path (tests/ is no package, and this file also runs
    as a script); the instance tests/conftest.py loaded when there is one."""
    mod = sys.modules.get(_RAY_CLUSTER)
    if mod is None:
        spec = importlib.util.spec_from_file_location(
            _RAY_CLUSTER, Path(__file__).resolve().parent / "engine" / "ray_cluster.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[_RAY_CLUSTER] = mod
        spec.loader.exec_module(mod)
    return mod


def _alive(p: psutil.Process) -> bool:
    return _ray_cluster().process_alive(p)


def _environ(p: psutil.Process) -> Dict[str, str]:
    try:
        return p.environ()
    except (psutil.Error, OSError):
        return {}


def processes_with_env(key: str, value: str, exclude: Iterable[int] = ()) -> List[psutil.Process]:
    """Live processes whose environment has key=value (this process and `exclude` left out).
    Needs the right to read /proc/<pid>/environ: root, or the same user."""
    skip = {os.getpid(), *exclude}
    found = []
    for p in psutil.process_iter():
        if p.pid in skip:
            continue
        if _environ(p).get(key) == value and _alive(p):
            found.append(p)
    return found


def stop_processes(procs: List[psutil.Process], grace: float = 5.0, rescan=None) -> None:
    """Stop processes by pid in Ray's order (tests/engine/ray_cluster.py stop_ray_processes).
    `rescan()`, if given, returns the current set (processes may start processes while we signal)."""
    _ray_cluster().stop_ray_processes(rescan or (lambda: [p for p in procs if _alive(p)]), grace)


def _stop_ray(assignment: str) -> int:
    """`ray stop`, limited to the processes whose environment has KEY=VALUE (never other
    Ray clusters on the machine); the ancestors of this process are spared."""
    key, _, value = assignment.partition("=")
    if not key or not value:
        print(f"stop-ray: expected KEY=VALUE, got {assignment!r}", file=sys.stderr)
        return 2
    spare = {p.pid for p in psutil.Process().parents()}

    def scan():
        return processes_with_env(key, value, exclude=spare)

    found = scan()
    print(f"stop-ray: stopping {len(found)} process(es) with {key}={value}: "
          f"{sorted(p.pid for p in found)}", flush=True)
    stop_processes(found, rescan=scan)
    left = scan()
    if left:
        print(f"stop-ray: still running: {sorted(p.pid for p in left)}", file=sys.stderr)
        return 1
    return 0


def start_watchdog(root: Path, markers: List[str]) -> subprocess.Popen:
    """A process that, once this one is gone without cleaning up (pytest killed by a CI
    timeout: no finally, no atexit), stops every process carrying one of `markers`
    (KEY=VALUE) and removes `root`. It ends by itself when `root` is removed (normal teardown)."""
    me = psutil.Process()
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "watchdog", str(me.pid), repr(me.create_time()),
         str(root), *markers],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C to the test's process group must not reach it
    )


def _watchdog(parent_pid: int, parent_create_time: float, root: Path, markers: List[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while root.exists():
        try:
            parent = psutil.Process(parent_pid)
            alive = abs(parent.create_time() - parent_create_time) < 1e-3 and _alive(parent)
        except psutil.Error:
            alive = False
        if not alive:
            pairs = [m.partition("=")[::2] for m in markers]

            def scan():
                return [p for k, v in pairs for p in processes_with_env(k, v)]

            stop_processes(scan(), rescan=scan)
            shutil.rmtree(root, ignore_errors=True)
            return 0
        time.sleep(1.0)
    return 0


def _relay(host: str, port: int) -> int:
    """stdin/stdout <-> TCP (host, port): an ssh ProxyCommand (like `nc host port`)."""
    import selectors

    sock = socket.create_connection((host, port), timeout=30)
    sock.settimeout(None)
    sel = selectors.DefaultSelector()
    stdin, stdout = 0, 1  # raw file descriptors: no Python buffering in between
    sel.register(stdin, selectors.EVENT_READ)
    sel.register(sock, selectors.EVENT_READ)
    open_sides = 2
    while open_sides:
        for key, _ in sel.select():
            if key.fileobj is sock:
                data = sock.recv(65536)
                if not data:
                    return 0  # the server closed: ssh sees EOF and ends
                view = memoryview(data)
                while view:
                    view = view[os.write(stdout, view):]
            else:
                data = os.read(stdin, 65536)
                if not data:
                    sel.unregister(stdin)
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_WR)
                    open_sides -= 1
                    continue
                sock.sendall(data)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "stop-ray":
        sys.exit(_stop_ray(sys.argv[2]))
    if len(sys.argv) >= 5 and sys.argv[1] == "watchdog":
        sys.exit(_watchdog(int(sys.argv[2]), float(sys.argv[3]), Path(sys.argv[4]), sys.argv[5:]))
    if len(sys.argv) == 4 and sys.argv[1] == "relay":
        sys.exit(_relay(sys.argv[2], int(sys.argv[3])))
    print(__doc__.split("\n\n")[0], file=sys.stderr)
    print("usage: sshd.py stop-ray KEY=VALUE | sshd.py relay HOST PORT", file=sys.stderr)
    sys.exit(2)
