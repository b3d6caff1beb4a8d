"""Published contracts: JSON Schema per event model, an AsyncAPI 3 document, and compatibility.

``radstream schemas export`` writes ``schemas/jsonschema/*.json`` and ``schemas/asyncapi.json``
from the pydantic models; tests fail when the committed files are stale, and
:func:`breaking_changes` refuses a model change that would break existing consumers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from schemas.correlation import CORRELATION_ID_HEADER, SUPPLIED_PATTERN

JSONSCHEMA_DIR = Path(__file__).resolve().parent / "jsonschema"
ASYNCAPI_FILE = Path(__file__).resolve().parent / "asyncapi.json"

# Keywords that document a field without changing what values it accepts.
_DOC_KEYWORDS = frozenset({"title", "description", "default", "examples"})


@dataclass(frozen=True, slots=True)
class MessageKind:
    """One kind of message on a topic: its value model and the fixed headers that mark it."""

    model: type[BaseModel]
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChannelContract:
    """One topic, the kinds of message it carries and who sends and receives them.

    ``produced_by``/``consumed_by`` name the radstream components that publish to and consume
    from the topic; an empty one means radstream does not (the AsyncAPI operations are written
    from radstream's side: ``send`` for what it publishes, ``receive`` for what it consumes).
    """

    channel_id: str
    address: str
    messages: tuple[MessageKind, ...]
    description: str
    key: str
    produced_by: str = ""
    consumed_by: str = ""


def json_schema_of(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema of ``model`` as consumers validate it (validation mode)."""
    return model.model_json_schema(mode="validation")


def render(document: Mapping[str, Any]) -> str:
    """Stable JSON text, so regenerating an unchanged schema gives identical bytes."""
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def jsonschema_files(models: Sequence[type[BaseModel]]) -> dict[str, str]:
    """File name → content of every model's JSON Schema."""
    return {f"{model.__name__}.json": render(json_schema_of(model)) for model in models}


def asyncapi_document(
    channels: Sequence[ChannelContract], *, version: str, servers: Mapping[str, str]
) -> dict[str, Any]:
    """An AsyncAPI 3.0 document of every topic, its messages and their payload schemas."""
    kinds = {kind.model.__name__: kind for c in channels for kind in c.messages}
    models = sorted({kind.model for kind in kinds.values()}, key=lambda m: m.__name__)
    _, defs = models_json_schema(
        [(m, "validation") for m in models], ref_template="#/components/schemas/{model}"
    )
    messages = {name: _message(kind) for name, kind in sorted(kinds.items())}
    operations: dict[str, Any] = {}
    for c in channels:
        ref = {"$ref": f"#/channels/{c.channel_id}"}
        if c.produced_by:
            operations[f"send_{c.channel_id}"] = {
                "action": "send",
                "channel": ref,
                "summary": f"Sent to {c.address} by: {c.produced_by}; message key: {c.key}.",
            }
        if c.consumed_by:
            operations[f"receive_{c.channel_id}"] = {
                "action": "receive",
                "channel": ref,
                "summary": f"Received from {c.address} by: {c.consumed_by}; message key: {c.key}.",
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "radstream event contracts",
            "version": version,
            "description": (
                "Topics of the radstream pipeline. Names carry the deployment's "
                "RADSTREAM_TOPIC_PREFIX (default 'radstream.'). Events never carry patient "
                "names, IDs or birth dates."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            name: {"host": host, "protocol": "kafka", "description": f"{name} broker"}
            for name, host in servers.items()
        },
        "channels": {
            c.channel_id: {
                "address": c.address,
                "description": c.description,
                "messages": {
                    kind.model.__name__: {"$ref": f"#/components/messages/{kind.model.__name__}"}
                    for kind in c.messages
                },
                "bindings": {"kafka": {"topic": c.address, "bindingVersion": "0.5.0"}},
            }
            for c in channels
        },
        "operations": operations,
        "components": {"messages": messages, "schemas": defs.get("$defs", {})},
    }


def _message(kind: MessageKind) -> dict[str, Any]:
    """The AsyncAPI message of one kind: payload schema, correlation header, marking headers."""
    properties: dict[str, Any] = {
        CORRELATION_ID_HEADER: {
            "type": "string",
            "pattern": SUPPLIED_PATTERN,
            "description": (
                "propagated from the arrival to every derived event; kept only as a"
                " UUID or a 32/64-hex digest (not digits only), in lower case"
                " without hyphens; any other value is replaced, never stored"
            ),
        }
    }
    for name, value in kind.headers.items():
        properties[name] = {
            "type": "string",
            "const": value,
            "description": "tells this kind of message apart from the others on the topic",
        }
    headers: dict[str, Any] = {"type": "object", "properties": properties}
    if kind.headers:
        headers["required"] = sorted(kind.headers)
    name = kind.model.__name__
    return {
        "name": name,
        "title": name,
        "summary": (kind.model.__doc__ or "").strip().splitlines()[0],
        "contentType": "application/json",
        "headers": headers,
        "payload": {"$ref": f"#/components/schemas/{name}"},
    }


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        resolved: Mapping[str, Any] = root["$defs"][ref.removeprefix("#/$defs/")]
        return resolved
    return schema


def _accepts(schema: Mapping[str, Any], root: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a property schema that decides which values it accepts."""
    out: dict[str, Any] = {}
    for key, value in _resolve(schema, root).items():
        if key in _DOC_KEYWORDS:
            continue
        if isinstance(value, Mapping):
            out[key] = _accepts(value, root)
        elif isinstance(value, list):
            out[key] = [_accepts(v, root) if isinstance(v, Mapping) else v for v in value]
        else:
            out[key] = value
    return out


def breaking_changes(old: Mapping[str, Any], new: Mapping[str, Any], path: str = "") -> list[str]:
    """Changes from ``old`` to ``new`` that would break a consumer or producer of ``old``.

    Allowed: new optional fields, documentation edits. Refused: a removed field, a field whose
    accepted values changed (retyped), a field that became required, recursively for nested
    models.
    """
    problems: list[str] = []
    old_props: Mapping[str, Any] = old.get("properties", {})
    new_props: Mapping[str, Any] = new.get("properties", {})
    for name, old_schema in old_props.items():
        where = f"{path}{name}"
        if name not in new_props:
            problems.append(f"{where}: removed")
            continue
        old_res, new_res = _resolve(old_schema, old), _resolve(new_props[name], new)
        if "properties" in old_res and "properties" in new_res:
            merged_old = {**old_res, "$defs": old.get("$defs", {})}
            merged_new = {**new_res, "$defs": new.get("$defs", {})}
            problems.extend(breaking_changes(merged_old, merged_new, f"{where}."))
        elif _accepts(old_schema, old) != _accepts(new_props[name], new):
            problems.append(f"{where}: type or constraints changed")
    newly_required = set(new.get("required", [])) - set(old.get("required", []))
    problems.extend(f"{path}{name}: became required" for name in sorted(newly_required))
    return problems
