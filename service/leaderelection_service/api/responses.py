"""What each route declares it answers: one catalogue of refusals, examples on every answer.

Example::

    @router.post(
        "/{key}/renew",
        operation_id="renewLease",
        responses=answer("The lease, renewed", LEASE)
        | refused(*WRITES, "not_found", lease_lost="another holder or term has it"),
    )

Every error answer has the body ``ErrorBody``; a status is declared with the
codes a route can give under it, each with an example made by the service's
rules (``api.examples``), and the headers that come with it (``Retry-After``
on 503, ``WWW-Authenticate`` on 401). These declarations only document: the
routes answer through ``api.answers`` exactly as before.

A watch stream's 200 names its event model (``LeaseEvent``) by reference.
FastAPI puts a declared ``model`` of any answer under the route's media type
or ``application/json``, never ``text/event-stream`` next to JSON errors, so
the stream declares a plain ``$ref`` (``stream``) and ``with_models`` adds the
model to the document's components (``LeaseApp.openapi``, which also restores the nulls of
examples: ``with_examples``). Inlining
``model_json_schema()`` there was the alternative: it carries its own
``$defs`` and a ``$ref: '#/$defs/Lease'`` that no OpenAPI tool resolves.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from typing import Any

from fastapi.openapi.constants import REF_PREFIX
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.routing import BaseRoute

from leaderelection_service.api.examples import ERRORS
from leaderelection_service.api.schemas import ErrorBody

Responses = dict[int | str, dict[str, Any]]

_REFUSALS: dict[str, tuple[int, str]] = {
    "unauthorized": (401, "no valid API token (the service has tokens configured)"),
    "forbidden": (
        403,
        "the token may not do this: it is read-only, or the key is outside its prefix",
    ),
    "not_found": (404, "the key was never acquired; `lease` is null"),
    "lease_held": (409, "another holder has the lease; `lease` is its record"),
    "lease_lost": (409, "another holder or term has the lease, or it was released"),
    "limit_mismatch": (
        409,
        "the key is held with another limit; only an admin token may change it",
    ),
    "body_too_large": (413, "the body is larger than the service accepts"),
    "invalid_key": (422, "the key does not match ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"),
    "invalid_body": (422, "a malformed body, or a ttl out of the service's range"),
    "invalid_prefix": (422, "a prefix, limit or cursor out of its range"),
    "invalid_last_event_id": (422, "a Last-Event-ID not KEY:VERSION, or naming another key"),
    "too_many_requests": (
        429,
        "this token (or client address without tokens) has as many open watch streams as one "
        "caller may (`watch_streams_per_token`)",
    ),
    "internal": (500, "a bug: logged with its trace by the service, answered without one"),
    "backend_unavailable": (503, "the backend cannot be reached or answered in time"),
    "not_ready": (503, "the backend cannot be read or written; the service log says why"),
}
"""Each example of ``api.examples.ERRORS``: its status, and what it means by default."""

COMMON = ("unauthorized", "forbidden", "internal", "backend_unavailable")
"""What any lease route may answer besides its own refusals."""
WRITES = (*COMMON, "invalid_key", "invalid_body", "body_too_large")
"""The same for acquire, renew and release."""

_RETRY_AFTER = {
    "description": "Whole seconds to wait before retrying, at least 1.",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
    "example": 1,
}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": 'The bearer challenge: `Bearer realm="leaderelection"`.',
            "required": True,
            "schema": {"type": "string"},
        }
    },
    503: {"Retry-After": _RETRY_AFTER},
    429: {"Retry-After": _RETRY_AFTER},
}


def answer(
    description: str, example: Any, *, summary: str | None = None, media_type: str | None = None
) -> Responses:
    """The 200 answer: its description and an example (in the route's JSON by default)."""
    content: dict[str, Any] = {"examples": {"answer": {"summary": summary or description}}}
    content["examples"]["answer"]["value"] = example
    if media_type is not None:
        content["schema"] = {"type": "string"}
    return {
        200: {"description": description, "content": {media_type or "application/json": content}}
    }


def stream(
    description: str, model: type[BaseModel], types: tuple[str, ...], example: dict[str, Any]
) -> Responses:
    """The 200 of a Server-Sent Events route whose every event's ``data:`` is ``model`` as JSON.

    The schema describes one event (its ``event``, ``id`` and ``data`` fields),
    as OpenAPI 3.2 does a stream's ``itemSchema`` and as schemathesis reads a
    ``text/event-stream`` schema; ``data`` is a string of JSON whose
    ``contentSchema`` is the model. ``example`` is one event's data.
    """
    event = {
        "type": "object",
        "required": ["event", "id", "data"],
        "properties": {
            "event": {"type": "string", "enum": list(types)},
            "id": {"type": "string", "description": "KEY:VERSION"},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {"$ref": f"{REF_PREFIX}{model.__name__}"},
            },
            "retry": {"type": "integer", "description": "Milliseconds to wait to reconnect."},
        },
    }
    value = {
        "event": example["type"],
        "id": f"{example['key']}:{example['version']}",
        "data": json.dumps(example, separators=(",", ":")),
    }
    return {
        200: {
            "description": description,
            "content": {
                "text/event-stream": {
                    "schema": event,
                    "examples": {"event": {"summary": "One event", "value": value}},
                }
            },
        }
    }


def refused(*names: str, **texts: str) -> Responses:
    """The error answers of a route: ``names`` with their default text, ``texts`` with its own.

    Cases that share a status are declared together under it, each with its
    example; the description names each code with what it means here.
    """
    cases = {name: _REFUSALS[name][1] for name in names} | texts
    out: Responses = {}
    meanings: dict[int, dict[str, list[str]]] = {}
    for name, text in cases.items():
        status = _REFUSALS[name][0]
        code = ERRORS[name]["error"]
        entry = out.setdefault(status, {"model": ErrorBody, "content": {"application/json": {}}})
        examples = entry["content"]["application/json"].setdefault("examples", {})
        examples[name] = {"summary": text, "value": ERRORS[name]}
        meanings.setdefault(status, {}).setdefault(code, []).append(text)
        if status in _HEADERS:
            entry["headers"] = _HEADERS[status]
    for status, by_code in meanings.items():
        out[status]["description"] = "; ".join(
            f"`{code}`: {', or '.join(said)}" for code, said in by_code.items()
        )
    return dict(sorted(out.items()))


def with_examples(document: dict[str, Any], routes: Iterable[BaseRoute]) -> dict[str, Any]:
    """Put back the answers' examples as the routes declare them.

    FastAPI drops every null from the document it builds, the values of
    examples included: an error's ``"lease": null`` and a last page's
    ``"next_cursor": null`` would vanish, and the examples would no longer be
    what the wire carries nor match their schemas.
    """
    for route in routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        for method in route.methods:
            operation = document["paths"][route.path_format][method.lower()]
            for status, declared in route.responses.items():
                for media_type, content in declared.get("content", {}).items():
                    if "examples" in content:
                        served = operation["responses"][str(status)]["content"][media_type]
                        served["examples"] = copy.deepcopy(content["examples"])
    return document


def with_models(document: dict[str, Any], *models: type[BaseModel]) -> dict[str, Any]:
    """Add ``models`` (and the models they use) to the document's components."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for model in models:
        schema = model.model_json_schema(ref_template=REF_PREFIX + "{model}", mode="serialization")
        for name, used in schema.pop("$defs", {}).items():
            schemas.setdefault(name, used)
        schemas[model.__name__] = schema
    document["components"]["schemas"] = dict(sorted(schemas.items()))
    return document
