"""This driver's connection to Ray: the one place stilts-ds calls ``ray.init``.

    from stilts_ds.engine.connection import alive_nodes, connect, disconnect

    connected_here = connect(address, quiet=True)    # False: this process was already connected
    try:
        ...
    finally:
        if connected_here:
            disconnect()

Every driver joins a cluster the same way: the fit pool and the launcher (``engine.dispatch``,
``engine.launch``), the scaling study (``studies.scale``) and the bench's per-node actors
(``inference.placement``, which the layer table in docs/architecture.md lets import this
module and no other of the engine but ``tb_logger``):

* the cluster is ``address`` when given, else ``RAY_ADDRESS`` (as `ray submit` sets it), else
  a new local one (which keeps its dashboard: Ray Train's placement-group cleaner watches
  controllers through the State API it serves);
* a process already connected stays on its cluster, and ``connect`` returns False, so a
  caller disconnects only a connection it opened;
* ``quiet`` sets Ray's own logging to WARNING (the bench and the scaling study print their own
  progress); task and actor output still reaches the driver;
* Ray Train's controller polls its workers every ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S`` (2 s by
  default) and notices a finished fit only at a poll; measured here, 0.5 s cuts about 6 s off
  every fit (shared/FACTS.md). ``connect`` sets it in this process's environment, for the
  fits it launches and a local cluster's workers, unless the user set it.
"""
from __future__ import annotations

import os
from typing import Any

FAST_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5"}


def train_env() -> dict[str, str]:
    """``FAST_ENV`` with the user's own values where set: what ``connect`` puts in this
    process's environment, and what ``engine.dispatch`` gives each fit's driving task as its
    runtime env (that task may run on a node started without it)."""
    return {k: os.environ.get(k, v) for k, v in FAST_ENV.items()}


def connect(address: str | None = None, *, quiet: bool = False) -> bool:
    """Join the cluster, or start a local one (module docstring). False if already connected."""
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    os.environ.update(train_env())  # before ray.init: a local cluster's workers inherit it
    kwargs: dict[str, Any] = {"log_to_driver": True, "ignore_reinit_error": True}
    if quiet:
        kwargs["logging_level"] = "WARNING"
    ray.init(address=address, **kwargs)
    return True


def disconnect() -> None:
    import ray

    ray.shutdown()


def alive_nodes() -> list[dict]:
    """The cluster's live nodes, as ``ray.nodes()`` describes them."""
    import ray

    return [n for n in ray.nodes() if n.get("Alive")]
