"""The engine tests' Ray fixtures (tests/engine/conftest.py), re-exported for tests/inference.

``ray_cluster`` (a started two-node LocalRayCluster), ``ray_cluster_module``,
``ray_cluster_factory`` and ``ray_timings`` work here exactly as there; see that file.

Why not ``pytest_plugins``: pytest 9 accepts it only in the root conftest, and tests/ is
no package (importlib mode), so tests/engine/conftest.py cannot be imported by name. It is
loaded by path instead, the way it loads ray_cluster.py itself. When pytest has already
loaded it (tests/engine collected in the same session), that module object is reused, so
both directories share its RAY_TIMINGS and its terminal-summary hook runs once. Fixtures
are still defined per directory: a session that runs tests/engine and tests/inference
starts one two-node cluster for each (pytest keys session fixtures by the conftest that
defines them).
"""
import importlib.util
import sys
from pathlib import Path

_ENGINE_CONFTEST = (Path(__file__).resolve().parent.parent / "engine" / "conftest.py")
_PRIVATE_NAME = "stilts_tests_engine_conftest"


def _engine_conftest():
    for mod in list(sys.modules.values()):
        f = getattr(mod, "__file__", None)
        if f and Path(f).resolve() == _ENGINE_CONFTEST:
            return mod, False
    spec = importlib.util.spec_from_file_location(_PRIVATE_NAME, _ENGINE_CONFTEST)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[_PRIVATE_NAME] = mod
    spec.loader.exec_module(mod)
    return mod, True


_engine, _private = _engine_conftest()

ray_cluster_module = _engine.ray_cluster_module
ray_cluster = _engine.ray_cluster
ray_cluster_factory = _engine.ray_cluster_factory
ray_timings = _engine.ray_timings

if _private:
    # tests/engine's conftest is not active in this session: its marker registration and
    # timing summary become ours. (If pytest loads it later in the session, the module is
    # a different object; the marker line is then added twice, which is harmless.)
    pytest_configure = _engine.pytest_configure
    pytest_terminal_summary = _engine.pytest_terminal_summary
