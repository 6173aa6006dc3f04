"""Deprecated: moved to :mod:`simenv.tools.docker.pool`; this alias is kept for one release."""

import warnings

from simenv.tools.docker.container import (
    MANAGED_LABEL,
    Container,
    ContainerSpec,
    docker_client,
    encode,
    run_id,
)
from simenv.tools.docker.pool import ContainerPool, get_pool, live_containers, reap, shutdown_pools

__all__ = [
    "MANAGED_LABEL",
    "Container",
    "ContainerPool",
    "ContainerSpec",
    "docker_client",
    "encode",
    "get_pool",
    "live_containers",
    "reap",
    "run_id",
    "shutdown_pools",
]

warnings.warn(
    "simenv.tools.docker_pool moved to simenv.tools.docker.pool; import it from there"
    " (the old path is kept for one release, see CHANGELOG.md)",
    DeprecationWarning,
    stacklevel=2,
)
