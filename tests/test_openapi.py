"""The committed API contract is what the app serves, and a document generators accept.

``openapi-spec-validator`` checks the document against the OpenAPI 3.1
schema; the other tests check what it does not: every ``$ref`` points at
something in the document, every operation has a short stable
``operationId`` and examples of its requests and answers, and each example
is valid against the schema it illustrates (times checked as ``date-time``).
``tests/test_openapi_ts.py`` generates a TypeScript client from the file and
runs it against a live service.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from leaderelection_service.openapi import document

REPO = Path(__file__).resolve().parents[1]
DOC_URI = "urn:leaderelection:openapi"

OPERATION_IDS = {
    ("post", "/v1/leases/{key}/acquire"): "acquireLease",
    ("post", "/v1/leases/{key}/renew"): "renewLease",
    ("post", "/v1/leases/{key}/release"): "releaseLease",
    ("post", "/v1/leases/{key}/revoke"): "revokeLease",
    ("delete", "/v1/leases/{key}"): "deleteLease",
    ("post", "/v1/leases/{key}/transfer"): "transferLease",
    ("get", "/v1/leases/{key}"): "getLease",
    ("get", "/v1/leases"): "listLeases",
    ("get", "/v1/leases/{key}/watch"): "watchLease",
    ("get", "/v1/watch"): "watchLeases",
    ("get", "/v1/leases/{key}/history"): "leaseHistory",
    ("get", "/healthz"): "health",
    ("get", "/readyz"): "ready",
    ("get", "/metrics"): "metrics",
}
"""Clients generated from the document name their methods after these: they do not change."""


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "openapi.yaml").read_text())
    return loaded


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            yield method, path, op


def refs(node: Any, where: str = "#") -> Iterator[tuple[str, str]]:
    """Every ``$ref`` in ``node``, with the JSON pointer of where it is."""
    if isinstance(node, dict):
        for name, value in node.items():
            if name == "$ref" and isinstance(value, str):
                yield where, value
            else:
                yield from refs(value, f"{where}/{escape(str(name))}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from refs(value, f"{where}/{i}")


def escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"{ref}: not a reference into this document"
    node: Any = doc
    for token in ref[2:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list):
            node = node[int(token)]
        else:
            assert isinstance(node, dict) and token in node, f"{ref}: no {token!r}"
            node = node[token]
    return node


def examples_of(media: dict[str, Any]) -> list[Any]:
    if "example" in media:
        return [media["example"]]
    return [e["value"] for e in media.get("examples", {}).values()]


def test_openapi_yaml_is_what_the_app_serves(doc: dict[str, Any]) -> None:
    assert doc == document(), (
        "openapi.yaml differs from the app's schema; regenerate it with: "
        "leaderelection openapi > openapi.yaml"
    )


def test_the_document_is_valid_openapi(doc: dict[str, Any]) -> None:
    validate(doc)


def test_the_validator_refuses_a_reference_to_nothing(doc: dict[str, Any]) -> None:
    """The bug generators stopped on: a ``$ref`` into ``$defs`` the document does not have."""
    broken = yaml.safe_load(yaml.safe_dump(doc))
    lease = broken["components"]["schemas"]["LeaseEvent"]["properties"]["lease"]
    lease["$ref"] = "#/$defs/Lease"
    with pytest.raises((OpenAPIValidationError, Unresolvable)):
        validate(broken)


def test_every_ref_resolves(doc: dict[str, Any]) -> None:
    found = list(refs(doc))
    assert len(found) > 50  # the error answers alone name ErrorBody dozens of times
    for where, ref in found:
        target = resolve(doc, ref)
        assert isinstance(target, dict) and target, f"{where}: {ref} names nothing"
    assert "$defs" not in yaml.safe_dump(doc)


def test_every_operation_has_its_short_stable_id(doc: dict[str, Any]) -> None:
    ids = {(method, path): op.get("operationId") for method, path, op in operations(doc)}
    assert ids == OPERATION_IDS


def test_times_are_declared_date_time(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    lease = schemas["Lease"]["properties"]
    for name in ("acquired_at", "renewed_at", "expires_at", "server_time"):
        assert lease[name]["type"] == "string" and lease[name]["format"] == "date-time", name
    term = schemas["TermBody"]["properties"]
    assert term["acquired_at"]["format"] == "date-time"
    assert {"type": "string", "format": "date-time"} in term["ended_at"]["anyOf"]


def test_every_operation_has_examples_of_requests_and_answers(doc: dict[str, Any]) -> None:
    for method, path, op in operations(doc):
        where = f"{method.upper()} {path}"
        for param in op.get("parameters", []):
            assert param.get("examples") or param["schema"].get("examples"), (
                f"{where}: parameter {param['name']} has no example"
            )
        for media_type, media in op.get("requestBody", {}).get("content", {}).items():
            assert examples_of(media), f"{where}: request {media_type} has no example"
        assert "200" in op["responses"], where
        for status, answer in op["responses"].items():
            assert answer.get("content"), f"{where} {status}: no content declared"
            for media_type, media in answer["content"].items():
                assert examples_of(media), f"{where} {status} {media_type}: no example"


def test_every_error_answer_is_the_error_body(doc: dict[str, Any]) -> None:
    errors = 0
    for method, path, op in operations(doc):
        for status, answer in op["responses"].items():
            if int(status) < 400:
                continue
            errors += 1
            schema = answer["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}, f"{method} {path}"
            codes = {
                e["value"]["error"]
                for e in answer["content"]["application/json"]["examples"].values()
            }
            for code in codes:
                assert f"`{code}`" in answer["description"], f"{method} {path} {status}"
            if status in ("429", "503"):
                assert answer["headers"]["Retry-After"]["required"] is True
            if status == "401":
                assert "WWW-Authenticate" in answer["headers"]
    assert errors > 40
    acquire = doc["paths"]["/v1/leases/{key}/acquire"]["post"]["responses"]
    renew = doc["paths"]["/v1/leases/{key}/renew"]["post"]["responses"]
    assert set(acquire["409"]["content"]["application/json"]["examples"]) == {
        "lease_held",
        "limit_mismatch",
    }
    assert set(renew["409"]["content"]["application/json"]["examples"]) == {"lease_lost"}
    assert {"401", "403", "404", "409", "413", "422", "500", "503"} <= set(renew)


def _validator(doc: dict[str, Any], pointer: str) -> Draft202012Validator:
    registry: Registry[Any] = Registry().with_resource(
        DOC_URI, Resource(contents=doc, specification=DRAFT202012)
    )
    return Draft202012Validator(
        {"$ref": f"{DOC_URI}{pointer}"}, registry=registry, format_checker=FormatChecker()
    )


def media_objects(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every request and answer media object, with the JSON pointer of its ``schema``."""
    for method, path, op in operations(doc):
        base = f"#/paths/{escape(path)}/{method}"
        for media_type, media in op.get("requestBody", {}).get("content", {}).items():
            yield f"{base}/requestBody/content/{escape(media_type)}/schema", media
        for status, answer in op["responses"].items():
            for media_type, media in answer.get("content", {}).items():
                yield f"{base}/responses/{status}/content/{escape(media_type)}/schema", media


def test_every_example_is_valid_against_its_schema(doc: dict[str, Any]) -> None:
    checked = 0
    for pointer, media in media_objects(doc):
        validator = _validator(doc, pointer)
        for example in examples_of(media):
            errors = [e.message for e in validator.iter_errors(example)]
            assert not errors, f"{pointer}: {errors}"
            checked += 1
            if pointer.endswith("/text~1event-stream/schema"):  # data: JSON of its own schema
                data = _validator(doc, f"{pointer}/properties/data/contentSchema")
                data.validate(json.loads(example["data"]))
                checked += 1
    assert checked > 50


def test_the_example_check_sees_a_time_that_is_not_one(doc: dict[str, Any]) -> None:
    """The check above would pass vacuously if formats went unchecked."""
    pointer = "#/paths/~1v1~1leases~1{key}/get/responses/200/content/application~1json/schema"
    good = examples_of(resolve(doc, pointer.rsplit("/", 1)[0]))[0]
    validator = _validator(doc, pointer)
    validator.validate(good)
    with pytest.raises(ValidationError, match="date-time"):
        validator.validate({**good, "expires_at": "27/11/2026 09:21"})
