"""The api-to-table spec: what a data admin may write, and what they are told when it is wrong."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from runyard.errors import ConfigError
from runyard.operations.api_to_table.spec import (
    ApiKeyAuth,
    ApiToTableSpec,
    BasicAuth,
    CursorPagination,
    DateWindowSlicing,
    NoAuth,
    NoPagination,
    OffsetPagination,
    PageNumberPagination,
    PageSlicing,
    field_path,
    resolve_secret,
)

FULL_SPEC = """
base_url: https://api.shop.test/v2/
auth: {type: api_key, name: X-Api-Key, in: header, value_env: SHOP_API_KEY}
headers: {Accept: application/json, X-Api-Version: 3}
rate_limit: {requests_per_second: 2.5}
timeout_seconds: 10
max_retries: 3
endpoints:
  - name: customers
    path: /customers
    params: {status: active, include_deleted: false, since: 2024-01-01}
    records: data
    pagination: {style: cursor, cursor_param: after, cursor_path: meta.next_cursor, limit: 50}
    primary_key: id
    incremental: {cursor_field: updated_at, param: updated_since, initial_value: 2024-01-01}
  - name: orders
    path: /orders
    records: payload.items
    pagination: {style: page_number, page_size: 200, total_pages_path: meta.pages}
    primary_key: [shop_id, order_id]
    slicing: {by: pages, slices: 4}
    max_pages: 1000
  - name: order-lines
    path: /order_lines
    pagination: {style: offset, total_path: total}
    slicing: {by: date_window, param_from: from, param_to: to, start: 2023-01-01, window_days: 30}
    required: false
  - name: products
    path: /products
    pagination: {style: link_header, limit_param: per_page, limit: 100}
  - name: reviews
    path: /reviews
    records: ""
    pagination: {style: next_url, next_url_path: links.next}
  - name: me
    path: /me
"""


def minimal(**endpoint: Any) -> dict[str, Any]:
    return {"base_url": "https://api.test", "endpoints": [{"name": "users", "path": "/users", **endpoint}]}


def errors_of(data: object) -> list[tuple[tuple[int | str, ...], str, str]]:
    """Each error as (document path, type, message)."""
    with pytest.raises(ValidationError) as caught:
        ApiToTableSpec.model_validate(data)
    return [(field_path(e["loc"]), e["type"], e["msg"]) for e in caught.value.errors()]


def only_error(data: object) -> tuple[tuple[int | str, ...], str, str]:
    errors = errors_of(data)
    assert len(errors) == 1, errors
    return errors[0]


# --- a valid spec ---------------------------------------------------------------------------------


def test_full_spec_loads() -> None:
    spec = ApiToTableSpec.model_validate(yaml.safe_load(FULL_SPEC))

    assert spec.base_url == "https://api.shop.test/v2"
    assert spec.auth == ApiKeyAuth.model_validate(
        {"type": "api_key", "name": "X-Api-Key", "in": "header", "value_env": "SHOP_API_KEY"}
    )
    assert isinstance(spec.auth, ApiKeyAuth)
    assert spec.auth.location == "header"
    assert spec.headers == {"Accept": "application/json", "X-Api-Version": "3"}
    assert spec.rate_limit is not None
    assert spec.rate_limit.requests_per_second == 2.5
    assert (spec.timeout_seconds, spec.max_retries) == (10, 3)

    customers, orders, lines, products, reviews, me = spec.endpoints
    assert customers.pagination == CursorPagination(
        style="cursor", cursor_param="after", cursor_path="meta.next_cursor", limit=50
    )
    assert customers.primary_key == ["id"]
    assert customers.query_params() == {"status": "active", "include_deleted": "false", "since": "2024-01-01"}
    assert customers.incremental is not None
    assert customers.incremental.initial_value == "2024-01-01"
    assert spec.url_for(customers) == "https://api.shop.test/v2/customers"

    assert isinstance(orders.pagination, PageNumberPagination)
    assert orders.pagination.start_page == 1
    assert orders.slicing == PageSlicing(by="pages", slices=4)
    assert orders.primary_key == ["shop_id", "order_id"]
    assert orders.max_pages == 1000

    assert isinstance(lines.slicing, DateWindowSlicing)
    assert lines.slicing.start == date(2023, 1, 1)
    assert lines.slicing.resolved_end(date(2024, 6, 1)) == date(2024, 6, 1)
    assert lines.required is False

    assert products.pagination.style == "link_header"
    assert reviews.records is None
    assert me.pagination == NoPagination()
    assert me.required is True


def test_defaults() -> None:
    spec = ApiToTableSpec.model_validate(minimal())
    assert spec.auth == NoAuth()
    assert (spec.timeout_seconds, spec.max_retries, spec.rate_limit) == (30, 5, None)
    assert spec.endpoints[0].pagination == NoPagination()
    assert spec.endpoints[0].primary_key == []


def test_specs_are_frozen() -> None:
    spec = ApiToTableSpec.model_validate(minimal())
    with pytest.raises(ValidationError, match="frozen"):
        spec.base_url = "https://elsewhere.test"  # type: ignore[misc]


@pytest.mark.parametrize(
    "auth",
    [
        {"type": "none"},
        {"type": "bearer", "token_env": "API_TOKEN"},
        {"type": "api_key", "name": "key", "in": "query", "value_env": "KEY"},
        {"type": "basic", "username": "etl", "password_env": "PW"},
        {"type": "basic", "username_env": "USER", "password_env": "PW"},
    ],
)
def test_each_auth_type_loads(auth: dict[str, str]) -> None:
    assert ApiToTableSpec.model_validate({**minimal(), "auth": auth}).auth.type == auth["type"]


# --- what a data admin is told --------------------------------------------------------------------


def test_missing_base_url_names_it() -> None:
    path, _, message = only_error({"endpoints": [{"name": "u", "path": "/u"}]})
    assert path == ("base_url",)
    assert "base_url is required" in message


@pytest.mark.parametrize("url", ["ftp://files.test", "api.test/v1", "https://", "https://a.test/?k=1"])
def test_base_url_must_be_http_or_https(url: str) -> None:
    path, _, message = only_error({**minimal(), "base_url": url})
    assert path == ("base_url",)
    assert url in message


def test_unknown_pagination_style_lists_the_allowed_ones() -> None:
    path, _, message = only_error(minimal(pagination={"style": "pages"}))
    assert path == ("endpoints", 0, "pagination")
    assert "unknown pagination style 'pages'" in message
    for style in ("cursor", "next_url", "link_header", "page_number", "offset", "none"):
        assert style in message


def test_missing_pagination_style_is_named() -> None:
    path, _, message = only_error(minimal(pagination={"limit": 10}))
    assert path == ("endpoints", 0, "pagination")
    assert "needs a 'style'" in message


def test_unknown_auth_type_lists_the_allowed_ones() -> None:
    path, _, message = only_error({**minimal(), "auth": {"type": "oauth"}})
    assert path == ("auth",)
    assert "'oauth'" in message
    assert "bearer" in message


@pytest.mark.parametrize("second", ["users", "Users"])
def test_duplicate_endpoint_names_are_rejected(second: str) -> None:
    data = minimal()
    data["endpoints"].append({"name": second, "path": "/v2/users"})
    path, _, message = only_error(data)
    assert path == ("endpoints",)
    assert f"{second!r} is used twice" in message


def test_no_endpoints_is_rejected() -> None:
    path, kind, _ = only_error({**minimal(), "endpoints": []})
    assert (path, kind) == (("endpoints",), "too_short")


@pytest.mark.parametrize(
    "pagination",
    [{"style": "cursor"}, {"style": "page_number"}, {"style": "offset"}, {"style": "none"}],
)
def test_page_slicing_needs_a_known_total(pagination: dict[str, str]) -> None:
    path, _, message = only_error(minimal(pagination=pagination, slicing={"by": "pages", "slices": 4}))
    assert path == ("endpoints", 0, "slicing")
    assert "total_pages_path" in message
    assert "total_path" in message
    assert pagination["style"] in message


def test_page_slicing_with_a_total_loads() -> None:
    spec = ApiToTableSpec.model_validate(
        minimal(pagination={"style": "offset", "total_path": "meta.total"}, slicing={"by": "pages", "slices": 2})
    )
    assert spec.endpoints[0].pagination == OffsetPagination(style="offset", total_path="meta.total")


@pytest.mark.parametrize(
    ("data", "expected_path"),
    [
        ({**minimal(), "base_ulr": "https://x.test"}, ("base_ulr",)),
        (minimal(pagniation={"style": "cursor"}), ("endpoints", 0, "pagniation")),
        (
            minimal(pagination={"style": "cursor", "cursor_field": "next"}),
            ("endpoints", 0, "pagination", "cursor_field"),
        ),
        (minimal(slicing={"by": "pages", "slices": 2, "size": 3}), ("endpoints", 0, "slicing", "size")),
        ({**minimal(), "auth": {"type": "bearer", "token_env": "T", "token": "abc"}}, ("auth", "token")),
        ({**minimal(), "rate_limit": {"rps": 3}}, ("rate_limit", "rps")),
    ],
)
def test_misspelled_fields_are_named(data: dict[str, Any], expected_path: tuple[int | str, ...]) -> None:
    assert expected_path in [path for path, kind, _ in errors_of(data) if kind == "extra_forbidden"]


def test_nested_errors_point_at_the_document_key() -> None:
    path, kind, _ = only_error(minimal(pagination={"style": "page_number", "page_size": 0}))
    assert (path, kind) == (("endpoints", 0, "pagination", "page_size"), "greater_than_equal")


@pytest.mark.parametrize("value", ["sk_live_abc-123", "my token", ""])
def test_env_fields_take_variable_names_not_secrets(value: str) -> None:
    path, _, message = only_error({**minimal(), "auth": {"type": "bearer", "token_env": value}})
    assert path == ("auth", "token_env")
    assert "environment variable name" in message


def test_authorization_header_is_rejected() -> None:
    path, _, message = only_error({**minimal(), "headers": {"authorization": "Bearer abc"}})
    assert path == ("headers",)
    assert "use auth" in message


@pytest.mark.parametrize("auth", [{"password_env": "PW"}, {"username": "u", "username_env": "U", "password_env": "PW"}])
def test_basic_auth_needs_exactly_one_username(auth: dict[str, str]) -> None:
    path, _, message = only_error({**minimal(), "auth": {"type": "basic", **auth}})
    assert path == ("auth",)
    assert "exactly one of username or username_env" in message


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("name", "users table", "not a valid endpoint name"),
        ("name", "1users", "not a valid endpoint name"),
        ("path", "users", "starting with '/'"),
        ("path", "https://other.test/users", "starting with '/'"),
        ("path", "/users?active=1", "put query parameters under params"),
        ("records", "data..items", "not a dotted path"),
    ],
)
def test_endpoint_fields_are_checked(field: str, value: str, expected: str) -> None:
    path, _, message = only_error(minimal(**{field: value}))
    assert path == ("endpoints", 0, field)
    assert expected in message


def test_a_param_set_twice_is_rejected() -> None:
    path, _, message = only_error(minimal(params={"page": 1}, pagination={"style": "page_number"}))
    assert path == ("endpoints", 0)
    assert "'page' is set by both params and pagination" in message


def test_date_window_must_end_after_it_starts() -> None:
    slicing = {
        "by": "date_window",
        "param_from": "a",
        "param_to": "b",
        "start": "2024-02-01",
        "end": "2024-01-01",
        "window_days": 7,
    }
    path, _, message = only_error(minimal(slicing=slicing))
    assert path == ("endpoints", 0, "slicing")
    assert "before start" in message


def test_limit_for_next_url_needs_both_fields() -> None:
    path, _, message = only_error(minimal(pagination={"style": "next_url", "limit": 10}))
    assert path == ("endpoints", 0, "pagination")
    assert "limit_param and limit" in message


def test_basic_auth_with_username_literal_loads() -> None:
    auth = BasicAuth.model_validate({"type": "basic", "username": "etl", "password_env": "PW"})
    assert auth.username == "etl"


# --- helpers --------------------------------------------------------------------------------------


def test_field_path_drops_union_tags_only() -> None:
    assert field_path(("endpoints", 0, "pagination", "cursor", "limit")) == (
        "endpoints",
        0,
        "pagination",
        "limit",
    )
    assert field_path(("auth", "api_key", "in")) == ("auth", "in")
    assert field_path(("endpoints", 1, "slicing", "date_window", "start")) == (
        "endpoints",
        1,
        "slicing",
        "start",
    )
    assert field_path(("endpoints", 0, "params", "cursor")) == ("endpoints", 0, "params", "cursor")


def test_resolve_secret_reads_the_variable() -> None:
    assert resolve_secret("API_TOKEN", {"API_TOKEN": "s3cret"}) == "s3cret"


@pytest.mark.parametrize("environ", [{}, {"API_TOKEN": ""}])
def test_resolve_secret_names_the_missing_variable(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="environment variable API_TOKEN is") as caught:
        resolve_secret("API_TOKEN", environ)
    assert "s3cret" not in str(caught.value)
