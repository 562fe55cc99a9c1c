"""DESIGN.md's boundary: task, metric and modeling code never imports deepspeed or ray, and
the study layer and the CLI reach them only through engine/ and inference/.

Checked twice: statically (no import statement names them) and dynamically (importing every
module of those packages in a fresh interpreter loads neither)."""
import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import stilts_ds

PURE = ("tasks", "metrics", "modeling", "evaluation")
FORBIDDEN = ("deepspeed", "ray")
ROOT = Path(stilts_ds.__file__).parent


def _imports(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_no_import_statement_names_deepspeed_or_ray():
    bad = []
    for pkg in PURE:
        for path in (ROOT / pkg).rglob("*.py"):
            bad += [f"{path}: {m}" for m in _imports(path) if m.split(".")[0] in FORBIDDEN]
    assert bad == []


def test_metrics_do_not_import_tasks():
    bad = []
    for path in (ROOT / "metrics").rglob("*.py"):
        bad += [f"{path}: {m}" for m in _imports(path) if m.startswith("stilts_ds.") and not m.startswith("stilts_ds.metrics")]
    assert bad == []


def test_importing_pure_packages_loads_neither():
    modules = []
    for pkg in PURE:
        modules += [m.name for m in pkgutil.walk_packages([str(ROOT / pkg)], prefix=f"stilts_ds.{pkg}.")]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(sorted(k for k in sys.modules if k.split('.')[0] in {FORBIDDEN!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_studies_and_cli_reach_deepspeed_and_ray_only_through_the_engine():
    """Scheduling, planning and the CLI drive Ray and DeepSpeed through engine.dispatch,
    engine.launch and inference.*: not one import statement of their own (inside functions too)."""
    bad = []
    for path in [*(ROOT / "studies").rglob("*.py"), ROOT / "cli.py", ROOT / "lease.py", ROOT / "config.py"]:
        bad += [f"{path}: {m}" for m in _imports(path) if m.split(".")[0] in FORBIDDEN]
    assert bad == []
