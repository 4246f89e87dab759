"""The accessibility tree as text, with ``[bid]`` markers, from Chromium's own tree over CDP.

``Accessibility.getFullAXTree`` gives Chromium's computed roles, names, values and states (what a
screen reader sees, not a guess from tags); ``DOMSnapshot.captureSnapshot`` gives every node's
attributes, so a tree node's ``backendDOMNodeId`` maps to its element's ``bid``. Both are sent at
once (one round trip); a page with same-process iframes costs one more, their trees fetched
together and shown under their ``Iframe`` node. Cross-origin iframes (other renderer processes) are
not walked.

A line is ``[bid] role 'name', value='...', focused, checked=true, ...``, indented by depth. Nodes
Chromium marks ignored, nameless generic containers and text boxes are skipped (their children
move up); a text node that only repeats its parent's name is dropped.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ._dom import BID_ATTRIBUTE

SKIPPED_ROLES = frozenset({"generic", "none", "presentation", "InlineTextBox", "ListMarker", "LineBreak"})
SHOWN_STATES = ("focused", "checked", "pressed", "selected", "expanded", "disabled", "required", "readonly",
                "invalid", "level", "url")


async def axtree_text(cdp: Any, cap_chars: int) -> tuple[str, bool]:
    """The tree of the page behind ``cdp`` (a CDP session of its main frame), at most ``cap_chars``."""
    tree, snapshot = await asyncio.gather(cdp.send("Accessibility.getFullAXTree"),
                                          cdp.send("DOMSnapshot.captureSnapshot", {"computedStyles": []}))
    bids, owners = _snapshot_maps(snapshot)
    child_ids = [frame for frame in owners.values() if frame]
    children = await asyncio.gather(*(cdp.send("Accessibility.getFullAXTree", {"frameId": f}) for f in child_ids),
                                    return_exceptions=True)
    frames = {f: t["nodes"] for f, t in zip(child_ids, children) if isinstance(t, dict)}
    out = _Writer(cap_chars)
    _render(tree["nodes"], bids, owners, frames, out)
    return out.text(), out.truncated


def _snapshot_maps(snapshot: dict[str, Any]) -> tuple[dict[int, str], dict[int, str]]:
    """(backend node id -> bid, iframe element's backend node id -> its document's frame id)."""
    strings = snapshot["strings"]
    documents = snapshot["documents"]
    bids: dict[int, str] = {}
    owners: dict[int, str] = {}
    for doc in documents:
        nodes = doc["nodes"]
        backend = nodes.get("backendNodeId", [])
        for index, attributes in enumerate(nodes.get("attributes", [])):
            for k in range(0, len(attributes) - 1, 2):
                if strings[attributes[k]] == BID_ATTRIBUTE:
                    bids[backend[index]] = strings[attributes[k + 1]]
                    break
        content = nodes.get("contentDocumentIndex", {})
        for index, doc_index in zip(content.get("index", []), content.get("value", [])):
            frame = documents[doc_index].get("frameId")
            owners[backend[index]] = strings[frame] if isinstance(frame, int) else str(frame or "")
    return bids, owners


class _Writer:
    def __init__(self, cap_chars: int) -> None:
        self._lines: list[str] = []
        self._chars = 0
        self._cap = cap_chars
        self.truncated = False

    def add(self, depth: int, line: str) -> bool:
        if self._chars + len(line) + depth + 1 > self._cap:
            self.truncated = True
            return False
        self._lines.append("\t" * depth + line)
        self._chars += len(line) + depth + 1
        return True

    def text(self) -> str:
        return "\n".join(self._lines)

    def lines(self) -> list[str]:
        return self._lines

    def remaining(self) -> int:
        return max(0, self._cap - self._chars)


def _render(nodes: list[dict[str, Any]], bids: dict[int, str], owners: dict[int, str],
            frames: dict[str, list[dict[str, Any]]], out: _Writer) -> None:
    """Depth-first, with an explicit stack (a deep DOM must not hit Python's recursion limit)."""
    if not nodes:
        return
    by_id = {n["nodeId"]: n for n in nodes}
    stack: list[tuple[dict[str, Any], int, str]] = [(nodes[0], 0, "")]
    while stack:
        node, depth, parent_name = stack.pop()
        line, name = _line(node, bids, parent_name)
        child_depth = depth
        if line is not None:
            if not out.add(depth, line):
                return
            child_depth, parent_name = depth + 1, name
        frame = owners.get(node.get("backendDOMNodeId", -1))
        if frame and frame in frames:  # the iframe's own document, below its Iframe node
            if not _render_frame(frames[frame], bids, child_depth, out):
                return
            continue
        kids = [by_id[c] for c in node.get("childIds", []) if c in by_id]
        stack.extend((k, child_depth, parent_name) for k in reversed(kids))


def _render_frame(nodes: list[dict[str, Any]], bids: dict[int, str], depth: int, out: _Writer) -> bool:
    """A child frame's tree, indented under its iframe (node ids are per frame: rendered apart).
    False when the cap was reached."""
    sub = _Writer(out.remaining())
    _render(nodes, bids, {}, {}, sub)
    for line in sub.lines():
        if not out.add(depth, line):
            return False
    out.truncated = out.truncated or sub.truncated
    return not sub.truncated


def _line(node: dict[str, Any], bids: dict[int, str], parent_name: str) -> tuple[str | None, str]:
    """The node's line (None: skipped, its children move up) and its name."""
    role = (node.get("role") or {}).get("value", "")
    name = str((node.get("name") or {}).get("value", "") or "").strip()
    if node.get("ignored") or (role in SKIPPED_ROLES and not name) or role in ("InlineTextBox", "ListMarker"):
        return None, parent_name
    if role == "StaticText" and (not name or name == parent_name or name in parent_name):
        return None, parent_name
    bid = bids.get(node.get("backendDOMNodeId", -1))
    parts = [f"[{bid}] {role}" if bid else role]
    if name:
        parts[0] += f" {name!r}"
    value = (node.get("value") or {}).get("value")
    if value not in (None, "") and str(value) != name:
        parts.append(f"value={str(value)!r}")
    parts += _states(node)
    return ", ".join(parts), name


def _states(node: dict[str, Any]) -> list[str]:
    found: dict[str, Any] = {p["name"]: (p.get("value") or {}).get("value") for p in node.get("properties", [])}
    states = []
    for key in SHOWN_STATES:
        value = found.get(key)
        if value is None or value is False or value == "false":
            continue
        states.append(key if value in (True, "true") else f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}")
    return states
