"""The worker's side of the executor channel: pooled keep-alive HTTP over a Unix socket or TCP.

The worker (often root, on the host) talks to a server inside a sandbox it does not trust, through
a socket file in a directory the sandbox can write. So the client:

* never follows what the sandbox put at the socket path: the path is opened ``O_PATH|O_NOFOLLOW``,
  must be a socket (a symlink to ``/var/run/docker.sock`` is refused), and is connected through
  ``/proc/self/fd/<fd>``, so what was checked is what is connected;
* checks who listens: the peer's ``SO_PEERCRED`` goes to the ``peer_check`` the client was built
  with (``same_pid_namespace``, ``exact_pid``) once per new connection, before a byte is sent;
* bounds what it reads (``ChannelLimits``): a declared chunk or body over its cap is refused
  before it is read, a response head and the rest of a started chunk must arrive in time;
* percent-encodes every action id it puts in a URL.

``open_tunnel`` opens a byte pipe to a port of the sandbox's loopback (``_tunnel``) on a fresh
connection with the same checks.

Over TCP, ``ssl=`` wraps each connection in TLS (the remote backend's executors on other machines).

Every failure is an ``ExecutorUnavailable``; ``ExecutorImpostor``, ``ProtocolViolation``,
``KeyRefused`` (401), ``ExecutorBusy`` (409) and ``TunnelRefused`` say why.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl as _ssl
import stat
import struct
from typing import AsyncIterator, Awaitable, Callable, NamedTuple, NoReturn
from urllib.parse import quote

import msgspec

from protocol import AnyAction, AnyObservation, decode_observation, encode

from . import _http
from ._channel import Claim, Health, Release, VscodeServer
from ._spawn_client import SpawnFailed, StdioHandle, StdioStreams, spawn_request_head
from ._tunnel import pipe  # noqa: F401  (re-exported: the worker's port forwarder pipes with it)

MAX_CHUNK_BYTES = 4 * 1024 * 1024
"""One streamed observation. The largest real ones (a file read at max_read_bytes, ~0.9 MB) fit
four times over, and NATS refuses messages over 1 MB by default anyway."""
MAX_BODY_BYTES = 4 * 1024 * 1024
"""One non-streamed answer: health, claim, a stored result."""
HEAD_TIMEOUT_S = 30.0
"""From a request to its response head. Actions answer their head at once; a claim may first
start bash (its own limit is 10 s) and type cd/export into it (10 s)."""
CHUNK_TIMEOUT_S = 10.0
"""From a chunk's size line to its last byte (also a non-streamed body after its head). Between
chunks there is no limit: a command may be silent for as long as it likes."""
_IDLE_KEPT = 8
_PEERCRED = struct.Struct("3i")


_health = msgspec.json.Decoder(Health)
_vscode = msgspec.json.Decoder(VscodeServer)
VSCODE_TIMEOUT_S = 75.0
"""From POST /v1/vscode to its answer: a first call starts code-server (a few seconds; the
executor gives up after 60 s and answers with its log)."""


class ExecutorUnavailable(Exception):
    """The executor could not be reached or broke the connection mid-answer."""


class ExecutorImpostor(ExecutorUnavailable):
    """What listens at the executor's address is not the sandbox's executor; nothing was sent to it."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"refused the executor's socket: {reason}")
        self.reason = reason


class ProtocolViolation(ExecutorUnavailable):
    """The executor's answer broke the channel's rules (too large, too slow, malformed).

    The connection is dropped; the action gets ``sandbox_failed``, the session lives on.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"the executor broke the channel's rules: {reason}")
        self.reason = reason


class KeyRefused(ExecutorUnavailable):
    """The executor answered 401: the key this client presents is not the executor's."""


class ExecutorBusy(ExecutorUnavailable):
    """The executor answered 409 to a claim or a release: it serves another session."""


class TunnelRefused(ExecutorUnavailable):
    """Nothing accepted a connection to ``port`` on the sandbox's loopback (the executor answered 502)."""

    def __init__(self, port: int, reason: str) -> None:
        super().__init__(f"port {port} of the sandbox refused the connection: {reason}")
        self.port = port
        self.reason = reason


class PeerCred(NamedTuple):
    """``SO_PEERCRED`` of a Unix socket: who called ``listen()``, as seen from our pid namespace
    (pid 0 when that process is not visible from it)."""

    pid: int
    uid: int
    gid: int


PeerCheck = Callable[[PeerCred], "str | None"]
"""Given the peer's credentials, a reason to refuse it, or None to accept."""


def same_pid_namespace(pid: int, uid: int | None = None) -> PeerCheck:
    """Accept a peer in the same pid namespace as host process ``pid`` (a container's init).

    A peer whose pid is not visible from here (0) is accepted only when ``uid`` is given and
    matches the peer's uid.
    """

    def check(peer: PeerCred) -> str | None:
        if peer.pid == 0:
            if uid is None:
                return "the listening process is not visible from this pid namespace"
            return None if peer.uid == uid else f"the listener (invisible pid) runs as uid {peer.uid}, not {uid}"
        try:
            want = os.readlink(f"/proc/{pid}/ns/pid")
        except OSError as exc:
            return f"cannot read the pid namespace of the sandbox's process {pid}: {exc.strerror}"
        try:
            got = os.readlink(f"/proc/{peer.pid}/ns/pid")
        except OSError as exc:
            return f"cannot read the pid namespace of the listener, pid {peer.pid}: {exc.strerror}"
        if got != want:
            return f"the listener (pid {peer.pid}, uid {peer.uid}) is in pid namespace {got}, not the sandbox's {want}"
        return None

    return check


def exact_pid(pid: int) -> PeerCheck:
    """Accept only the process ``pid`` itself as the listener (the local backend's executor)."""

    def check(peer: PeerCred) -> str | None:
        return None if peer.pid == pid else f"the listener is pid {peer.pid} (uid {peer.uid}), not the executor's pid {pid}"

    return check


class ChannelLimits(msgspec.Struct, frozen=True, kw_only=True):
    """What the client accepts from an executor (see the module constants for the reasons)."""

    max_chunk_bytes: int = MAX_CHUNK_BYTES
    max_body_bytes: int = MAX_BODY_BYTES
    head_timeout_s: float = HEAD_TIMEOUT_S
    chunk_timeout_s: float = CHUNK_TIMEOUT_S


class VscodeUnavailable(ExecutorUnavailable):
    """The executor answered ``POST /v1/vscode`` with a refusal: ``status`` 409 (the session has no
    vscode plugin, or is not claimed), 422 (code-server is not installed here), 500 (it failed)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"executor answered {status} to /v1/vscode: {reason}")
        self.status, self.reason = status, reason


_Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Connector = Callable[[], Awaitable[_Conn]]
"""Opens one new byte stream to the executor some other way (a Kubernetes port-forward); raises
``ExecutorUnavailable`` when it cannot."""


class ExecutorClient:
    """Talks to one sandbox's executor. Concurrent calls use separate connections.

    ``peer_check`` (Unix sockets only) runs once for every new connection; a refusal raises
    ``ExecutorImpostor`` before anything is written to the socket. ``ssl`` (TCP only) wraps every
    connection in TLS, the server's certificate checked as the context says, for the name
    ``server_hostname`` (default: ``host``).
    """

    def __init__(self, *, key: str, socket_path: str | None = None, host: str = "127.0.0.1", port: int | None = None,
                 peer_check: PeerCheck | None = None, limits: ChannelLimits = ChannelLimits(),
                 connect: Connector | None = None, ssl: _ssl.SSLContext | None = None,
                 server_hostname: str | None = None) -> None:
        if socket_path is None and port is None and connect is None:
            raise ValueError("ExecutorClient needs a socket_path, a port or a connector")
        if peer_check is not None and not socket_path:
            raise ValueError("peer_check needs a socket_path: TCP peers have no credentials to check")
        if ssl is not None and (socket_path or connect is not None):
            raise ValueError("ssl is for TCP connections (a connector wraps its own streams)")
        self._ssl = ssl
        self._server_hostname = (server_hostname or host) if ssl is not None else None
        self._socket_path = socket_path
        self._host = host
        self._port = port
        self._peer_check = peer_check
        self._limits = limits
        self._connector = connect
        self._auth = f"Authorization: Bearer {key}\r\n".encode()
        self._idle: list[_Conn] = []
        self._closed = False

    # ------------------------------------------------------------------ connections

    async def _connect(self) -> _Conn:
        while self._idle:
            reader, writer = self._idle.pop()
            if not writer.is_closing() and not reader.at_eof():
                return reader, writer
        return await self._open()

    async def _open(self) -> _Conn:
        """A new connection (never one from the pool), peer checked."""
        if self._connector is not None:
            return await self._connector()
        try:
            if self._socket_path:
                sock = await self._open_unix(self._socket_path)
                reader, writer = await asyncio.open_unix_connection(sock=sock, limit=_http.MAX_HEAD)
            else:
                reader, writer = await asyncio.open_connection(self._host, self._port, limit=_http.MAX_HEAD, ssl=self._ssl,
                                                               server_hostname=self._server_hostname)
        except OSError as exc:  # ssl.SSLError (a certificate the CA did not sign, a wrong name) is one
            raise ExecutorUnavailable(f"cannot connect to the executor: {exc}") from exc
        _http.tune_socket(writer)
        return reader, writer

    async def _open_unix(self, path: str) -> socket.socket:
        """A connected socket to what ``path`` is (never where a symlink points), peer checked."""
        try:
            fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise ExecutorUnavailable(f"cannot open the executor's socket {path}: {exc.strerror}") from exc
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISSOCK(mode):
                what = "a symlink" if stat.S_ISLNK(mode) else "not a socket"
                raise ExecutorImpostor(f"{path} is {what}")
            sock.setblocking(False)
            await _connect_now(sock, f"/proc/self/fd/{fd}")
            if self._peer_check is not None:
                cred = PeerCred(*_PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)))
                reason = self._peer_check(cred)
                if reason is not None:
                    raise ExecutorImpostor(reason)
        except BaseException:
            sock.close()
            raise
        finally:
            os.close(fd)
        return sock

    def _release(self, conn: _Conn) -> None:
        if self._closed or len(self._idle) >= _IDLE_KEPT:
            conn[1].close()
        else:
            self._idle.append(conn)

    async def _read_head(self, reader: asyncio.StreamReader, what: str,
                         timeout_s: float | None = None) -> tuple[str, dict[str, str]]:
        timeout_s = timeout_s or self._limits.head_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                head = await _http.read_head(reader)
        except TimeoutError:
            raise ProtocolViolation(f"no response head to {what} within {timeout_s:g}s") from None
        if head is None:
            raise ExecutorUnavailable(f"executor closed the connection before answering {what}")
        parts = head[0].split(" ", 2)
        if len(parts) < 2 or parts[0] != "HTTP/1.1" or len(parts[1]) != 3 or not parts[1].isdigit():
            raise ProtocolViolation(f"malformed status line {head[0][:80]!r}")
        return parts[1], head[1]

    async def _read_body(self, reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
        try:
            async with asyncio.timeout(self._limits.chunk_timeout_s):
                return await _http.read_body(reader, headers, self._limits.max_body_bytes)
        except TimeoutError:
            raise ProtocolViolation(f"a response body did not arrive within {self._limits.chunk_timeout_s:g}s") from None

    async def _read_chunk(self, reader: asyncio.StreamReader) -> bytes | None:
        size = await _http.read_chunk_size(reader, self._limits.max_chunk_bytes)  # silence here is a quiet command
        try:
            async with asyncio.timeout(self._limits.chunk_timeout_s):
                return await _http.read_chunk_data(reader, size)
        except TimeoutError:
            raise ProtocolViolation(
                f"a chunk of {size} bytes did not arrive within {self._limits.chunk_timeout_s:g}s of its size line"
            ) from None

    # ------------------------------------------------------------------ verbs

    async def health(self) -> Health:
        return await self._json_call("GET", "/v1/health")

    async def claim(self, claim: Claim) -> Health:
        """Bind a warm executor to a session."""
        return await self._json_call("POST", "/v1/claim", claim)

    async def release(self, session_id: str) -> Health:
        """End the executor's session (if it is still ``session_id``'s) and make it claimable again."""
        return await self._json_call("POST", "/v1/release", Release(session_id=session_id))

    async def vscode(self) -> VscodeServer:
        """The session's code-server (started by the executor on the first call): its port on the
        sandbox's loopback and the folder it opened. ``VscodeUnavailable`` (an ``ExecutorUnavailable``)
        with the executor's reason when it cannot (no vscode plugin, code-server not installed, ...)."""
        status, answer = await self._exchange("POST", "/v1/vscode", b"{}", head_timeout_s=VSCODE_TIMEOUT_S)
        if status != "200":
            try:
                reason = msgspec.json.decode(answer, type=dict[str, str]).get("error", "")
            except msgspec.DecodeError:
                reason = answer[:300].decode(errors="replace")
            raise VscodeUnavailable(int(status), reason)
        try:
            return _vscode.decode(answer)
        except msgspec.DecodeError as exc:
            raise ProtocolViolation(f"undecodable answer to /v1/vscode: {exc}") from None

    async def result(self, action_id: str) -> AnyObservation | None:
        """The executor's stored answer to an action id, or None (unknown, or still running)."""
        status, body = await self._exchange("GET", "/v1/result/" + quote(action_id, safe=""))
        if status != "200":
            return None
        try:
            return decode_observation(body)
        except msgspec.DecodeError as exc:
            raise ProtocolViolation(f"undecodable stored result: {exc}") from None

    async def _json_call(self, method: str, path: str, body: Claim | Release | None = None) -> Health:
        status, answer = await self._exchange(method, path, msgspec.json.encode(body) if body is not None else b"")
        if status == "401":
            raise KeyRefused(f"executor answered 401 to {path}: it does not accept this key")
        if status == "409":
            raise ExecutorBusy(f"executor answered 409 to {path}: {_error_text(answer)}")
        if status != "200":
            raise ExecutorUnavailable(f"executor answered {status} to {path}: {answer[:300].decode(errors='replace')}")
        try:
            return _health.decode(answer)
        except msgspec.DecodeError as exc:
            raise ProtocolViolation(f"undecodable answer to {path}: {exc}") from None

    async def _exchange(self, method: str, path: str, data: bytes = b"",
                        head_timeout_s: float | None = None) -> tuple[str, bytes]:
        """One request with a complete (not streamed) answer: (status code, body)."""
        reader, writer = await self._connect()
        try:
            writer.write(f"{method} {path} HTTP/1.1\r\nHost: executor\r\nContent-Type: application/json\r\n".encode()
                         + self._auth + b"Content-Length: %d\r\n\r\n" % len(data) + data)
            status, headers = await self._read_head(reader, path, head_timeout_s)
            answer = await self._read_body(reader, headers)
        except BaseException as exc:
            writer.close()
            _reraise(exc, path)
        self._release((reader, writer))
        return status, answer

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
            status, headers = await self._read_head(reader, "the action")
            if status != "200":
                detail = await self._read_body(reader, headers)
                raise ExecutorUnavailable(f"executor answered {status}: {detail[:200]!r}")
            if headers.get("transfer-encoding") != "chunked":
                raise ProtocolViolation("an action's answer must be chunked")
            while (data := await self._read_chunk(reader)) is not None:
                try:
                    obs = decode_observation(data)
                except msgspec.DecodeError as exc:
                    raise ProtocolViolation(f"undecodable observation: {exc}") from None
                yield obs
            done = True
        except BaseException as exc:
            _reraise(exc, "the action")
        finally:
            if done:
                self._release((reader, writer))
            else:
                writer.close()

    async def spawn_stdio(self, argv: list[str], env: dict[str, str] | None = None,
                          cwd: str | None = None) -> StdioStreams:
        """Start ``argv`` in the sandbox (as its user, in its workdir); its stdout is the reader,
        its stdin the writer. Closing the writer ends the process (its whole process group)."""
        reader, writer = await self._open()
        body = msgspec.json.encode({"argv": argv, "env": env or {}, "cwd": cwd})
        try:
            writer.write(spawn_request_head(self._auth, body))
            status, headers = await self._read_head(reader, "the spawn")
            if status != "101":
                detail = (await self._read_body(reader, headers)).decode(errors="replace")
                writer.close()
                raise SpawnFailed(detail[:2000])
        except BaseException as exc:
            writer.close()
            _reraise(exc, "the spawn")
        handle = StdioHandle(spawn_id=headers.get("x-corral-spawn-id", ""), pid=int(headers.get("x-corral-pid", "0")),
                             fetch_stderr=self._spawn_stderr)
        return reader, writer, handle

    async def _spawn_stderr(self, spawn_id: str) -> str:
        status, body = await self._exchange("GET", f"/v1/spawn/{quote(spawn_id, safe='')}/stderr")
        return body.decode(errors="replace") if status == "200" else ""
    async def open_tunnel(self, port: int) -> _Conn:
        """A byte pipe to TCP ``port`` of the sandbox's loopback, on a connection of its own.

        Raises ``TunnelRefused`` when nothing listens there, ``ExecutorUnavailable`` otherwise.
        The caller owns (and closes) the returned streams."""
        if not isinstance(port, int) or not 1 <= port <= 65535:
            raise ValueError(f"not a TCP port: {port!r}")
        reader, writer = await self._open()
        what = f"the tunnel to port {port}"
        try:
            writer.write(b"GET /v1/tunnel/%d HTTP/1.1\r\nHost: executor\r\nUpgrade: corral-tunnel\r\n"
                         b"Connection: Upgrade\r\n%s\r\n" % (port, self._auth))
            status, headers = await self._read_head(reader, what)
            if status == "101" and headers.get("upgrade", "").lower() == "corral-tunnel":
                return reader, writer
            detail = await self._read_body(reader, headers)
            if status == "502":
                raise TunnelRefused(port, _error_text(detail))
            raise ExecutorUnavailable(f"executor answered {status} to {what}: {detail[:200].decode(errors='replace')}")
        except BaseException as exc:
            writer.close()
            _reraise(exc, what)

    async def aclose(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop()[1].close()


def _error_text(body: bytes) -> str:
    try:
        return str(msgspec.json.decode(body).get("error", ""))[:200]
    except (msgspec.DecodeError, AttributeError):
        return body[:200].decode(errors="replace")


def _reraise(exc: BaseException, what: str) -> NoReturn:
    """Raise channel failures as the client's errors; anything else (cancellation, ours) as it is."""
    if isinstance(exc, _http.HttpError):
        raise ProtocolViolation(f"{what}: {exc}") from exc
    if isinstance(exc, (OSError, EOFError)) and not isinstance(exc, ExecutorUnavailable):
        raise ExecutorUnavailable(f"executor connection broke during {what}: {exc!r}") from exc
    raise exc


async def _connect_now(sock: socket.socket, address: str) -> None:
    """connect() a non-blocking Unix socket: it succeeds or fails at once, except when the
    listener's backlog is full (EAGAIN), which is retried a few times."""
    for attempt in range(6):
        try:
            sock.connect(address)
            return
        except BlockingIOError:
            await asyncio.sleep(0.002 * 2**attempt)
    raise ExecutorUnavailable("the executor's listen backlog stayed full")
