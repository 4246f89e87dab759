"""The worker's side of the executor channel: pooled keep-alive HTTP over a Unix socket or TCP."""

from __future__ import annotations

import asyncio
import json
from typing import AsyncIterator

from protocol import AnyAction, AnyObservation, decode_observation, encode

from . import _http


class ExecutorUnavailable(Exception):
    """The executor could not be reached or broke the connection mid-answer."""


class ExecutorClient:
    """Talks to one sandbox's executor. Concurrent calls use separate connections."""

    def __init__(self, *, key: str, socket_path: str | None = None, host: str = "127.0.0.1", port: int | None = None) -> None:
        if socket_path is None and port is None:
            raise ValueError("ExecutorClient needs a socket_path or a port")
        self._socket_path = socket_path
        self._host = host
        self._port = port
        self._auth = f"Authorization: Bearer {key}\r\n".encode()
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._closed = False

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while self._idle:
            reader, writer = self._idle.pop()
            if not writer.is_closing() and not reader.at_eof():
                return reader, writer
        try:
            if self._socket_path:
                reader, writer = await asyncio.open_unix_connection(self._socket_path, limit=_http.MAX_HEAD)
            else:
                reader, writer = await asyncio.open_connection(self._host, self._port, limit=_http.MAX_HEAD)
        except OSError as exc:
            raise ExecutorUnavailable(f"cannot connect to the executor: {exc}") from exc
        _http.tune_socket(writer)
        return reader, writer

    def _release(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        if self._closed or len(self._idle) >= 8:
            conn[1].close()
        else:
            self._idle.append(conn)

    async def health(self) -> dict[str, object]:
        return await self._json_call("GET", "/v1/health")

    async def claim(self, claim: dict[str, object]) -> dict[str, object]:
        """Bind a warm executor to a session (see executor Claim)."""
        return await self._json_call("POST", "/v1/claim", claim)

    async def result(self, action_id: str) -> AnyObservation | None:
        """The executor's stored answer to an action id, or None (unknown, or still running)."""
        status, body = await self._exchange("GET", f"/v1/result/{action_id}")
        return decode_observation(body) if status == "200" else None

    async def _json_call(self, method: str, path: str, body: dict[str, object] | None = None) -> dict[str, object]:
        status, answer = await self._exchange(method, path, json.dumps(body).encode() if body is not None else b"")
        if status != "200":
            raise ExecutorUnavailable(f"executor answered {status} to {path}: {answer[:300].decode(errors='replace')}")
        return json.loads(answer)

    async def _exchange(self, method: str, path: str, data: bytes = b"") -> tuple[str, bytes]:
        """One request with a complete (not streamed) answer: (status code, body)."""
        reader, writer = await self._connect()
        try:
            writer.write(f"{method} {path} HTTP/1.1\r\nHost: executor\r\nContent-Type: application/json\r\n".encode()
                         + self._auth + b"Content-Length: %d\r\n\r\n" % len(data) + data)
            head = await _http.read_head(reader)
            if head is None:
                raise ExecutorUnavailable("executor closed the connection")
            answer = await _http.read_body(reader, head[1])
        except (OSError, asyncio.IncompleteReadError, _http.HttpError) as exc:
            writer.close()
            raise ExecutorUnavailable(f"executor {path} failed: {exc!r}") from exc
        self._release((reader, writer))
        return head[0].split(" ", 2)[1], answer

    async def execute(self, action: AnyAction) -> AsyncIterator[AnyObservation]:
        """Yield the observations of one action: chunks, then the final observation."""
        reader, writer = await self._connect()
        body = encode(action)
        done = False
        try:
            writer.write(
                b"POST /v1/action HTTP/1.1\r\nHost: executor\r\nContent-Type: application/msgpack\r\n"
                + self._auth
                + b"Content-Length: %d\r\n\r\n" % len(body)
                + body
            )
            head = await _http.read_head(reader)
            if head is None:
                raise ExecutorUnavailable("executor closed the connection before answering")
            status = head[0].split(" ", 2)[1]
            if status != "200":
                detail = await _http.read_body(reader, head[1])
                raise ExecutorUnavailable(f"executor answered {status}: {detail[:200]!r}")
            while (data := await _http.read_chunk(reader)) is not None:
                yield decode_observation(data)
            done = True
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, _http.HttpError) as exc:
            raise ExecutorUnavailable(f"executor connection broke: {exc!r}") from exc
        finally:
            if done:
                self._release((reader, writer))
            else:
                writer.close()

    async def aclose(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop()[1].close()
