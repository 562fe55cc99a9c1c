"""Shared test fixtures: the bundled offline tokenizer and fixture data root, and real local
Ray clusters (tests/engine/ray_cluster.py), one two-node cluster for the whole session:

    def test_something(ray_cluster):
        with ray_cluster.connected():          # sets RAY_ADDRESS, RAY_AUTH_MODE; ray.init
            ...                                # ray.shutdown() and env restored on exit

or by hand: ``os.environ.update(ray_cluster.env); ray.init(address=ray_cluster.address)``
... ``ray.shutdown()``. Subprocess drivers: ``env=ray_cluster.subprocess_env()``.

A cluster that cannot start fails the test with Ray's log tails; it never skips: a
machine where Ray cannot run is a broken test machine, not a reason to pass. The fixtures
live here, at the root, so that tests/engine, tests/inference and tests/studies share one
session cluster (pytest keys session fixtures by the conftest that defines them).
"""
import importlib.util
import sys
import time
from pathlib import Path

import pytest

from stilts_ds.data.sources import FIXTURES_DIR



@pytest.fixture(scope="session")
def tokenizer():
    from stilts_ds.modeling.presets import load_tokenizer

    return load_tokenizer("bundled")


@pytest.fixture(scope="session")
def fixtures_dir():
    return FIXTURES_DIR


@pytest.fixture
def no_process_group_left_behind():
    """In-process launches set up a one-rank gloo group (LocalRuntime) that outlives the run;
    leave none behind for later tests that need a clean world (tests/engine/test_ds_config.py)."""
    import torch.distributed as dist

    existed = dist.is_available() and dist.is_initialized()
    yield
    if not existed and dist.is_available() and dist.is_initialized():
        import deepspeed.comm as ds_comm

        ds_comm.destroy_process_group()
        ds_comm.comm.cdb = None


_HELPER_NAME = "stilts_tests_ray_cluster"


def load_ray_cluster_module():
    """tests/engine/ray_cluster.py as a module (pytest runs in importlib mode and tests/
    is no package, so it is loaded by path; one instance per process)."""
    mod = sys.modules.get(_HELPER_NAME)
    if mod is None:
        spec = importlib.util.spec_from_file_location(
            _HELPER_NAME, Path(__file__).parent / "engine" / "ray_cluster.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[_HELPER_NAME] = mod
        spec.loader.exec_module(mod)
    return mod


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "ray_cluster: starts real local Ray clusters (tens of seconds); "
        "deselect with -m 'not ray_cluster' for a quick loop")


# Wall times (seconds) worth reporting, filled by fixtures and tests; printed at the end.
RAY_TIMINGS = {}


def _start(cluster):
    rc = load_ray_cluster_module()
    try:
        return cluster.start()
    except rc.RayClusterError as e:
        pytest.fail(f"local Ray cluster failed to start (not skipping):\n{e}", pytrace=False)


@pytest.fixture(scope="session")
def ray_cluster_module():
    return load_ray_cluster_module()


@pytest.fixture(scope="session")
def ray_cluster(ray_cluster_module, tmp_path_factory):
    """A started two-node LocalRayCluster (1 CPU per node), shared by the session.

    Its tmp root keeps the `ray start` outputs (and Ray's logs if the start failed)."""
    root = tmp_path_factory.mktemp("ray_cluster")
    cluster = ray_cluster_module.LocalRayCluster(root, num_nodes=2, cpus_per_node=1)
    try:
        _start(cluster)
        RAY_TIMINGS["two-node cluster start"] = cluster.start_seconds
        yield cluster
    finally:
        t0 = time.monotonic()
        cluster.stop()
        RAY_TIMINGS["two-node cluster stop"] = time.monotonic() - t0


@pytest.fixture
def ray_cluster_factory(ray_cluster_module, tmp_path):
    """make(name, **kwargs) -> started LocalRayCluster, or make([(name, kwargs), ...]) ->
    list of clusters started concurrently; all stopped when the test ends."""
    made = []

    def make(name="cluster", **kwargs):
        if isinstance(name, list):
            clusters = [ray_cluster_module.LocalRayCluster(tmp_path / n, **kw) for n, kw in name]
            made.extend(clusters)
            try:
                return ray_cluster_module.start_all(clusters)
            except ray_cluster_module.RayClusterError as e:
                pytest.fail(f"local Ray clusters failed to start (not skipping):\n{e}",
                            pytrace=False)
        cluster = ray_cluster_module.LocalRayCluster(tmp_path / name, **kwargs)
        made.append(cluster)
        return _start(cluster)

    try:
        yield make
    finally:
        for cluster in made:
            cluster.stop()


@pytest.fixture(scope="session")
def ray_timings():
    """A dict of name -> seconds, printed in the terminal summary."""
    return RAY_TIMINGS


def pytest_terminal_summary(terminalreporter):
    if RAY_TIMINGS:
        terminalreporter.section("ray cluster wall times")
        for key, value in RAY_TIMINGS.items():  # seconds, unless the name gives another unit
            unit = "" if key.endswith(")") else " s"
            terminalreporter.write_line(f"{key}: {value:.1f}{unit}")
