"""The api-to-table operation spec: an HTTP API extracted into warehouse tables.

A data admin writes the spec in YAML; the loader calls ``ApiToTableSpec.model_validate(mapping)``
and turns each pydantic error's ``loc`` into "file, line, field". So every model forbids unknown
keys, and validators raise ``PydanticCustomError`` with a one-line message meant for a person.

Secrets never appear in a spec: fields ending in ``_env`` name environment variables, read at run
time with :func:`resolve_secret`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Annotated, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from runyard.errors import ConfigError
from runyard.operations.spec import ENV_VAR_NAME, OperationBase, invalid

__all__ = [
    "ApiKeyAuth",
    "ApiToTableOperation",
    "ApiToTableSpec",
    "AuthSpec",
    "BasicAuth",
    "BearerAuth",
    "CursorPagination",
    "DateWindowSlicing",
    "EndpointSpec",
    "IncrementalSpec",
    "LinkHeaderPagination",
    "NextUrlPagination",
    "NoAuth",
    "NoPagination",
    "OffsetPagination",
    "PageNumberPagination",
    "PageSlicing",
    "PaginationSpec",
    "RateLimitSpec",
    "SlicingSpec",
    "field_path",
    "resolve_secret",
]

_ENDPOINT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
# Headers that carry credentials: their values would put a secret in the spec.
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization"})


def _env_name(value: str) -> str:
    if not ENV_VAR_NAME.fullmatch(value):
        raise invalid(
            f"{value!r} is not an environment variable name (letters, digits and underscores, "
            "e.g. API_TOKEN); put the secret in that variable, never in the spec"
        )
    return value


def _dotted_path(value: str) -> str:
    if not value or any(not part.strip() or part != part.strip() for part in value.split(".")):
        raise invalid(f"{value!r} is not a dotted path like 'next_cursor' or 'meta.total'")
    return value


def _scalar_to_str(value: object) -> object:
    """YAML turns `2024-01-01`, `2` and `yes` into date/int/bool; headers and cursors want text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | date):
        return value.isoformat() if isinstance(value, date) else str(value)
    return value


EnvName = Annotated[str, AfterValidator(_env_name)]
DottedPath = Annotated[str, AfterValidator(_dotted_path)]
ParamName = Annotated[str, Field(min_length=1)]
ParamValue = str | int | float | bool


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _tags(models: object, field: str) -> tuple[str, ...]:
    """The Literal discriminator values of a union of models, in declaration order."""
    return tuple(get_args(m.model_fields[field].annotation)[0] for m in get_args(models))


def _check_tag(value: object, *, field: str, allowed: tuple[str, ...], what: str) -> object:
    """Name the discriminator and the allowed values when a tag is missing or unknown.

    Pydantic's own union message works but reads like a parser trace; this is for a data admin.
    """
    if not isinstance(value, Mapping):
        return value
    choices = ", ".join(allowed)
    if field not in value:
        raise invalid(f"{what} needs a '{field}': one of {choices}")
    if value[field] not in allowed:
        raise invalid(f"unknown {what} {field} {value[field]!r}; allowed {field}s: {choices}")
    return value


# --- auth -----------------------------------------------------------------------------------------


class NoAuth(_Model):
    type: Literal["none"] = "none"


class BearerAuth(_Model):
    type: Literal["bearer"]
    token_env: EnvName = Field(description="Environment variable holding the bearer token.")


class ApiKeyAuth(_Model):
    # Stored as written (`in`, its alias), so the deployed configuration validates again when a task runs; a
    # configuration stored before that (with `location`) still does.
    model_config = ConfigDict(extra="forbid", frozen=True, serialize_by_alias=True, validate_by_name=True)

    type: Literal["api_key"]
    name: str = Field(min_length=1, description="Header or query parameter name, e.g. X-Api-Key.")
    location: Literal["header", "query"] = Field(alias="in", description="Where the key is sent.")
    value_env: EnvName = Field(description="Environment variable holding the key.")


class BasicAuth(_Model):
    type: Literal["basic"]
    username: str | None = Field(default=None, min_length=1)
    username_env: EnvName | None = None
    password_env: EnvName = Field(description="Environment variable holding the password.")

    @model_validator(mode="after")
    def _one_username(self) -> BasicAuth:
        if (self.username is None) == (self.username_env is None):
            raise invalid("basic auth needs exactly one of username or username_env")
        return self


AuthSpec = NoAuth | BearerAuth | ApiKeyAuth | BasicAuth
_AUTH_TYPES = _tags(AuthSpec, "type")


class RateLimitSpec(_Model):
    requests_per_second: float = Field(gt=0)


# --- pagination -----------------------------------------------------------------------------------


class CursorPagination(_Model):
    """The body carries the cursor of the next page; send it back as a query parameter."""

    style: Literal["cursor"]
    cursor_param: ParamName = "cursor"
    cursor_path: DottedPath = Field(default="next_cursor", description="Where the body holds the cursor.")
    limit_param: ParamName | None = "limit"
    limit: int = Field(default=100, ge=1)

    def request_params(self) -> tuple[str, ...]:
        """Query parameters this pagination sets (they must not also be in endpoint params)."""
        return (self.cursor_param,) + ((self.limit_param,) if self.limit_param else ())


class _FirstPageLimit(_Model):
    """A page size sent on the first request only: later pages follow URLs given by the API."""

    limit_param: ParamName | None = None
    limit: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _both_or_neither(self) -> _FirstPageLimit:
        if (self.limit_param is None) != (self.limit is None):
            raise invalid("set both limit_param and limit, or neither")
        return self

    def request_params(self) -> tuple[str, ...]:
        """Query parameters this pagination sets (they must not also be in endpoint params)."""
        return (self.limit_param,) if self.limit_param else ()


class NextUrlPagination(_FirstPageLimit):
    """The body carries the full URL of the next page."""

    style: Literal["next_url"]
    next_url_path: DottedPath = "next"


class LinkHeaderPagination(_FirstPageLimit):
    """The `Link` response header carries the next page's URL (rel="next"), as GitHub does."""

    style: Literal["link_header"]


class PageNumberPagination(_Model):
    style: Literal["page_number"]
    page_param: ParamName = "page"
    size_param: ParamName | None = "page_size"
    page_size: int = Field(default=100, ge=1)
    start_page: int = Field(default=1, ge=0, description="Number of the first page (0 or 1).")
    total_pages_path: DottedPath | None = Field(default=None, description="Where the body holds the count.")

    def request_params(self) -> tuple[str, ...]:
        """Query parameters this pagination sets (they must not also be in endpoint params)."""
        return (self.page_param,) + ((self.size_param,) if self.size_param else ())


class OffsetPagination(_Model):
    style: Literal["offset"]
    offset_param: ParamName = "offset"
    limit_param: ParamName = "limit"
    limit: int = Field(default=100, ge=1)
    total_path: DottedPath | None = Field(default=None, description="Where the body holds the record count.")

    def request_params(self) -> tuple[str, ...]:
        """Query parameters this pagination sets (they must not also be in endpoint params)."""
        return (self.offset_param, self.limit_param)


class NoPagination(_Model):
    style: Literal["none"] = "none"

    def request_params(self) -> tuple[str, ...]:
        """Query parameters this pagination sets: none."""
        return ()


PaginationSpec = (
    CursorPagination | NextUrlPagination | LinkHeaderPagination | PageNumberPagination | OffsetPagination | NoPagination
)
_PAGINATION_STYLES = _tags(PaginationSpec, "style")


# --- incremental and slicing ----------------------------------------------------------------------


class IncrementalSpec(_Model):
    cursor_field: DottedPath = Field(description="Record field whose highest value is kept, e.g. updated_at.")
    param: ParamName = Field(description="Request parameter that receives it, e.g. updated_since.")
    initial_value: str | None = Field(default=None, description="Sent on the first run; omit to fetch all.")

    @field_validator("initial_value", mode="before")
    @classmethod
    def _yaml_scalars(cls, value: object) -> object:
        return _scalar_to_str(value)


class PageSlicing(_Model):
    """Split the pages into contiguous ranges fetched in parallel (needs a known page count)."""

    by: Literal["pages"]
    slices: int = Field(ge=2)


class DateWindowSlicing(_Model):
    """Fetch one request series per date window, passing the window bounds as parameters."""

    by: Literal["date_window"]
    param_from: ParamName
    param_to: ParamName
    start: date
    end: date | Literal["today"] = "today"
    window_days: int = Field(ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> DateWindowSlicing:
        if isinstance(self.end, date) and self.end < self.start:
            raise invalid(f"end {self.end.isoformat()} is before start {self.start.isoformat()}")
        if self.param_from == self.param_to:
            raise invalid("param_from and param_to must differ")
        return self

    def resolved_end(self, today: date) -> date:
        """The last day covered, with "today" taken as ``today``."""
        return today if self.end == "today" else self.end

    def request_params(self) -> tuple[str, ...]:
        """Query parameters this slicing sets (they must not also be in endpoint params)."""
        return (self.param_from, self.param_to)


SlicingSpec = PageSlicing | DateWindowSlicing
_SLICING_KINDS = _tags(SlicingSpec, "by")


# --- endpoint and spec ----------------------------------------------------------------------------


class EndpointSpec(_Model):
    """One API endpoint, extracted into one table named after it."""

    name: str = Field(max_length=63, description="Table name: letters, digits, underscore, dash.")
    path: str = Field(description="Path under base_url, starting with '/'.")
    params: dict[str, ParamValue] = Field(default_factory=dict)
    records: DottedPath | None = Field(
        default=None, description="Dotted path to the list of records; omit when the body is the list."
    )
    pagination: Annotated[PaginationSpec, Field(discriminator="style")] = NoPagination()
    primary_key: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    incremental: IncrementalSpec | None = None
    slicing: Annotated[SlicingSpec, Field(discriminator="by")] | None = None
    required: bool = Field(
        default=True, description="When false, a failure makes the run Completed with Errors, not Failed."
    )
    max_pages: int | None = Field(default=None, ge=1, description="Safety cap on pages fetched.")
    mode: Literal["batch", "stream"] = Field(
        default="batch",
        description="batch: each run extracts once and loads. stream: one long task polls the incremental "
        "endpoint every poll_seconds and loads each micro-batch with its watermark, until the run is canceled.",
    )
    poll_seconds: float | None = Field(
        default=None, gt=0, le=86_400, description="mode: stream only: seconds between polls (default 5)."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _ENDPOINT_NAME.fullmatch(value):
            raise invalid(
                f"{value!r} is not a valid endpoint name: start with a letter, then letters, digits, "
                "'_' or '-' (it becomes the table name)"
            )
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or value.startswith("//"):
            raise invalid(f"{value!r} must be a path under base_url starting with '/', e.g. /v1/users")
        if "?" in value or "#" in value:
            raise invalid(f"{value!r} has a query or fragment; put query parameters under params")
        return value

    @field_validator("params", mode="before")
    @classmethod
    def _param_dates(cls, value: object) -> object:
        if isinstance(value, Mapping):
            return {k: v.isoformat() if isinstance(v, date) else v for k, v in value.items()}
        return value

    @field_validator("records", mode="before")
    @classmethod
    def _empty_records(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("primary_key", mode="before")
    @classmethod
    def _wrap_key(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("pagination", mode="before")
    @classmethod
    def _pagination_style(cls, value: object) -> object:
        return _check_tag(value, field="style", allowed=_PAGINATION_STYLES, what="pagination")

    @field_validator("slicing", mode="before")
    @classmethod
    def _slicing_kind(cls, value: object) -> object:
        return _check_tag(value, field="by", allowed=_SLICING_KINDS, what="slicing")

    @field_validator("slicing")
    @classmethod
    def _pages_need_total(cls, value: SlicingSpec | None, info: ValidationInfo) -> SlicingSpec | None:
        pagination = info.data.get("pagination")  # absent when pagination itself was invalid
        if isinstance(value, PageSlicing) and pagination is not None and not _has_total(pagination):
            raise invalid(
                "slicing by pages needs the page count up front: use page_number pagination with "
                f"total_pages_path, or offset pagination with total_path (this endpoint: {pagination.style})"
            )
        return value

    @model_validator(mode="after")
    def _stream_needs_a_watermark(self) -> EndpointSpec:
        if self.mode == "batch":
            if self.poll_seconds is not None:
                raise invalid("poll_seconds applies to mode: stream only; remove it or set mode: stream")
            return self
        if self.incremental is None:
            raise invalid(
                "mode: stream needs incremental (cursor_field and param): each poll asks for the records after "
                "the watermark of the last micro-batch"
            )
        if self.slicing is not None:
            raise invalid("mode: stream cannot be sliced; remove slicing")
        return self

    @model_validator(mode="after")
    def _params_set_once(self) -> EndpointSpec:
        owners: dict[str, str] = dict.fromkeys(self.params, "params")
        generated = [("pagination", p) for p in self.pagination.request_params()]
        if self.incremental is not None:
            generated.append(("incremental", self.incremental.param))
        if isinstance(self.slicing, DateWindowSlicing):
            generated += [("slicing", p) for p in self.slicing.request_params()]
        for owner, param in generated:
            if param in owners:
                raise invalid(
                    f"query parameter {param!r} is set by both {owners[param]} and {owner}; remove it from one of them"
                )
            owners[param] = owner
        return self

    def query_params(self) -> dict[str, str]:
        """The fixed query parameters as text (booleans as ``true``/``false``)."""
        return {key: str(_scalar_to_str(value)) for key, value in self.params.items()}


def _has_total(pagination: PaginationSpec) -> bool:
    if isinstance(pagination, PageNumberPagination):
        return pagination.total_pages_path is not None
    if isinstance(pagination, OffsetPagination):
        return pagination.total_path is not None
    return False


class ApiToTableSpec(_Model):
    """An HTTP API and the endpoints to extract from it, one table per endpoint."""

    # Defaulted to "" only so that a missing base_url reaches the validator and gets a message
    # that says what is expected; "" itself is rejected there.
    base_url: str = Field(default="", validate_default=True, description="Root URL of the API.")
    auth: Annotated[AuthSpec, Field(discriminator="type")] = NoAuth()
    headers: dict[str, str] = Field(default_factory=dict, description="Sent with every request.")
    rate_limit: RateLimitSpec | None = None
    timeout_seconds: float = Field(default=30, gt=0)
    request_deadline_seconds: float = Field(
        default=300,
        gt=0,
        description="The whole of one page (connect, headers, body) must arrive within this; timeout_seconds is "
        "per read, which a source sending a byte at a time never exceeds. A page past it is retried.",
    )
    max_retries: int = Field(default=5, ge=0)
    endpoints: list[EndpointSpec] = Field(min_length=1)

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        if not value:
            raise invalid("base_url is required: the root URL of the API, e.g. https://api.example.com/v1")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise invalid(f"base_url {value!r} must be an http:// or https:// URL with a host")
        if parts.query or parts.fragment:
            raise invalid(f"base_url {value!r} has a query or fragment; put parameters under params")
        return value.rstrip("/")

    @field_validator("auth", mode="before")
    @classmethod
    def _auth_type(cls, value: object) -> object:
        return _check_tag(value, field="type", allowed=_AUTH_TYPES, what="auth")

    @field_validator("headers", mode="before")
    @classmethod
    def _header_values(cls, value: object) -> object:
        if isinstance(value, Mapping):
            return {k: _scalar_to_str(v) for k, v in value.items()}
        return value

    @field_validator("headers")
    @classmethod
    def _no_secret_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name.lower() in _SECRET_HEADERS:
                raise invalid(
                    f"header {name!r} would put a secret in the spec; use auth (bearer, api_key or "
                    "basic), which reads the secret from an environment variable"
                )
        return value

    @field_validator("endpoints")
    @classmethod
    def _unique_names(cls, value: list[EndpointSpec]) -> list[EndpointSpec]:
        seen: dict[str, str] = {}
        for endpoint in value:
            # Case-insensitive: most warehouses fold unquoted table names.
            key = endpoint.name.lower()
            if key in seen:
                raise invalid(
                    f"endpoint name {endpoint.name!r} is used twice (as {seen[key]!r} too); "
                    "names must be unique because each becomes a table"
                )
            seen[key] = endpoint.name
        return value

    def url_for(self, endpoint: EndpointSpec) -> str:
        """The absolute URL of an endpoint's first page (without query parameters)."""
        return self.base_url + endpoint.path


class ApiToTableOperation(OperationBase, ApiToTableSpec):
    """An HTTP API extracted into warehouse tables, one table per endpoint (spec 000)."""

    configuration_type: Literal["api-to-table"]


_TAGGED_FIELDS: dict[str, tuple[str, ...]] = {
    "auth": _AUTH_TYPES,
    "pagination": _PAGINATION_STYLES,
    "slicing": _SLICING_KINDS,
}


def field_path(loc: Sequence[int | str]) -> tuple[int | str, ...]:
    """A pydantic error ``loc`` as the path of keys in the spec document.

    Pydantic puts the tag of a discriminated union into the loc, e.g.
    ``('endpoints', 0, 'pagination', 'cursor', 'limit')``; the document has no ``cursor`` key there.
    """
    path: list[int | str] = []
    for part in loc:
        previous = path[-1] if path else None
        if isinstance(previous, str) and part in _TAGGED_FIELDS.get(previous, ()):
            continue
        path.append(part)
    return tuple(path)


def resolve_secret(env_name: str, environ: Mapping[str, str]) -> str:
    """Read a secret from the environment variable ``env_name``.

    Raises ConfigError naming the variable (never a value) when it is unset or empty.
    """
    value = environ.get(env_name)
    if value is None:
        raise ConfigError(f"environment variable {env_name} is not set; it must hold the secret")
    if not value:
        raise ConfigError(f"environment variable {env_name} is set but empty; it must hold the secret")
    return value
