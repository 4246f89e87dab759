"""Backends by name: a typed config and a factory each, ours registered here, others by entry point.

A third party adds a backend with a package that declares, in its metadata::

    [project.entry-points."corral.backends"]
    firecracker = "corral_firecracker:PLUGIN"     # a BackendPlugin(config=..., create=...)

(corral's own backends are declared the same way, in its pyproject.toml) and selects it with
``corral worker --backend firecracker`` (its config's defaults) or a worker
config ``{"backend": {"name": "external", "backend": "firecracker", "options": {...}}}``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import msgspec

from protocol import Registry, UnknownName

from ._base import Backend, BackendError
from ._docker_spec import DockerConfig
from ._remote_config import RemoteConfig
from .bubblewrap import BubblewrapConfig
from .kubernetes import KubernetesConfig
from .local import LocalConfig


class BackendEnv(msgspec.Struct, frozen=True, kw_only=True):
    """What every backend is given by its worker, besides its own config."""

    base_dir: str
    worker_id: str
    allowed_mounts: tuple[str, ...] = ()


class BackendPlugin(NamedTuple):
    config: type[Any]
    """A frozen msgspec Struct; its defaults are what ``--backend NAME`` gets."""
    create: Callable[[BackendEnv, Any], Backend]


class ExternalBackendConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="name",
                            tag="external"):
    """A backend from an installed package; ``options`` are in that backend's own config shape."""

    backend: str
    # The options belong to the third-party backend's config type, not to corral.
    options: dict[str, Any] = {}


AnyBackendConfig = LocalConfig | BubblewrapConfig | DockerConfig | KubernetesConfig | RemoteConfig | ExternalBackendConfig

BACKENDS: Registry[BackendPlugin] = Registry("corral.backends")


def _local(env: BackendEnv, config: LocalConfig) -> Backend:
    from .local import LocalBackend

    return LocalBackend(base_dir=env.base_dir, worker_id=env.worker_id, socket_dir=config.socket_dir,
                        warn=config.warn, use_zygote=config.use_zygote)


def _bubblewrap(env: BackendEnv, config: BubblewrapConfig) -> Backend:
    from .bubblewrap import BubblewrapBackend

    return BubblewrapBackend(base_dir=env.base_dir, worker_id=env.worker_id, config=config)


def _docker(env: BackendEnv, config: DockerConfig) -> Backend:
    from .docker import DockerBackend  # aiodocker is loaded only by workers that use it

    return DockerBackend(base_dir=env.base_dir, worker_id=env.worker_id, config=config)


def _kubernetes(env: BackendEnv, config: KubernetesConfig) -> Backend:
    from .kubernetes import KubernetesBackend  # kubernetes_asyncio is loaded only by workers that use it

    return KubernetesBackend(base_dir=env.base_dir, worker_id=env.worker_id, config=config)


def _remote(env: BackendEnv, config: RemoteConfig) -> Backend:
    from .remote import RemoteBackend

    return RemoteBackend(base_dir=env.base_dir, worker_id=env.worker_id, config=config)


# Ours are found the way a third party's are: by the entry points in pyproject.toml.
LOCAL = BackendPlugin(LocalConfig, _local)
BUBBLEWRAP = BackendPlugin(BubblewrapConfig, _bubblewrap)
DOCKER = BackendPlugin(DockerConfig, _docker)
REMOTE = BackendPlugin(RemoteConfig, _remote)
KUBERNETES = BackendPlugin(KubernetesConfig, _kubernetes)


def plugin(name: str) -> BackendPlugin:
    try:
        return BACKENDS.get(name)
    except UnknownName as exc:
        raise BackendError(f"unknown backend {name!r} (available: {', '.join(exc.known)})", "invalid_spec") from None


def backend_config(value: str | AnyBackendConfig) -> AnyBackendConfig | Any:
    """A backend's name (its config's defaults) or its config, as the backend's own config struct."""
    if isinstance(value, str):
        return plugin(value).config()
    if isinstance(value, ExternalBackendConfig):
        try:
            return msgspec.convert(value.options, plugin(value.backend).config)
        except msgspec.ValidationError as exc:
            raise BackendError(f"backend {value.backend!r} options: {exc}", "invalid_spec") from None
    return value


def backend_name(config: Any) -> str:
    return config.__struct_config__.tag if isinstance(config, (LocalConfig, BubblewrapConfig, DockerConfig,
                                                               KubernetesConfig, RemoteConfig)) \
        else next(name for name in BACKENDS.names() if isinstance(config, BACKENDS.get(name).config))


def make_backend(config: str | AnyBackendConfig, *, base_dir: str, worker_id: str,
                 allowed_mounts: tuple[str, ...] = ()) -> Backend:
    """The backend a config (or a backend's name) describes, ready for its worker."""
    resolved = backend_config(config)
    backend = plugin(backend_name(resolved)).create(
        BackendEnv(base_dir=base_dir, worker_id=worker_id, allowed_mounts=allowed_mounts), resolved)
    backend.allowed_mounts = allowed_mounts
    return backend
