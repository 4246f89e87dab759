"""Sandbox backends: where a session's executor runs. ``make_backend`` builds one from its config;
the registry (entry-point group ``corral.backends``) says which exist."""

from ._base import Backend, BackendError, SandboxHandle, deployment_id
from ._docker_spec import DockerConfig
from ._hostdir import HostDirBackend
from ._registry import (
    BACKENDS,
    AnyBackendConfig,
    BackendEnv,
    BackendPlugin,
    ExternalBackendConfig,
    backend_config,
    backend_name,
    make_backend,
)
from ._remote_config import RemoteConfig, RemoteExecutor
from .bubblewrap import BubblewrapConfig
from .local import LocalBackend, LocalConfig

__all__ = [
    "BACKENDS", "AnyBackendConfig", "Backend", "BackendEnv", "BackendError", "BackendPlugin", "BubblewrapConfig",
    "DockerConfig", "ExternalBackendConfig", "HostDirBackend", "LocalBackend", "LocalConfig", "RemoteConfig",
    "RemoteExecutor", "SandboxHandle",
    "backend_config", "backend_name", "deployment_id", "make_backend",
]
