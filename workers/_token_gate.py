"""The token gate of a forwarded port: the first HTTP request of a connection must carry the token.

A forward with a token (VS Code: ``purpose="vscode"``) reads the first request head of each
connection before it opens a tunnel. The token may come in the query (``?tkn=T``, the link the
user was given) or in the gate's cookie. By query, the answer is a ``302`` to the same path
without ``tkn`` that sets the cookie, so the token leaves the address bar and later requests
(assets, WebSockets) carry the cookie; without either, ``403``. An accepted connection then
carries the head it read and everything after it unchanged.

The cookie is named after the host port (``corral-tkn-<host_port>``): browsers scope cookies by
host, not port, so one name for every forward on ``127.0.0.1`` would let each VS Code opened
overwrite the previous one's cookie.
"""

from __future__ import annotations

import hmac
from typing import Literal, NamedTuple
from urllib.parse import unquote_plus, urlsplit

MAX_HEAD = 64 * 1024
"""A browser's request head is ~1–2 KB; a head over this is refused, not buffered (it is also the
forward's stream buffer limit)."""
HEAD_TIMEOUT_S = 10.0
TOKEN_PARAM = "tkn"


class Verdict(NamedTuple):
    action: Literal["pass", "redirect", "deny"]
    location: str = ""
    """For ``redirect``: the path (and query) without the token."""


def cookie_name(host_port: int) -> str:
    return f"corral-tkn-{host_port}"


def check_request(head: bytes, token: str, cookie: str) -> Verdict:
    """What to do with the first request head of a connection (``head`` ends with CRLF CRLF).

    ``pass``: the cookie ``cookie`` holds the token; ``redirect``: the query's ``tkn`` does
    (``location`` is where to send the browser); ``deny``: neither, or the head is malformed."""
    want = token.encode()
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    stray = head.replace(b"\r\n", b"")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/") or any(c in stray for c in b"\r\n\x00"):
        return Verdict("deny")
    target = urlsplit(parts[1].decode("latin-1"))
    pieces = target.query.split("&") if target.query else []
    tokens = [unquote_plus(p.partition("=")[2]) for p in pieces if unquote_plus(p.partition("=")[0]) == TOKEN_PARAM]
    if any(hmac.compare_digest(value.encode("utf-8", "surrogateescape"), want) for value in tokens):
        rest = "&".join(p for p in pieces if unquote_plus(p.partition("=")[0]) != TOKEN_PARAM)
        path = "/" + target.path.lstrip("/\\")  # never "//host" nor "/\\host": the redirect stays on this origin
        return Verdict("redirect", path + ("?" + rest if rest else ""))
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == b"cookie" and _has_cookie(value, cookie.encode(), want):
            return Verdict("pass")
    return Verdict("deny")


def _has_cookie(header: bytes, name: bytes, want: bytes) -> bool:
    for pair in header.split(b";"):
        key, sep, value = pair.strip().partition(b"=")
        if sep and key == name and hmac.compare_digest(value.strip(b'"'), want):
            return True
    return False


def redirect(location: str, token: str, cookie: str) -> bytes:
    return (f"HTTP/1.1 302 Found\r\nLocation: {location}\r\n"
            f"Set-Cookie: {cookie}={token}; Path=/; HttpOnly; SameSite=Strict\r\n"
            "Cache-Control: no-store\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").encode("latin-1")


FORBIDDEN = (b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 34\r\nConnection: close\r\n\r\n"
             b"this port needs its session token\n")
