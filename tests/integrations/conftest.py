"""A real corral deployment (embedded nats-server, controller, worker) on a background loop, for
adapters whose frameworks call their sandboxes synchronously: the test thread blocks on the
framework while the deployment keeps serving on its own thread."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.embedded import EmbeddedNats
from cli.up import Deployment, UpConfig
from corral_integrations._session import LoopThread


class ThreadedCorral:
    """``with ThreadedCorral(dir, backend=...) as corral: corral.url``: a deployment on its own loop."""

    def __init__(self, data_dir: Path, **config: object) -> None:
        self._data_dir = data_dir
        self._config = config
        self._loop = LoopThread("corral-deployment")
        self.url = ""

    def __enter__(self) -> ThreadedCorral:
        self._nats = EmbeddedNats(str(self._data_dir / "nats"))
        self._loop.run(self._nats.__aenter__(), timeout=60)
        config = UpConfig(nats_url=self._nats.url, data_dir=str(self._data_dir / "corral"),
                          **{"backend": "local", "audit": False, **self._config})
        self.deployment = Deployment(config)
        self._loop.run(self.deployment.__aenter__(), timeout=120)
        self.url = self._nats.url
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._loop.run(self.deployment.__aexit__(None, None, None), timeout=120)
            self._loop.run(self._nats.__aexit__(None, None, None), timeout=30)
        finally:
            self._loop.close()


@pytest.fixture(scope="module")
def local_corral(tmp_path_factory):
    """One local-backend deployment per test module; yields its NATS URL."""
    with ThreadedCorral(tmp_path_factory.mktemp("corral-local")) as corral:
        yield corral.url
