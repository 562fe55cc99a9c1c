"""The metrics package: its registry of names and its import boundary."""

import ast
import pathlib
import subprocess
import sys

import stilts_ds.metrics as metrics

FORBIDDEN = ("torch", "deepspeed", "ray", "stilts_ds.tasks")


def test_metric_registry_names():
    assert set(metrics.METRICS) == {
        "accuracy",
        "squad_v1",
        "mlqa",
        "squad_v2",
        "seqeval_f1",
        "tag_accuracy",
        "bucc_f1",
        "tatoeba_accuracy",
        "lareqa_map_at_20",
        "mewslix_map_at_20",
    }
    assert all(isinstance(text, str) and text for text in metrics.METRICS.values())


def test_metrics_source_imports_nothing_heavy():
    package_dir = pathlib.Path(metrics.__file__).parent
    for source in package_dir.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert not any(
                    name == bad or name.startswith(bad + ".") for bad in FORBIDDEN
                ), f"{source.name} imports {name}"


def test_importing_metrics_loads_no_heavy_module():
    code = (
        "import sys, stilts_ds.metrics, stilts_ds.evaluation; "
        f"bad = [m for m in sys.modules if m.split('.')[0] in {FORBIDDEN[:3]!r} "
        "or m.startswith('stilts_ds.tasks')]; print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
