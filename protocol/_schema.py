"""JSON Schema of every event, so clients in other languages can generate types."""

from __future__ import annotations

from typing import Any

import msgspec

from ._events import AnyAction, AnyObservation, AnyReply, SessionRef, SessionSpec


def json_schema() -> dict[str, Any]:
    """One document: ``$defs`` of every struct, and the unions by role."""
    (action, observation, reply, spec, ref), defs = msgspec.json.schema_components(
        (AnyAction, AnyObservation, AnyReply, SessionSpec, SessionRef), ref_template="#/$defs/{name}"
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "corral wire protocol",
        "description": "Actions (published on <prefix>.session.<sid>.action.<kind>), observations "
                       "(<prefix>.session.<sid>.obs.<kind>) and control messages (<prefix>.ctl.<verb>). "
                       "Every event is tagged by its `kind` field.",
        "properties": {
            "action": action,
            "observation": observation,
            "control_reply": reply,
            "session_spec": spec,
            "session_ref": ref,
        },
        "$defs": defs,
    }
