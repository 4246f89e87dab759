"""The SDK's models to corral's wire structs (translated at the edge, as httpcore does)."""

from __future__ import annotations

import json
from typing import Any

from protocol import (
    McpAudio,
    McpContent,
    McpImage,
    McpResource,
    McpResourceLink,
    McpText,
    McpTool,
    McpToolAnnotations,
)


def tool(server: str, sdk_tool: Any) -> McpTool:
    notes = sdk_tool.annotations
    annotations = None if notes is None else McpToolAnnotations(
        title=notes.title, read_only_hint=notes.read_only_hint, destructive_hint=notes.destructive_hint,
        idempotent_hint=notes.idempotent_hint, open_world_hint=notes.open_world_hint)
    return McpTool(server=server, name=sdk_tool.name, description=sdk_tool.description or "",
                   input_schema=dict(sdk_tool.input_schema or {}), annotations=annotations)


def read_only(sdk_tool: Any) -> bool:
    return bool(sdk_tool.annotations is not None and sdk_tool.annotations.read_only_hint)


def content(block: Any) -> McpContent:
    """One content block of a tool's result; a kind this corral does not know becomes its JSON as text."""
    kind = getattr(block, "type", None)
    if kind == "text":
        return McpText(text=block.text)
    if kind == "image":
        return McpImage(data=block.data, mime_type=block.mime_type)
    if kind == "audio":
        return McpAudio(data=block.data, mime_type=block.mime_type)
    if kind == "resource":
        res = block.resource
        return McpResource(uri=str(res.uri), mime_type=res.mime_type, text=getattr(res, "text", None),
                           blob=getattr(res, "blob", None))
    if kind == "resource_link":
        return McpResourceLink(uri=str(block.uri), name=block.name or "", description=block.description,
                               mime_type=block.mime_type)
    dump = block.model_dump(mode="json", by_alias=True, exclude_none=True) if hasattr(block, "model_dump") else block
    return McpText(text=json.dumps(dump))
