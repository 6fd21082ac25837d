"""A source whose next link or cursor leads back to a page already read: the walk stops, naming that page without
the secrets the source may have copied into its links.

The walk (`extract._Walk.pages`) runs against a scripted source (httpx.MockTransport): the API key travels in the
query, and the source, as many do, repeats it in every next link it hands out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from runyard.engine.context import TaskContext, TaskFailed
from runyard.operations.api_to_table.extract import CursorTracker, _Walk
from runyard.operations.api_to_table.http import SourceClient
from runyard.operations.api_to_table.paginators import (
    CursorPaginator,
    LinkHeaderPaginator,
    NextUrlPaginator,
    PageRequest,
    PaginationLoopError,
)
from runyard.operations.api_to_table.spec import (
    ApiToTableSpec,
    CursorPagination,
    LinkHeaderPagination,
    NextUrlPagination,
)

SECRET = "s3cret-key-in-links"
BASE = "https://api.example.com/v1"
Page = tuple[dict[str, Any] | list[Any], dict[str, str]]  # body, headers


# --- the paginators say which request would read the page again ------------------------------------


def test_a_repeated_cursor_names_the_request_that_would_read_its_page_again() -> None:
    paginator = CursorPaginator(CursorPagination(style="cursor", cursor_param="after", limit=5))
    paginator.first_request({"q": "x"})
    paginator.update({"next_cursor": "c2"}, {}, 5)
    paginator.next_request()

    with pytest.raises(PaginationLoopError) as caught:
        paginator.update({"next_cursor": "c2"}, {}, 5)

    assert caught.value.kind == "cursor"
    assert caught.value.request == PageRequest(url=None, params={"q": "x", "limit": "5", "after": "c2"})


@pytest.mark.parametrize("style", ["next_url", "link_header"])
def test_a_repeated_next_link_names_that_link(style: str) -> None:
    paginator: NextUrlPaginator | LinkHeaderPaginator
    if style == "next_url":
        paginator = NextUrlPaginator(NextUrlPagination(style="next_url"))
        first: Page = ({"next": "https://h/p2"}, {})
    else:
        paginator = LinkHeaderPaginator(LinkHeaderPagination(style="link_header"))
        first = ([], {"Link": '<https://h/p2>; rel="next"'})
    paginator.first_request({})
    paginator.update(*first, 1)
    assert paginator.next_request() == PageRequest(url="https://h/p2", params={})

    with pytest.raises(PaginationLoopError) as caught:
        paginator.update(*first, 1)

    assert caught.value.kind == "next URL"
    assert caught.value.request == PageRequest(url="https://h/p2", params={})


# --- the walk fails the task, naming the page without secrets --------------------------------------


def scripted(pages: dict[str, Page]) -> Callable[[httpx.Request], httpx.Response]:
    """Answer each request by its `page` query parameter (absent: "1"); every request must carry the API key."""

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.params.get("api_key") == SECRET, request.url
        body, headers = pages[request.url.params.get("page", "1")]
        return httpx.Response(200, json=body, headers=headers)

    return answer


def next_link(page: str) -> str:
    """The absolute link of a page, with the API key the way a careless source repeats it."""
    return f"{BASE}/items?page={page}&api_key={SECRET}"


def walk_to_the_end(
    pagination: dict[str, Any], pages: dict[str, Page], records: str | None, requested: list[str] | None = None
) -> None:
    """Walk the endpoint through the scripted source, noting in `requested` the page of every request."""
    spec = ApiToTableSpec.model_validate(
        {
            "base_url": BASE,
            "auth": {"type": "api_key", "name": "api_key", "in": "query", "value_env": "ITEMS_KEY"},
            "endpoints": [{"name": "items", "path": "/items", "records": records, "pagination": pagination}],
        }
    )
    answer = scripted(pages)

    def recording(request: httpx.Request) -> httpx.Response:
        if requested is not None:
            requested.append(request.url.params.get("page", "1"))
        return answer(request)

    with SourceClient(
        spec,
        environ={"ITEMS_KEY": SECRET},
        allowed_hosts=["api.example.com"],
        transport=httpx.MockTransport(recording),
    ) as client:
        # The walk touches its task context only when a fetch fails; these pages all arrive.
        walk = _Walk(cast(TaskContext, None), client, spec.endpoints[0], _Discard(), CursorTracker(None))
        pages_walked: Iterator[object] = walk.pages({}, None)
        for _ in pages_walked:
            pass


class _Discard:
    def add(self, table: object) -> None:
        return None


@dataclass(frozen=True)
class Case:
    pagination: dict[str, Any]
    pages: dict[str, Page]
    records: str | None
    expected: str


CASES = {
    "a cursor handed out twice": Case(
        {"style": "cursor", "cursor_param": "page", "cursor_path": "next", "limit_param": None},
        {"1": ({"data": [{"id": 1}], "next": "2"}, {}), "2": ({"data": [{"id": 2}], "next": "2"}, {})},
        "data",
        "the source's next cursor points back to a page already read: "
        "https://api.example.com/v1/items?page=2&api_key=***;",
    ),
    "a next URL pointing at its own page": Case(
        {"style": "next_url"},
        {
            "1": ({"data": [{"id": 1}], "next": next_link("2")}, {}),
            "2": ({"data": [{"id": 2}], "next": next_link("2")}, {}),
        },
        "data",
        "the source's next link points back to a page already read: "
        "https://api.example.com/v1/items?page=2&api_key=***;",
    ),
    "a Link header pointing back to an earlier page": Case(
        {"style": "link_header"},
        {
            "1": ([{"id": 1}], {"Link": f'<{next_link("2")}>; rel="next"'}),
            "2": ([{"id": 2}], {"Link": f'<{next_link("3")}>; rel="next"'}),
            "3": ([{"id": 3}], {"Link": f'<{next_link("2")}>; rel="next"'}),
        },
        None,
        "the source's next link points back to a page already read: "
        "https://api.example.com/v1/items?page=2&api_key=***;",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_walk_stops_at_the_loop_and_names_the_page_without_the_secret(case: str) -> None:
    scenario = CASES[case]

    with pytest.raises(TaskFailed) as caught:
        walk_to_the_end(scenario.pagination, scenario.pages, scenario.records)

    message = str(caught.value)
    assert SECRET not in message, message
    assert message.startswith(f"items, page {len(scenario.pages)}: "), message
    assert scenario.expected in message, message
    assert message.endswith("stopped instead of reading the same pages for ever"), message


@pytest.mark.parametrize("case", list(CASES))
def test_no_page_is_read_twice_before_the_loop_is_caught(case: str) -> None:
    scenario = CASES[case]
    requested: list[str] = []

    with pytest.raises(TaskFailed):
        walk_to_the_end(scenario.pagination, scenario.pages, scenario.records, requested)

    assert requested == sorted(scenario.pages)  # each page once: the loop is caught before a page is asked for again


def test_safe_url_masks_the_key_wherever_the_source_put_it() -> None:
    spec = ApiToTableSpec.model_validate(
        {
            "base_url": BASE,
            "auth": {"type": "api_key", "name": "api_key", "in": "query", "value_env": "ITEMS_KEY"},
            "endpoints": [{"name": "items", "path": "/items"}],
        }
    )
    with SourceClient(spec, environ={"ITEMS_KEY": SECRET}, allowed_hosts=["api.example.com"]) as client:
        shown = client.safe_url(f"{BASE}/items?token={SECRET}&api_key={SECRET}", {"page": "2"})
    assert SECRET not in shown, shown
    assert parse_qs(urlsplit(shown).query) == {"token": ["***"], "api_key": ["***"], "page": ["2"]}


@pytest.mark.parametrize(
    "pagination",
    [
        {"style": "page_number", "page_param": "page", "size_param": None, "page_size": 2},
        {"style": "offset", "offset_param": "page", "limit_param": "limit", "limit": 2},
    ],
    ids=["page_number", "offset"],
)
def test_a_source_that_ignores_its_paging_parameter_is_stopped_at_the_second_page(pagination: dict[str, Any]) -> None:
    full_page: Page = ([{"id": 1}, {"id": 2}], {})  # always the first page, whatever page or offset is asked for
    pages = {key: full_page for key in ("1", "0", "2", "3", "4")}
    requested: list[str] = []

    with pytest.raises(TaskFailed) as caught:
        walk_to_the_end(pagination, pages, None, requested)

    assert len(requested) == 2, requested  # the repeat is caught at the second page, not at max_pages
    message = str(caught.value)
    assert message.startswith("items, page 2: the source answered with the same 2 records as page 1"), message
    assert SECRET not in message


def test_pages_that_differ_are_all_read() -> None:
    pages: dict[str, Page] = {"1": ([{"id": 1}, {"id": 2}], {}), "2": ([{"id": 3}, {"id": 4}], {}), "3": ([], {})}
    requested: list[str] = []

    walk_to_the_end({"style": "page_number", "size_param": None, "page_size": 2}, pages, None, requested)

    assert requested == ["1", "2", "3"]
