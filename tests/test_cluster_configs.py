"""The Ray cluster launcher YAMLs in cluster/ and the `ray submit` entry script tools/run_study.py.

Each YAML goes through what `ray up` does before it touches a cloud: Ray's own
``prepare_config`` (merges the provider's defaults.yaml; for the local provider,
``prepare_local`` builds the node type from head_ip/worker_ips) and ``validate_config``
(ray/autoscaler/ray-schema.json plus the node-type checks). No cluster is started.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
YAMLS = sorted((ROOT / "cluster").glob("*.yaml"))
RUN_STUDY = ROOT / "tools" / "run_study.py"


def _makefile_pin(name: str) -> str:
    m = re.search(rf"^{name}\s*:=\s*(\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert m, f"{name} not found in the Makefile"
    return m.group(1)


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _prepared(path: Path) -> dict:
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = prepare_config(_load(path))
    validate_config(cfg)
    return cfg


def test_all_three_providers_present():
    assert {p.stem for p in YAMLS} >= {"aws", "gcp", "onprem"}
    assert {_load(p)["provider"]["type"] for p in YAMLS} >= {"aws", "gcp", "local"}


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_ray_accepts_the_config(path):
    cfg = _prepared(path)
    assert cfg["head_node_type"] in cfg["available_node_types"]
    if cfg["provider"]["type"] == "local":
        # prepare_local built the single node type from head_ip and worker_ips.
        assert cfg["provider"]["head_ip"] and cfg["provider"]["worker_ips"]
        assert cfg["available_node_types"]["local.cluster.node"]["max_workers"] == len(cfg["provider"]["worker_ips"])
    else:
        workers = {k: v for k, v in cfg["available_node_types"].items() if k != cfg["head_node_type"]}
        assert workers, "no worker node types"
        gpu = re.compile(r"^(g5|g6|p4d|p4de|p5|p5e)\.|^(a2|a3)-")
        for name, node in workers.items():
            machine = node["node_config"].get("InstanceType") or node["node_config"].get("machineType")
            assert gpu.match(machine), f"{path.name}: worker type {name} ({machine}) is not a GPU machine"
            if cfg["provider"]["type"] == "gcp":
                assert node["resources"].get("GPU", 0) >= 1
                assert node["node_config"]["guestAccelerators"]


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_installs_like_the_makefile(path):
    torch_pin, ds_pin = _makefile_pin("TORCH_PIN"), _makefile_pin("DEEPSPEED_PIN")
    cmds = _load(path)["setup_commands"]  # the YAML's own, run on every node
    text = "\n".join(cmds)
    torch_i = next(i for i, c in enumerate(cmds) if f"pip install -q {torch_pin}" in c)
    ds_i = next(i for i, c in enumerate(cmds) if f"--no-build-isolation {ds_pin}" in c)
    pkg_i = next(i for i, c in enumerate(cmds) if re.search(r"pip install .*-e ~/stilts-ds\b", c))
    assert torch_i < ds_i < pkg_i, "order must be: torch, deepspeed (--no-build-isolation), stilts-ds"
    assert not re.search(r"install[^\n]*\bdeepspeed\b(?!==)", text.replace(ds_pin, "")), "unpinned deepspeed"
    import ray

    assert f"ray[default,train]=={ray.__version__}" in text, "cluster Ray must match the launcher's"
    # The package reaches the nodes through file_mounts (ray submit ships only the script).
    assert "~/stilts-ds" in _load(path)["file_mounts"]


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_dashboard_on_localhost_only(path):
    cfg = _prepared(path)  # after the provider defaults (which bind 0.0.0.0) are merged in
    head = " ".join(cfg["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head
    assert "0.0.0.0" not in head


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_header_shows_the_commands(path):
    header = path.read_text(encoding="utf-8").split("\ncluster_name:")[0]
    for needle in (f"ray up -y cluster/{path.name}",
                   f"cluster/{path.name} tools/run_study.py -- --config configs/paper.yaml",
                   "--set cluster.storage_path=",
                   f"ray exec cluster/{path.name} --port-forward 6006",
                   f"ray dashboard cluster/{path.name}",
                   f"ray rsync-down cluster/{path.name}",
                   f"ray down -y cluster/{path.name}"):
        assert needle in header, f"{path.name}: header lacks {needle!r}"
    assert re.search(r"storage_path=(s3://|gs://|/)", header), "storage_path must be shared storage"


def test_run_study_help():
    out = subprocess.run([sys.executable, str(RUN_STUDY), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "--stage" in out.stdout and "pipeline" in out.stdout


def test_run_study_forwards_to_the_cli(tmp_path):
    # From another directory: the script changes into the checkout, so configs/ resolves.
    out = subprocess.run([sys.executable, str(RUN_STUDY), "--stage", "train", "--dry-run", "--",
                          "--config", "configs/paper.yaml", "--set", "cluster.storage_path=s3://b/x"],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path,
                         env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"})
    assert out.returncode == 0, out.stderr
    assert f"cd {ROOT} && RAY_ADDRESS=auto stilts-ds train --config configs/paper.yaml " \
           f"--set cluster.storage_path=s3://b/x" in out.stdout
    helped = subprocess.run([sys.executable, str(RUN_STUDY), "--stage", "finetune", "--", "--help"],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert "Usage: stilts-ds finetune" in helped.stdout
