"""Fuzzing: schemathesis drives every operation of ``openapi.yaml`` against a real
service (file backend, tokens configured) with valid and invalid input.

Each response must not be a 5xx, must use a status the document lists for the
operation, and must match the documented schema and content type; invalid
input must be refused. The fuzzer holds a write token scoped to ``fz-``: most
generated keys are moved into that prefix so the requests reach the lease
rules, and some are pointed at seeded keys under ``vault.`` with the real
holder and fencing token in the body, which only the token's scope keeps out.
Those records must never change.

Generated values are only rewritten where they were generated valid (a
valid key, a well-formed Authorization header, a body's ttl moved into the
default 0.5-3600 range so requests reach the rules); invalid ones stay as
generated and must be refused. Cases with undeclared query parameters are left
out: the service ignores unknown query parameters, as most HTTP APIs do.

``LEADERELECTION_FUZZ_EXAMPLES`` (default 30) sets the examples per
operation; ``LEADERELECTION_FUZZ_RANDOM=1`` draws new examples each run
(the default is a fixed, derandomized draw, so CI is repeatable).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from leaderelection_service.records import valid_key
from support.procs import REPO, ServiceProcess
from support.tokens import TokenSet

EXAMPLES = int(os.environ.get("LEADERELECTION_FUZZ_EXAMPLES", "30"))
SCOPE = "fz-"
VAULT = {"vault.held": "keeper", "vault.released": "keeper", "vault.other": "keeper-2"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
    negative_data_rejection,
]

schema = schemathesis.openapi.from_path(REPO / "openapi.yaml")
# A body over max_body_bytes (a drawn value far past its maxLength can make one) is
# refused 413 before it is parsed, as openapi.yaml declares; count that as rejected.
_rejection = schema.config.checks.negative_data_rejection
_rejection.expected_statuses = [*_rejection.expected_statuses, "413"]
TOKENS = {"admin": secrets.token_urlsafe(32), "fuzzer": secrets.token_urlsafe(32)}
"""The fuzz service's tokens (the hooks sign with the fuzzer's)."""
SEEN: Counter[tuple[str, int]] = Counter()
"""(operation, status) of every fuzzed request, for the figures."""


class Vault:
    """The seeded records the fuzzer may not touch, as first read back."""

    def __init__(self, svc: ServiceProcess, tokens: TokenSet) -> None:
        self.http = httpx.Client(base_url=svc.url, headers=tokens.header("admin"), timeout=10)
        self.records: dict[str, dict[str, Any]] = {}
        for key, holder in VAULT.items():
            r = self.http.post(f"/v1/leases/{key}/acquire", json={"holder": holder, "ttl": 3600})
            assert r.status_code == 200, r.text
            if key == "vault.released":
                body = {"holder": holder, "fencing_token": r.json()["fencing_token"]}
                assert self.http.post(f"/v1/leases/{key}/release", json=body).status_code == 200
        for key in VAULT:
            self.records[key] = self.read(key)

    def read(self, key: str) -> dict[str, Any]:
        r = self.http.get(f"/v1/leases/{key}")
        assert r.status_code == 200, r.text
        return {k: v for k, v in r.json().items() if k != "server_time"}

    def assert_unchanged(self, key: str | None = None) -> None:
        for k in [key] if key else VAULT:
            assert self.read(k) == self.records[k], f"{k} changed"


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, TokenSet, Vault]]:
    root = tmp_path_factory.mktemp("fuzz")
    (root / "data").mkdir()
    tokens = TokenSet(root / "tokens.json", TOKENS)
    tokens.path.write_text(
        json.dumps(
            [
                {"token": TOKENS["admin"], "role": "write"},
                {"token": TOKENS["fuzzer"], "role": "write", "prefix": SCOPE},
            ]
        )
    )
    svc = ServiceProcess(
        (root / "data").as_uri(),
        extra_args=("--auth-file", str(tokens.path)),
        log_path=root / "service.log",
    )
    with svc:
        vault = Vault(svc, tokens)
        yield svc.url, tokens, vault
        vault.http.close()


def _pick(key: str) -> int:
    return hashlib.sha256(key.encode()).digest()[0]


def _positive(case: Case, location: ParameterLocation) -> bool:
    info = case.meta.components.get(location) if case.meta else None
    return info is None or info.mode is GenerationMode.POSITIVE


@schema.hook
def filter_case(context: Any, case: Case) -> bool:
    """Unknown query parameters are ignored by the service (as by most HTTP APIs)."""
    declared = {p.name for p in context.operation.query}
    return set(case.query or {}) <= declared


@schema.hook
def map_case(context: Any, case: Case) -> Case:
    """Sign with the fuzzer's token; move keys into its scope or onto a vault key.

    Only what was generated valid is rewritten, so an invalid key or a missing
    or malformed Authorization header stays as generated and must be refused.
    """
    headers = case.headers or {}
    if _positive(case, ParameterLocation.HEADER) and "Authorization" in headers:
        case.headers = {**headers, "Authorization": f"Bearer {TOKENS['fuzzer']}"}
    body = case.body
    if _positive(case, ParameterLocation.BODY) and isinstance(body, dict):
        ttl = body.get("ttl")
        if isinstance(ttl, float) and math.isfinite(ttl):  # into the service's default range
            case.body = {**body, "ttl": round(0.5 + abs(ttl) % 3599, 3)}
    key = (case.path_parameters or {}).get("key")
    if not isinstance(key, str) or not valid_key(key):
        return case
    n = _pick(key)
    if n % 4 == 0:
        target = sorted(VAULT)[n % len(VAULT)]
        case.path_parameters = {**case.path_parameters, "key": target}
        if isinstance(case.body, dict) and "holder" in case.body:
            case.body = {**case.body, "holder": VAULT[target]}
    else:
        case.path_parameters = {**case.path_parameters, "key": (SCOPE + key)[:128]}
    return case


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("LEADERELECTION_FUZZ_RANDOM") is None,
    suppress_health_check=list(HealthCheck),
)
def test_fuzz_every_operation(case: Case, fuzz_target: tuple[str, TokenSet, Vault]) -> None:
    url, tokens, vault = fuzz_target
    response = case.call_and_validate(base_url=url, headers=tokens.header("fuzzer"), checks=CHECKS)
    SEEN[(f"{case.method} {case.path}", response.status_code)] += 1
    key = (case.path_parameters or {}).get("key")
    if key in VAULT:
        vault.assert_unchanged(key)


def test_vault_untouched_after_fuzzing(fuzz_target: tuple[str, TokenSet, Vault]) -> None:
    fuzz_target[2].assert_unchanged()


def test_fuzzing_reached_the_rules_and_the_scope() -> None:
    """The fuzzed acquires were granted (200), kept out by the scope (403) and refused
    as invalid (422); run with test_fuzz_every_operation (alone this fails: nothing fuzzed)."""
    print("fuzzed (operation, status): count", *sorted(SEEN.items()), sep="\n  ")
    statuses = {status for (op, status) in SEEN if op.endswith("/acquire")}
    assert {200, 403, 422} <= statuses, SEEN or "nothing was fuzzed in this run"


def test_vault_is_protected_by_scope_alone(fuzz_target: tuple[str, TokenSet, Vault]) -> None:
    """The fuzzer's vault requests carry the right holder: only the scope stops them."""
    url, tokens, vault = fuzz_target
    rec = vault.records["vault.held"]
    body = {"holder": "keeper", "fencing_token": rec["fencing_token"]}
    with httpx.Client(base_url=url, headers=tokens.header("fuzzer")) as fuzzer:
        refused = fuzzer.post("/v1/leases/vault.held/release", json=body)
        assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
        # the same token writes inside its own prefix: the 403 above was the scope's
        own = fuzzer.post(f"/v1/leases/{SCOPE}scope-check/acquire", json={"holder": "k", "ttl": 5})
        assert own.status_code == 200, own.text
        mine = {"holder": "k", "fencing_token": own.json()["fencing_token"]}
        assert fuzzer.post(f"/v1/leases/{SCOPE}scope-check/release", json=mine).status_code == 200
    vault.assert_unchanged("vault.held")


def test_undecodable_body_is_invalid_request(fuzz_target: tuple[str, TokenSet, Vault]) -> None:
    """Found by fuzzing: a body that is not UTF-8 was a bare 400, outside the contract."""
    url, tokens, _ = fuzz_target
    r = httpx.post(
        f"{url}/v1/leases/{SCOPE}k/acquire",
        content=b"\xff\xfe\x1b%l",
        headers={**tokens.header("fuzzer"), "Content-Type": "application/json"},
    )
    assert r.status_code == 422
    assert r.json() == {
        "error": "invalid_request",
        "message": "body: malformed JSON",
        "lease": None,
    }
