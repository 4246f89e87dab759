"""OpenHands V0 (``openhands-ai`` 0.62, Python >= 3.12) on corral: ``CorralRuntime``.

Select it in OpenHands' ``config.toml``::

    [core]
    runtime = "corral_integrations.openhands.CorralRuntime"

(or ``RUNTIME=corral_integrations.openhands.CorralRuntime``); OpenHands' ``get_runtime_cls``
imports a runtime class by its full path. The broker is ``$CORRAL_NATS_URL``, the session spec
``$CORRAL_SESSION_SPEC`` (JSON), or keyword arguments when the runtime is constructed directly.
"""

from ._runtime import CorralRuntime

__all__ = ["CorralRuntime"]
