"""The kubernetes backend: one pod per sandbox, reached by port-forward through the API server.

``KubernetesConfig`` is imported eagerly (the registry names it); ``KubernetesBackend`` loads on
first use, with kubernetes_asyncio, only in workers that use it.
"""

from typing import TYPE_CHECKING, Any

from ._config import KubernetesConfig

if TYPE_CHECKING:
    from ._backend import KubernetesBackend

__all__ = ["KubernetesBackend", "KubernetesConfig"]


def __getattr__(name: str) -> Any:
    if name == "KubernetesBackend":
        from ._backend import KubernetesBackend

        return KubernetesBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
