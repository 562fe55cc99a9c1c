"""engine.connection.connect is the one ray.init of stilts-ds: every driver (fit pool,
launcher, scaling study, the bench's placement) joins Ray through it. Its behaviour is
exercised for real by the Ray tests (tests/inference/test_placement.py,
tests/studies/test_scale.py, tests/studies/test_scheduler_ray.py): no stand-in ray here.

    .venv/bin/python -m pytest -q tests/engine/test_connection.py
"""
import ast
from pathlib import Path

from stilts_ds.engine import connection


def _calls_ray_init(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "init"
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "ray"):
            return True
    return False


def test_dispatch_and_placement_use_it():
    """One ray.init: the fit pool's connect is this one, and no other module of stilts_ds
    calls ray.init itself."""
    from stilts_ds.engine import dispatch

    assert dispatch.connect is connection.connect and dispatch.alive_nodes is connection.alive_nodes
    root = Path(connection.__file__).resolve().parents[1]
    callers = sorted(str(p.relative_to(root)) for p in root.rglob("*.py") if _calls_ray_init(p))
    assert callers == ["engine/connection.py"]
