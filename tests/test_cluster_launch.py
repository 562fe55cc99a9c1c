"""The user's path to a Ray cluster, for real, on this one machine. No mocks.

* test_ray_up_submit_down_over_ssh: a throwaway sshd on 127.0.0.1 (tests/sshd.py), then
  ``ray up`` of cluster/onprem.yaml with head_ip 127.0.0.1 (the launcher starts the head over
  SSH and runs the YAML's setup commands), ``ray submit`` of tools/run_study.py running a tiny
  study on that cluster (Ray Train + DeepSpeed, one worker) that writes results.md/.json, and
  ``ray down``. Where sshd, ssh, ssh-keygen or rsync is missing (Debian: ``apt-get install -y
  openssh-server rsync``; .ci/run does that) or sshd cannot start, it skips saying why, except
  under CI (the environment variable CI set to a true value, as .ci/run and CI services set
  it): there it fails with the reason, so a CI machine that lost its sshd cannot pass green.
* test_ray_job_submit_to_a_local_head: ``ray job submit --working-dir tools`` of the same
  study to a local head with a dashboard (tests/engine/ray_cluster.py), its stages run in the
  job's own process (``--in-process``, see JOB_STUDY_IN_PROCESS). Runs everywhere.

What keeps the loopback cluster apart from everything else on the machine:

* The cluster YAML is cluster/onprem.yaml with only what a loopback run must change: head_ip
  127.0.0.1, no workers, this machine's user and a fresh key, and start commands with this
  test's own ports and ``--temp-dir``. The setup commands keep the YAML's PATH line (grep, then
  append to ~/.bashrc) with this checkout's .venv in place of a fresh ``~/stilts-venv`` install
  (minutes of pip for nothing new).
* Ray's launcher always dials port 22 (its schema has no SSH port); ``auth.ssh_proxy_command``
  (in the schema) points ssh at the test's sshd on a free port instead.
* Every SSH session gets ``HOME=<tmp>/home`` (sshd_config SetEnv), so ``~/.bashrc``, the
  launcher's ``~/ray_bootstrap_config.yaml`` and ``~/ray_bootstrap_key.pem``, ``~/stilts-ds``
  (file_mounts) and ``~/run_study.py`` (ray submit) all land in the temp dir, not in root's
  home, and ``~/.ray/auth_token`` of the real home is not seen. TMPDIR (the launcher's
  ``cluster-<name>.state`` files, Ray's default temp dir) points into the temp dir on both
  sides, and the cluster name is unique per run.
* ``ray down`` runs ``ray stop`` on the head, and ``ray stop`` ends every Ray process on the
  machine (other tests' clusters, other people's). The test's ``~/.bashrc`` therefore defines
  a shell function ``ray`` that turns ``ray stop`` into "stop the processes whose environment
  carries this run's marker" (``tests/sshd.py stop-ray``) and passes everything else to the
  real ``ray``. The head start command exports that marker, and every Ray process inherits it.
  So ``ray down`` still stops the cluster through its own ``ray stop`` step; it just cannot
  reach anything else.
* Teardown ends by process id whatever is left with the run's markers (Ray processes, SSH
  sessions, the launcher's ssh ControlMaster) and the test asserts nothing is. A watchdog
  process does the same if pytest itself is killed (a CI timeout) before its teardown runs.

Measured on a 2-core machine (other test runs sharing it at times): sshd start 0.5 s, ray up
18-20 s (up to 39 s when busy), ray submit of the tiny study 59 s (three Ray Train fits of ~20 s
fixed cost each; 107 s the first time, when DeepSpeed JIT-builds its shm op into the loopback
cache; up to 165 s when busy), ray down 7 s, teardown 0.1 s; the ``ray job submit`` test 23 s
(head 8 s, job 14 s; 70 s for the job if it ran the study through Ray Train). The file takes
111 s warm, about 3 minutes cold. Wall times are printed at the end of the run ("cluster
launch wall times").
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
RAY = str(VENV_BIN / "ray")
RUN_STUDY = ROOT / "tools" / "run_study.py"

# The study: configs/quickstart.yaml cut to one task per phase, two optimizer steps each, one
# worker, no arms (written to the test's temp dir, so edits to the quick start's task lists
# don't change what this test runs). One override goes through the command line on purpose:
# `ray submit` joins the arguments into one shell line, so brackets must arrive quoted.
def _study_config(path: Path) -> Path:
    cfg = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    cfg.pop("arms", None)
    cfg["name"] = "cluster-launch"
    cfg["intermediate"].update(tasks=["mnli"], max_steps=2)
    cfg["finetune"]["tasks"] = ["xnli"]
    cfg["finetune"].pop("per_task", None)
    cfg["finetune"]["defaults"].update(max_steps=2, eval_every=2)
    cfg["evaluate"]["tasks"] = ["pawsx"]  # replaced by the command line's [xnli]
    cfg["cluster"]["num_workers"] = 1
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


STUDY_TIMEOUT = 300
# The `ray job submit` study runs its stages in the job's own process (`--in-process`, world
# size 1): the job mechanics are what that test adds; Ray Train + DeepSpeed on a cluster is the
# SSH test's study (and tests/studies'). Through Ray Train the job takes 70 s instead of 14 s.
JOB_STUDY_IN_PROCESS = True


def _load(name: str, path: Path):
    mod = sys.modules.get(name)
    if mod is None:
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return mod


# The same module instances as tests/conftest.py's Ray fixtures (one per process).
ray_cluster = _load("stilts_tests_ray_cluster", ROOT / "tests" / "engine" / "ray_cluster.py")
sshd_mod = _load("stilts_tests_sshd", ROOT / "tests" / "sshd.py")

TIMINGS: dict = {}


def _on_ci() -> bool:
    """CI=true (or 1, yes, ...): any value but empty, 0, false, no, off."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no", "off")


def _cannot_run(reason: str) -> None:
    """Skip, saying why; under CI fail instead: there the SSH path must really have run."""
    message = f"cannot run `ray up` over SSH here: {reason}"
    if _on_ci():
        pytest.fail(f"{message}\nCI is set ({os.environ.get('CI')!r}): a CI machine must be able to run this "
                    "test (.ci/run installs openssh-server and rsync as root), so this fails instead of "
                    "skipping", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module", autouse=True)
def _print_timings(request):
    class _Summary:
        def pytest_terminal_summary(self, terminalreporter):
            if TIMINGS:
                terminalreporter.section("cluster launch wall times")
                for key, seconds in TIMINGS.items():
                    terminalreporter.write_line(f"{key}: {seconds:.1f} s")

    name = "stilts-cluster-launch-timings"
    if not request.config.pluginmanager.has_plugin(name):
        request.config.pluginmanager.register(_Summary(), name)
    yield


def _study_args(config: Path, output_dir: Path) -> list[str]:
    return ["--config", str(config), "--set", "evaluate.tasks=[xnli]", "--set", f"output_dir={output_dir}"]


def _check_results(output_dir: Path, log: str) -> None:
    md, js = output_dir / "results.md", output_dir / "results.json"
    assert md.is_file() and js.is_file(), f"no results table in {output_dir}\n{log[-6000:]}"
    table = md.read_text()
    assert "| xnli |" in table and "accuracy" in table, table
    assert "pawsx" not in table, "the command line's --set evaluate.tasks=[xnli] did not arrive intact"
    res = json.loads(js.read_text())
    assert "xnli" in json.dumps(res), res
    for phase in ("phase1", "phase2/xnli", "phase3"):
        assert (output_dir / phase).is_dir(), f"{phase} missing in {output_dir}"


def _run(cmd: list[str], *, env: dict, timeout: float, cwd: Path = ROOT, what: str = "") -> tuple[str, float]:
    """Run a CLI command; its output (stdout+stderr) and wall time; fail with the output."""
    t0 = time.monotonic()
    try:
        res = subprocess.run(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = e.output.decode(errors="replace") if isinstance(e.output, bytes) else (e.output or "")
        pytest.fail(f"{what or cmd[:3]} timed out after {timeout:.0f} s\n{out[-8000:]}", pytrace=False)
    wall = time.monotonic() - t0
    if res.returncode != 0:
        pytest.fail(f"{what or shlex.join(cmd[:3])} exited {res.returncode} after {wall:.0f} s:\n"
                    f"$ {shlex.join(cmd)}\n{res.stdout[-10000:]}", pytrace=False)
    return res.stdout, wall


def _descr(procs) -> list[str]:
    out = []
    for p in procs:
        with contextlib.suppress(Exception):
            out.append(f"{p.pid} {' '.join(p.cmdline())[:160]}")
    return out


def _loopback_torch_extensions() -> str:
    """DeepSpeed's JIT op cache for the loopback cluster: persistent (the remote HOME is a new
    temp dir each run; a cold build of its shm op costs ~40 s), and apart from the default
    ~/.cache/torch_extensions/py311_cpu. Builds from the SSH session and from local processes
    were seen to differ in their ninja command hashes, so sharing one directory made each
    side rebuild after the other, every run and for every other test on the machine."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(cache) / "torch_extensions" / "stilts-ds-loopback")


# ------------------------------------------------------------------- ray up over SSH


def _bashrc_prelude(ray_marker: str, stop_log: Path) -> str:
    """The test's ~/.bashrc before the setup commands append their PATH line: `ray stop`
    limited to this run's processes (see the module docstring)."""
    key, value = ray_marker.split("=", 1)
    stop = f"{shlex.quote(sys.executable)} {shlex.quote(str(ROOT / 'tests' / 'sshd.py'))} stop-ray {key}={value}"
    return (
        "# stilts-ds test: `ray stop` ends every Ray on the machine; here it ends this cluster only.\n"
        "ray() {\n"
        '  if [ "${1-}" = stop ]; then\n'
        f'    echo "$(date +%s) ray stop $*" >> {shlex.quote(str(stop_log))}\n'
        f"    {stop}\n"
        "  else\n"
        '    command ray "$@"\n'
        "  fi\n"
        "}\n"
    )


def _loopback_yaml(*, name: str, sshd, ports: dict, temp_dir: Path, ray_marker: str) -> dict:
    cfg = yaml.safe_load((ROOT / "cluster" / "onprem.yaml").read_text())
    cfg["cluster_name"] = name
    cfg["provider"].update(head_ip="127.0.0.1", worker_ips=[])
    cfg["auth"] = {
        "ssh_user": sshd.user,
        "ssh_private_key": str(sshd.client_key),
        # Ray always dials port 22: reach the test's sshd on its own port instead.
        "ssh_proxy_command": sshd.proxy_command,
    }
    path_line = next(c for c in cfg["setup_commands"] if "grep -q stilts-venv ~/.bashrc" in c)
    venv_bin = str(VENV_BIN)
    assert path_line == """grep -q stilts-venv ~/.bashrc || echo 'export PATH="$HOME/stilts-venv/bin:$PATH"' >> ~/.bashrc"""
    cfg["setup_commands"] = [
        # The YAML's PATH line with this checkout's venv in place of its fresh ~/stilts-venv
        # install (minutes of pip for nothing new). Not a ~/stilts-venv symlink: the venv's path
        # is part of DeepSpeed's JIT build files, and a new path each run rebuilds its op (~40 s).
        path_line.replace("$HOME/stilts-venv/bin", venv_bin),
        # What `ray submit` will need: `python` and `ray` from that venv, stilts-ds importable.
        f'test "$(type -P python)" = {shlex.quote(venv_bin + "/python")} && test "$(type -P ray)" = {shlex.quote(venv_bin + "/ray")}',
        'python -c "import stilts_ds, ray, deepspeed; print(\'stilts-ds on the head:\', stilts_ds.__file__, \'ray\', ray.__version__)"',
    ]
    cfg["head_setup_commands"] = []
    cfg["worker_setup_commands"] = []  # the GPU check; there are no workers
    key, value = ray_marker.split("=", 1)
    port_flags = " ".join(f"--{flag}={port}" for flag, port in ports.items())
    cfg["head_start_ray_commands"] = [
        # No `ray stop` first (it would end every Ray on the machine); own ports and temp dir.
        f"export {key}={value}; ray start --head --node-ip-address=127.0.0.1 {port_flags} "
        f"--temp-dir={temp_dir} --num-cpus=2 --num-gpus=0 --object-store-memory={256 * 1024 * 1024} "
        "--min-worker-port=0 --max-worker-port=0 --disable-usage-stats "
        "--autoscaling-config=~/ray_bootstrap_config.yaml --dashboard-host=127.0.0.1"
    ]
    cfg["worker_start_ray_commands"] = []
    return cfg


@pytest.mark.ray_cluster
def test_ray_up_submit_down_over_ssh(tmp_path):
    missing = sshd_mod.missing_tools()
    if missing:
        _cannot_run(f"not installed: {', '.join(missing)} (Debian: apt-get install -y openssh-server rsync)")
    out_dir = tmp_path / "study"
    study_cfg = _study_config(tmp_path / "study.yaml")
    # Short: Ray's unix sockets live under the temp dir (~107-byte limit).
    root = Path(tempfile.mkdtemp(prefix="stl-", dir="/tmp"))
    remote_tmp, launcher_tmp = root / "tmp", root / "ltmp"
    remote_tmp.mkdir()
    launcher_tmp.mkdir()
    ray_temp = remote_tmp / "ray"  # Ray's default temp dir for the remote TMPDIR
    run_id = secrets.token_hex(4)
    ray_marker = f"STILTS_TEST_RAY={secrets.token_hex(8)}"
    name = f"stilts-ds-loopback-{run_id}"
    sshd = sshd_mod.ThrowawaySshd(root / "sshd", env={
        "TMPDIR": str(remote_tmp),
        "RAY_AUTH_MODE": "disabled",  # explicit: see FACTS.md on ~/.ray/auth_token
        "RAY_USAGE_STATS_ENABLED": "0",
        "TORCH_EXTENSIONS_DIR": _loopback_torch_extensions(),
    })
    stop_log = root / "ray-stop.log"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",)}
    env.update({
        "TMPDIR": str(launcher_tmp),  # the launcher's cluster-<name>.state/.lock, config cache
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        # The launcher's ssh ControlMaster processes carry the marker too: stop() finds them.
        sshd_mod.MARKER: sshd.token,
    })
    cfg_path = root / "loopback.yaml"
    key, value = ray_marker.split("=", 1)

    def ours():
        return (sshd_mod.processes_with_env(key, value)
                + sshd_mod.processes_with_env(sshd_mod.MARKER, sshd.token))

    # If pytest dies without its finally (a CI timeout's SIGKILL), this ends what the test started.
    watchdog = sshd_mod.start_watchdog(root, [ray_marker, sshd.marker])
    try:
        t0 = time.monotonic()
        try:
            sshd.start()
        except sshd_mod.SshdUnavailable as e:
            _cannot_run(str(e))
        TIMINGS["sshd start"] = time.monotonic() - t0

        flags = ("port", "ray-client-server-port", "dashboard-port", "node-manager-port",
                 "object-manager-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                 "runtime-env-agent-port", "metrics-export-port")
        ports = dict(zip(flags, ray_cluster.pick_free_ports(len(flags), exclude=[sshd.port])))
        cfg = _loopback_yaml(name=name, sshd=sshd, ports=ports, temp_dir=ray_temp, ray_marker=ray_marker)
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        from ray.autoscaler._private.util import prepare_config, validate_config

        validate_config(prepare_config(yaml.safe_load(cfg_path.read_text())))
        sshd.home.joinpath(".bashrc").write_text(_bashrc_prelude(ray_marker, stop_log))

        up, TIMINGS["ray up"] = _run([RAY, "up", "-y", "--no-config-cache", "--disable-usage-stats",
                                      "--log-color=false", str(cfg_path)],
                                     env=env, timeout=240, what="ray up")
        assert "stilts-ds on the head:" in up, up[-4000:]
        ray_procs = sshd_mod.processes_with_env(key, value)
        names = {p.name() for p in ray_procs}
        assert {"gcs_server", "raylet"} <= names, f"after ray up: {_descr(ray_procs)}\n{up[-4000:]}"
        # The files `ray up` puts in ~ went to the throwaway HOME.
        assert (sshd.home / "ray_bootstrap_config.yaml").is_file()
        assert (sshd.home / "stilts-ds" / "setup.py").is_file()  # file_mounts: this checkout
        assert not (sshd.home / "stilts-ds" / ".venv").exists()  # rsync_filter: .gitignore

        address = f"127.0.0.1:{ports['port']}"
        submit_cmd = [RAY, "submit", "--log-color=false", str(cfg_path), str(RUN_STUDY), "--",
                      "--address", address, "--"] + [shlex.quote(a) for a in _study_args(study_cfg, out_dir)]
        submitted, TIMINGS["ray submit (tiny study)"] = _run(submit_cmd, env=env, timeout=STUDY_TIMEOUT,
                                                             what="ray submit")
        assert (sshd.home / "run_study.py").is_file()  # ray submit copied the script to ~
        assert f"RAY_ADDRESS={address} stilts-ds pipeline" in submitted, submitted[-4000:]
        _check_results(out_dir, submitted)
        # The study ran on the launched cluster: its Ray Train runs live under that temp dir.
        assert any(ray_temp.glob("session_*/logs")), list(ray_temp.iterdir())

        down, TIMINGS["ray down"] = _run([RAY, "down", "-y", "--log-color=false", str(cfg_path)],
                                         env=env, timeout=120, what="ray down")
        assert stop_log.is_file() and "ray stop" in stop_log.read_text(), \
            f"ray down did not run `ray stop` on the head\n{down[-4000:]}"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and sshd_mod.processes_with_env(key, value):
            time.sleep(0.2)
        left = sshd_mod.processes_with_env(key, value)
        assert not left, f"Ray processes left after ray down: {_descr(left)}\n{down[-4000:]}"
    finally:
        t0 = time.monotonic()
        sshd_mod.stop_processes(sshd_mod.processes_with_env(key, value),
                                rescan=lambda: sshd_mod.processes_with_env(key, value))
        sshd.stop()
        left = ours()
        TIMINGS["teardown"] = time.monotonic() - t0
        # The launcher's ssh control directory for this cluster name (Ray: /tmp/ray_ssh_<user>/<name>).
        from getpass import getuser

        control = Path("/tmp") / f"ray_ssh_{hashlib.sha256(getuser().encode()).hexdigest()[:10]}" / \
            hashlib.sha256(name.encode()).hexdigest()[:10]
        shutil.rmtree(control, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)  # the watchdog's signal to end
        try:
            watchdog.wait(timeout=5)
        except subprocess.TimeoutExpired:
            watchdog.kill()
            watchdog.wait()
    assert not left, f"processes of this test still running: {_descr(left)}"


# ------------------------------------------------------------------- ray job submit


def _wait_for_dashboard(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/api/version", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError as e:
            last = e
        time.sleep(0.5)
    pytest.fail(f"the dashboard at {url} did not answer within {timeout:.0f} s: {last}", pytrace=False)


@pytest.mark.ray_cluster
def test_ray_job_submit_to_a_local_head(tmp_path):
    missing = [m for m in ("aiohttp", "aiohttp_cors", "opencensus", "prometheus_client")
               if importlib.util.find_spec(m) is None]
    if missing:  # a broken install, not a reason to skip
        pytest.fail(f"the dashboard's job server needs ray[default] ({', '.join(missing)} missing): "
                    "pip install -e '.[test]'", pytrace=False)
    head = ray_cluster.LocalRayCluster(tmp_path / "head", num_nodes=1, cpus_per_node=2,
                                       include_dashboard=True, object_store_mb=256)
    out_dir = tmp_path / "study"
    study_cfg = _study_config(tmp_path / "study.yaml")
    try:
        try:
            head.start()
        except ray_cluster.RayClusterError as e:
            pytest.fail(f"local Ray head failed to start (not skipping):\n{e}", pytrace=False)
        TIMINGS["local head start (with dashboard)"] = head.start_seconds
        _wait_for_dashboard(head.dashboard_url)
        env = {k: v for k, v in head.subprocess_env().items() if k != "RAY_ADDRESS"}
        submission_id = f"stilts-ds-study-{secrets.token_hex(4)}"
        # As cluster/README.md shows it: --working-dir uploads tools/ with the job, the entrypoint
        # runs on the head in that directory with RAY_ADDRESS set to the cluster's, which
        # tools/run_study.py passes on to the study. (sys.executable: pytest's PATH need not
        # have the venv first, as the cluster nodes' login shells do.)
        cmd = [RAY, "job", "submit", "--address", head.dashboard_url, "--submission-id", submission_id,
               "--working-dir", "tools", "--", sys.executable, RUN_STUDY.name, "--"] + _study_args(study_cfg, out_dir)
        if JOB_STUDY_IN_PROCESS:
            cmd.append("--in-process")
        log, TIMINGS["ray job submit (tiny study)"] = _run(cmd, env=env, timeout=STUDY_TIMEOUT,
                                                           what="ray job submit")
        assert "succeeded" in log.lower(), log[-4000:]
        from ray.job_submission import JobStatus, JobSubmissionClient

        status = JobSubmissionClient(head.dashboard_url).get_job_status(submission_id)
        assert status == JobStatus.SUCCEEDED, log[-4000:]
        assert "RAY_ADDRESS=" in log and "stilts-ds pipeline" in log, log[-4000:]
        _check_results(out_dir, log)
    finally:
        t0 = time.monotonic()
        head.stop()
        TIMINGS["local head stop"] = time.monotonic() - t0
    assert not head.alive_pids(), head.alive_pids()
