"""The ``jupyter`` plugin: IPython kernels inside the sandbox, started on the first cell."""

from __future__ import annotations

from protocol import AnyAction, AnyObservation

from .plugins import Emit, SandboxPlugin


class JupyterPlugin(SandboxPlugin):
    """``ipython_run``: one ipykernel process per kernel name, driven with jupyter_client."""

    kinds = frozenset({"ipython_run"})
    variant = "jupyter"
    modules = ("ipykernel", "jupyter_client")
    lane = "ipython"

    async def handle(self, action: AnyAction, emit: Emit) -> AnyObservation:
        raise NotImplementedError


class AgentSkillsPlugin(SandboxPlugin):
    """``agent_skills``: the ``corral_skills`` helpers, imported into every kernel of the session."""

    requires = ("jupyter",)
    variant = "agent_skills"
    modules = ("corral_skills", "pypdf", "docx", "pptx", "pylatexenc")

    async def handle(self, action: AnyAction, emit: Emit) -> AnyObservation:
        raise AssertionError("agent_skills answers no action kind of its own")
