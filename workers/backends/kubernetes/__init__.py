"""The kubernetes backend: one pod per sandbox, reached by port-forward through the API server.

Only the config is imported here; ``KubernetesBackend`` (and kubernetes_asyncio) load with
``from workers.backends.kubernetes._backend import KubernetesBackend``, for workers that use it.
"""

from ._config import KubernetesConfig

__all__ = ["KubernetesConfig"]
