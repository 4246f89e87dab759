"""The compose deployment end to end: compose/check brings a private stack up, runs `echo hi`
through it from the host with the SDK, and tears it down."""

from __future__ import annotations

from pathlib import Path
import shutil
import subprocess
import sys

import pytest

CHECK = Path(__file__).resolve().parents[2] / "compose" / "check.py"


def _problem() -> str | None:
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    if subprocess.run(["docker", "version"], capture_output=True).returncode != 0:
        return "the Docker engine does not answer (`docker version` failed)"
    if shutil.which("docker-compose") is None:
        return "docker-compose is not installed (apt-get install docker-compose)"
    return None


_why_not = _problem()

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(_why_not is not None, reason=f"needs Docker and docker-compose: {_why_not}"),
]


@pytest.mark.timeout(900)  # a cold prepare builds the wheelhouse and two images
def test_compose_stack_runs_a_session_from_the_host():
    result = subprocess.run([sys.executable, str(CHECK)], capture_output=True, text=True, timeout=880)
    report = result.stdout + result.stderr[-4000:]
    assert result.returncode == 0, report
    assert "`echo hi` -> 'hi'" in result.stdout, report
    assert "check: OK" in result.stdout, report
