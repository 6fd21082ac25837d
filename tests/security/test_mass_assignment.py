"""RELIABILITY S3: nobody sets a field they should not by adding it to a request body.

Generated from the app's own /openapi.json: every native operation (under /api/v1/) that takes a JSON body gets,
as an administrator, a body that would be accepted but for one added protected field (`account_id`, `status`,
`role`, `created_by`, `lease_token`, ...). Each answer must be a 400 whose `detail` names that field, and nothing
may have changed: the counts of runs, users, tokens, channels and rules are the same afterwards. A field a body
declares on purpose (a new user's `role`) is the authorization matrix's business, not this test's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.factories import sleep_task
from tests.integration.rest_harness import RestStack, rest_stack

PROTECTED = ("account_id", "account", "status", "role", "created_by", "lease_token", "id", "is_admin")
COUNTED = (
    "/api/v1/runs",
    "/api/v1/users",
    "/api/v1/tokens",
    "/api/v1/notifications/channels",
    "/api/v1/notifications/rules",
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestStack]:
    home = tmp_path_factory.mktemp("mass-assignment")
    with rest_stack(home, f"sqlite:///{home / 'runyard.db'}") as started:
        yield started


def _resolve(schema: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    """The object schema behind references and an optional body's `anyOf: [<body>, null]`."""
    while True:
        if "$ref" in schema:
            schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
            continue
        choices = [choice for choice in schema.get("anyOf", []) if choice.get("type") != "null"]
        if len(choices) == 1:
            schema = choices[0]
            continue
        return schema


def _example(schema: dict[str, Any], document: dict[str, Any]) -> Any:
    """A value the schema accepts, as small as possible."""
    schema = _resolve(schema, document)
    for choice in schema.get("anyOf", []) + schema.get("oneOf", []):
        if choice.get("type") != "null":
            return _example(choice, document)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return {
            name: _example(prop, document)
            for name, prop in schema.get("properties", {}).items()
            if name in schema.get("required", [])
        }
    examples: dict[str, Any] = {
        "string": "x" * max(1, int(schema.get("minLength", 1))),
        "integer": max(1, int(schema.get("minimum", 1))),
        "number": max(1, schema.get("minimum", 1)),
        "boolean": True,
        "array": [],
    }
    return examples.get(str(kind), "x")


def _body_operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for path, methods in document["paths"].items():
        if not path.startswith("/api/v1/"):
            continue
        for method, operation in methods.items():
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                found.append((method.upper(), path, _resolve(content["application/json"]["schema"], document)))
    return found


def _counts(admin: httpx.Client) -> dict[str, int]:
    counts = {}
    for path in COUNTED:
        answer = admin.get(path)
        assert answer.status_code == 200, (path, answer.text)
        body = answer.json()
        counts[path] = body["total"] if isinstance(body, dict) and "total" in body else len(body)
    return counts


def test_no_native_body_takes_a_protected_field_it_does_not_declare(stack: RestStack) -> None:
    admin = stack.as_user("default", "administrator")
    operation_id = stack.deploy("mass-assignment", [sleep_task("only", 0.01)])
    document = admin.get("/openapi.json").json()
    operations = _body_operations(document)
    assert len(operations) >= 6, [f"{m} {p}" for m, p, _ in operations]  # launch, status, login, users, channels...
    before = _counts(admin)
    tried = 0
    for method, path, schema in operations:
        assert schema.get("additionalProperties") is False, f"{method} {path} does not forbid unknown fields"
        url = re.sub(r"\{(\w+)\}", lambda m: str(operation_id) if m[1] == "operation_id" else "999999", path)
        for field in PROTECTED:
            if field in schema.get("properties", {}):
                continue
            body = _example(schema, document) | {field: 1 if field.endswith("id") else "administrator"}
            answer = admin.request(method, url, json=body)
            assert answer.status_code == 400, (method, path, field, answer.status_code, answer.text)
            detail = answer.json()["detail"]
            assert f"{field}: Extra inputs are not permitted" in detail, (method, path, detail)
            tried += 1
    assert tried >= 6 * 5, tried
    assert _counts(admin) == before
