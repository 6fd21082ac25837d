"""Paginators: pure state machines that decide which page to request next.

In the style of dlt's ``rest_client/paginators.py``: the extractor owns the HTTP loop and feeds each
response to the paginator; nothing here does I/O. The loop looks like::

    paginator = make_paginator(endpoint.pagination)
    request = paginator.first_request(endpoint.query_params())
    while True:
        body, headers = fetch(request)          # request.url, if set, replaces base_url + path
        records = select_records(body, endpoint.records)
        paginator.update(body, headers, len(records))
        if not paginator.has_next():
            break
        request = paginator.next_request()

Page ranges (for slicing by pages) count pages from 1, whatever the API's ``start_page``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Protocol

from runyard.errors import RunyardError
from runyard.operations.api_to_table.spec import (
    CursorPagination,
    LinkHeaderPagination,
    NextUrlPagination,
    NoPagination,
    OffsetPagination,
    PageNumberPagination,
    PaginationSpec,
)

__all__ = [
    "CursorPaginator",
    "LinkHeaderPaginator",
    "NextUrlPaginator",
    "OffsetPaginator",
    "PageNumberPaginator",
    "PageRequest",
    "PaginationError",
    "PaginationLoopError",
    "Paginator",
    "RecordSelectorError",
    "SinglePagePaginator",
    "make_paginator",
    "parse_link_header",
    "plan_date_windows",
    "plan_page_slices",
    "select_records",
    "total_pages",
]

PageRange = tuple[int, int]


class PaginationError(RunyardError):
    """A response does not carry pagination data the spec says it should."""


class PaginationLoopError(PaginationError):
    """The API handed back a cursor or next URL it had already given: following it would never end.

    ``request`` is the request that would read that page again (for the extractor to name it without secrets:
    ``value`` itself may carry an API key the source copied into its next links).
    """

    def __init__(self, kind: str, value: str, request: PageRequest | None = None) -> None:
        self.kind = kind
        self.value = value
        self.request = request
        super().__init__(
            f"pagination loop: the API returned the {kind} {value!r} a second time; stopping instead of "
            "fetching the same pages forever"
        )


class RecordSelectorError(RunyardError):
    """The record selector does not lead to a list of records in the response body."""

    def __init__(self, selector: str | None, message: str) -> None:
        self.selector = selector
        super().__init__(message)


@dataclass(frozen=True)
class PageRequest:
    """What to fetch next.

    ``url``: an absolute (or, if the API gives one, relative: resolve it against the URL of the page
    just fetched) URL to fetch instead of base_url + path; ``None`` means base_url + path.
    ``params``: the complete query parameters for this page (empty when ``url`` carries its own).
    """

    url: str | None
    params: Mapping[str, str] = field(default_factory=dict)


class Paginator(Protocol):
    def first_request(self, base_params: Mapping[str, str]) -> PageRequest:
        """The request for the first page, given the endpoint's fixed query parameters."""
        ...

    def update(self, body: object, headers: Mapping[str, str], record_count: int) -> None:
        """Take in the page just fetched: its parsed body, headers and number of records."""
        ...

    def has_next(self) -> bool:
        """Whether another page should be fetched."""
        ...

    def next_request(self) -> PageRequest:
        """The request for the next page; only valid while ``has_next()``."""
        ...


# --- body helpers ---------------------------------------------------------------------------------


def _describe(value: object) -> str:
    """What a JSON value is, in words, for error messages."""
    if isinstance(value, Mapping):
        keys = ", ".join(repr(str(key)) for key in list(value)[:10])
        return f"an object with keys [{keys}{', ...' if len(value) > 10 else ''}]"
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__}"


def _step(value: object, key: str) -> tuple[bool, object]:
    """One step of a dotted path: (found, child). Digits index into lists."""
    if isinstance(value, Mapping):
        return (key in value, value.get(key))
    if isinstance(value, list) and key.isdigit() and int(key) < len(value):
        return (True, value[int(key)])
    return (False, None)


def _lookup(body: object, path: str) -> object:
    """The value at a dotted path, or None when any step is missing."""
    value = body
    for key in path.split("."):
        found, value = _step(value, key)
        if not found:
            return None
    return value


def select_records(body: object, selector: str | None) -> list[object]:
    """The records of a page: the list at the dotted path ``selector``, or the body itself.

    ``null`` at the selector counts as no records. Raises RecordSelectorError saying what was found
    instead when the path is missing or does not end at a list.
    """
    value = body
    walked: list[str] = []
    for key in selector.split(".") if selector else ():
        found, child = _step(value, key)
        if not found:
            where = f"'{'.'.join(walked)}'" if walked else "the body"
            raise RecordSelectorError(
                selector, f"the selector {selector!r} matched nothing: {where} is {_describe(value)}"
            )
        walked.append(key)
        value = child
    if value is None and selector:
        return []
    if isinstance(value, list):
        return list(value)
    if selector:
        message = f"the selector {selector!r} leads to {_describe(value)}, not a list of records"
    else:
        message = f"the body is {_describe(value)}, not a list of records; set records to the path of the list"
    raise RecordSelectorError(selector, message)


def _as_token(value: object, kind: str, path: str) -> str | None:
    """A cursor or URL from the body as text; None when the API signals the end (null or empty)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise PaginationError(f"the {kind} at {path!r} is {_describe(value)}, expected a string")


def _as_count(value: object, path: str) -> int | None:
    """A total from the body as a whole number; None when it is absent."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    raise PaginationError(f"the total at {path!r} is {_describe(value)} ({value!r}), expected a whole number")


# --- paginators -----------------------------------------------------------------------------------


def _no_next() -> RuntimeError:
    return RuntimeError("next_request() called after the last page; check has_next() first")


class SinglePagePaginator:
    """No pagination: the first response is the only page."""

    def __init__(self) -> None:
        self._params: Mapping[str, str] = {}

    def first_request(self, base_params: Mapping[str, str]) -> PageRequest:
        self._params = dict(base_params)
        return PageRequest(url=None, params=self._params)

    def update(self, body: object, headers: Mapping[str, str], record_count: int) -> None:
        return None

    def has_next(self) -> bool:
        return False

    def next_request(self) -> PageRequest:
        raise _no_next()


class _TokenPaginator:
    """Shared by the styles where the API hands out the next token: stop on none, fail on a repeat."""

    kind = "token"

    def __init__(self, limit_param: str | None, limit: int | None) -> None:
        self._limit_params = {limit_param: str(limit)} if limit_param and limit else {}
        self._base: dict[str, str] = {}
        self._next: str | None = None
        self._seen: set[str] = set()

    def first_request(self, base_params: Mapping[str, str]) -> PageRequest:
        self._base = {**base_params, **self._limit_params}
        self._next = None
        self._seen.clear()
        return PageRequest(url=None, params=dict(self._base))

    def update(self, body: object, headers: Mapping[str, str], record_count: int) -> None:
        token = self._extract(body, headers)
        if token is not None and token in self._seen:
            raise PaginationLoopError(self.kind, token, self._request_for(token))
        if token is not None:
            self._seen.add(token)
        self._next = token

    def has_next(self) -> bool:
        return self._next is not None

    def next_request(self) -> PageRequest:
        if self._next is None:
            raise _no_next()
        return self._request_for(self._next)

    def _extract(self, body: object, headers: Mapping[str, str]) -> str | None:
        raise NotImplementedError

    def _request_for(self, token: str) -> PageRequest:
        """The request that reads the page ``token`` leads to."""
        raise NotImplementedError


class CursorPaginator(_TokenPaginator):
    """Sends back the cursor found at ``cursor_path``; stops when it is null, missing or empty."""

    kind = "cursor"

    def __init__(self, spec: CursorPagination) -> None:
        super().__init__(spec.limit_param, spec.limit)
        self._spec = spec

    def _extract(self, body: object, headers: Mapping[str, str]) -> str | None:
        return _as_token(_lookup(body, self._spec.cursor_path), "cursor", self._spec.cursor_path)

    def _request_for(self, token: str) -> PageRequest:
        return PageRequest(url=None, params={**self._base, self._spec.cursor_param: token})


class NextUrlPaginator(_TokenPaginator):
    """Follows the URL found at ``next_url_path``; stops when it is null or missing."""

    kind = "next URL"

    def __init__(self, spec: NextUrlPagination) -> None:
        super().__init__(spec.limit_param, spec.limit)
        self._path = spec.next_url_path

    def _extract(self, body: object, headers: Mapping[str, str]) -> str | None:
        return _as_token(_lookup(body, self._path), "next URL", self._path)

    def _request_for(self, token: str) -> PageRequest:
        # The API's URL already carries every query parameter it wants, limit included.
        return PageRequest(url=token, params={})


class LinkHeaderPaginator(_TokenPaginator):
    """Follows the ``Link`` header's rel="next" URL; stops when there is none."""

    kind = "next URL"

    def __init__(self, spec: LinkHeaderPagination) -> None:
        super().__init__(spec.limit_param, spec.limit)

    def _extract(self, body: object, headers: Mapping[str, str]) -> str | None:
        # Plain dicts are case-sensitive, unlike httpx.Headers.
        link = next((value for name, value in headers.items() if name.lower() == "link"), None)
        return parse_link_header(link).get("next") if link else None

    def _request_for(self, token: str) -> PageRequest:
        return PageRequest(url=token, params={})


class _CountedPaginator:
    """Shared by page_number and offset: walk page ordinals 1, 2, ... within an optional range."""

    def __init__(self, total_path: str | None, page_range: PageRange | None) -> None:
        first, last = page_range if page_range else (1, None)
        if first < 1 or (last is not None and last < first):
            raise ValueError(f"page range {page_range} must be (first, last) with 1 <= first <= last")
        self._total_path = total_path
        self._first = first
        self._last = last
        self._page = first
        self._base: dict[str, str] = {}
        self._done = False

    def first_request(self, base_params: Mapping[str, str]) -> PageRequest:
        self._base = dict(base_params)
        self._page = self._first
        self._done = False
        return self._request()

    def update(self, body: object, headers: Mapping[str, str], record_count: int) -> None:
        total = _as_count(_lookup(body, self._total_path), self._total_path) if self._total_path else None
        self._done = self._page_is_last(total, record_count) or (self._last is not None and self._page >= self._last)

    def has_next(self) -> bool:
        return not self._done

    def next_request(self) -> PageRequest:
        if self._done:
            raise _no_next()
        self._page += 1
        return self._request()

    def _page_is_last(self, total: int | None, record_count: int) -> bool:
        raise NotImplementedError

    def _request(self) -> PageRequest:
        raise NotImplementedError


class PageNumberPaginator(_CountedPaginator):
    """Sends page numbers; stops at the total page count (if known) or at an empty page."""

    def __init__(self, spec: PageNumberPagination, page_range: PageRange | None = None) -> None:
        super().__init__(spec.total_pages_path, page_range)
        self._spec = spec

    def _page_is_last(self, total: int | None, record_count: int) -> bool:
        return record_count == 0 or (total is not None and self._page >= total)

    def _request(self) -> PageRequest:
        spec = self._spec
        params = {**self._base, spec.page_param: str(spec.start_page + self._page - 1)}
        if spec.size_param:
            params[spec.size_param] = str(spec.page_size)
        return PageRequest(url=None, params=params)


class OffsetPaginator(_CountedPaginator):
    """Sends offsets; stops past the total record count (if known) or at a short page."""

    def __init__(self, spec: OffsetPagination, page_range: PageRange | None = None) -> None:
        super().__init__(spec.total_path, page_range)
        self._spec = spec

    def _offset(self) -> int:
        return (self._page - 1) * self._spec.limit

    def _page_is_last(self, total: int | None, record_count: int) -> bool:
        next_offset = self._offset() + self._spec.limit
        return record_count < self._spec.limit or (total is not None and next_offset >= total)

    def _request(self) -> PageRequest:
        spec = self._spec
        params = {**self._base, spec.offset_param: str(self._offset()), spec.limit_param: str(spec.limit)}
        return PageRequest(url=None, params=params)


def make_paginator(spec: PaginationSpec, page_range: PageRange | None = None) -> Paginator:
    """A fresh paginator for an endpoint's pagination spec.

    ``page_range=(first, last)`` (1-based, inclusive) walks only those pages; it is for slicing by
    pages and only page_number and offset pagination support it.
    """
    if isinstance(spec, PageNumberPagination):
        return PageNumberPaginator(spec, page_range)
    if isinstance(spec, OffsetPagination):
        return OffsetPaginator(spec, page_range)
    if page_range is not None:
        raise ValueError(f"{spec.style} pagination cannot walk a page range; only page_number and offset can")
    if isinstance(spec, CursorPagination):
        return CursorPaginator(spec)
    if isinstance(spec, NextUrlPagination):
        return NextUrlPaginator(spec)
    if isinstance(spec, LinkHeaderPagination):
        return LinkHeaderPaginator(spec)
    if isinstance(spec, NoPagination):
        return SinglePagePaginator()
    raise TypeError(f"unknown pagination spec {spec!r}")


def total_pages(spec: PageNumberPagination | OffsetPagination, body: object) -> int | None:
    """The number of pages announced by a page's body, or None when the spec or body has no total.

    For slicing by pages: fetch the first page, read the count here, then plan_page_slices.
    """
    if isinstance(spec, PageNumberPagination):
        path = spec.total_pages_path
        return _as_count(_lookup(body, path), path) if path else None
    if spec.total_path is None:
        return None
    records = _as_count(_lookup(body, spec.total_path), spec.total_path)
    return None if records is None else math.ceil(records / spec.limit)


# --- Link header ----------------------------------------------------------------------------------

_LINK = re.compile(r"<(?P<url>[^>]*)>(?P<params>[^<]*)")
_REL = re.compile(r"""\brel\s*=\s*(?:"(?P<quoted>[^"]*)"|(?P<bare>[^\s;,]+))""", re.IGNORECASE)


def parse_link_header(value: str) -> dict[str, str]:
    """Map each rel of an RFC 8288 ``Link`` header to its URL; the first link wins for a rel.

    ``<https://x/?page=2>; rel="next", <https://x/?page=9>; rel="last"`` gives
    ``{"next": "https://x/?page=2", "last": "https://x/?page=9"}``.
    """
    links: dict[str, str] = {}
    for match in _LINK.finditer(value):
        rel = _REL.search(match["params"])
        if rel is None:
            continue
        for name in (rel["quoted"] or rel["bare"] or "").lower().split():
            links.setdefault(name, match["url"].strip())
    return links


# --- slicing plans --------------------------------------------------------------------------------


def plan_page_slices(total_pages: int, slices: int) -> list[PageRange]:
    """Split pages 1..total_pages into at most ``slices`` contiguous ranges whose sizes differ by <= 1."""
    if slices < 1:
        raise ValueError(f"slices must be at least 1, got {slices}")
    count = min(slices, max(total_pages, 0))
    size, extra = divmod(max(total_pages, 0), count) if count else (0, 0)
    ranges: list[PageRange] = []
    first = 1
    for index in range(count):
        last = first + size - 1 + (1 if index < extra else 0)
        ranges.append((first, last))
        first = last + 1
    return ranges


def plan_date_windows(start: date, end: date, window_days: int) -> list[tuple[date, date]]:
    """Split start..end (both inclusive) into consecutive inclusive windows of ``window_days`` days.

    The last window is cut short at ``end``; no windows when end is before start.
    """
    if window_days < 1:
        raise ValueError(f"window_days must be at least 1, got {window_days}")
    windows: list[tuple[date, date]] = []
    step = timedelta(days=window_days)
    first = start
    while first <= end:
        last = min(first + step - timedelta(days=1), end)
        windows.append((first, last))
        first = last + timedelta(days=1)
    return windows
