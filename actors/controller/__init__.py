"""The controller: placement, the session registry, idle reaping and worker liveness (see ``_controller``)."""

from ._controller import Controller, ControllerConfig

__all__ = ["Controller", "ControllerConfig"]
