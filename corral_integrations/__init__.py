"""corral as the sandbox of the agent frameworks people already run.

``corral_integrations.swerex`` (SWE-ReX / SWE-agent), ``corral_integrations.minisweagent``
(mini-swe-agent) and ``corral_integrations.openhands`` (OpenHands V0 runtimes) each import their
framework only when imported themselves, so corral does not depend on any of them; the extras
``corral[swerex]``, ``corral[minisweagent]`` and ``corral[openhands]`` install them.

Every adapter takes ``nats_url`` (default ``$CORRAL_NATS_URL``, else ``nats://127.0.0.1:4222``) and
the session spec's fields (``backend``, ``image``, ``env``, ``resources``, …) as keyword arguments.
"""
