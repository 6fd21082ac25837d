"""Paginators walked over simulated APIs: plain data in, requests out."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, timedelta
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runyard.errors import RunyardError
from runyard.operations.api_to_table.paginators import (
    PageRequest,
    PaginationError,
    PaginationLoopError,
    Paginator,
    RecordSelectorError,
    make_paginator,
    parse_link_header,
    plan_date_windows,
    plan_page_slices,
    select_records,
    total_pages,
)
from runyard.operations.api_to_table.spec import (
    CursorPagination,
    LinkHeaderPagination,
    NextUrlPagination,
    NoPagination,
    OffsetPagination,
    PageNumberPagination,
)

Response = tuple[object, Mapping[str, str]]
Serve = Callable[[PageRequest], Response]


def walk(
    paginator: Paginator, serve: Serve, base: Mapping[str, str] | None = None, records: str | None = None
) -> list[PageRequest]:
    """The extractor's loop, against a simulated API; returns every request made."""
    request = paginator.first_request(base or {})
    made = [request]
    while True:
        body, headers = serve(request)
        paginator.update(body, headers, len(select_records(body, records)))
        if not paginator.has_next():
            return made
        request = paginator.next_request()
        made.append(request)
        assert len(made) < 100, "paginator did not stop"


def in_order(*responses: Response) -> Serve:
    """An API that answers the given responses one after the other, whatever is asked."""
    queue = list(responses)

    def serve(_: PageRequest) -> Response:
        return queue.pop(0)

    return serve


def by_url(pages: Mapping[str | None, object]) -> Serve:
    """An API whose pages are addressed by URL (None: the endpoint's own URL)."""
    return lambda request: (pages[request.url], {})


def numbered(records: list[int], size: int, *, total_key: str | None = None, first: int = 1) -> Serve:
    """An API serving ``records`` in pages of ``size``, addressed by a page number param."""

    def serve(request: PageRequest) -> Response:
        index = int(request.params["page"]) - first
        body: dict[str, object] = {"items": records[index * size : (index + 1) * size]}
        if total_key:
            body[total_key] = -(-len(records) // size)
        return body, {}

    return serve


def offsets(records: list[int], *, total_key: str | None = None) -> Serve:
    """An API serving ``records`` by offset and limit params."""

    def serve(request: PageRequest) -> Response:
        offset, limit = int(request.params["offset"]), int(request.params["limit"])
        body: dict[str, object] = {"items": records[offset : offset + limit]}
        if total_key:
            body[total_key] = len(records)
        return body, {}

    return serve


def page_of(n: int, **extra: object) -> dict[str, object]:
    return {"data": list(range(n)), **extra}


# --- cursor ---------------------------------------------------------------------------------------


def test_cursor_sends_back_each_cursor_until_it_is_null() -> None:
    spec = CursorPagination(style="cursor")
    serve = in_order((page_of(2, next_cursor="c1"), {}), (page_of(2, next_cursor=7), {}), (page_of(1), {}))

    made = walk(make_paginator(spec), serve, base={"q": "x"}, records="data")

    assert [r.params for r in made] == [
        {"q": "x", "limit": "100"},
        {"q": "x", "limit": "100", "cursor": "c1"},
        {"q": "x", "limit": "100", "cursor": "7"},
    ]
    assert all(r.url is None for r in made)


@pytest.mark.parametrize("last", [{"next_cursor": None}, {"next_cursor": ""}, {}])
def test_cursor_stops_when_cursor_is_null_empty_or_missing(last: dict[str, object]) -> None:
    serve = in_order((page_of(1, next_cursor="a"), {}), (page_of(1, **last), {}))
    assert len(walk(make_paginator(CursorPagination(style="cursor")), serve, records="data")) == 2


def test_cursor_at_a_nested_path_with_custom_params() -> None:
    spec = CursorPagination(style="cursor", cursor_param="after", cursor_path="meta.next", limit_param=None, limit=5)
    serve = in_order(({"meta": {"next": "n1"}, "data": [1]}, {}), ({"meta": {"next": None}, "data": []}, {}))

    made = walk(make_paginator(spec), serve, records="data")

    assert [r.params for r in made] == [{}, {"after": "n1"}]


def test_cursor_repeated_raises_loop_error_naming_it() -> None:
    serve = in_order(*[(page_of(1, next_cursor=c), {}) for c in ["a", "b", "a"]])

    with pytest.raises(PaginationLoopError, match="'a'") as caught:
        walk(make_paginator(CursorPagination(style="cursor")), serve, records="data")

    assert caught.value.value == "a"
    assert isinstance(caught.value, RunyardError)


def test_cursor_that_is_an_object_is_reported() -> None:
    serve = in_order((page_of(1, next_cursor={"id": 1}), {}))
    with pytest.raises(PaginationError, match=r"cursor at 'next_cursor' is an object with keys \['id'\]"):
        walk(make_paginator(CursorPagination(style="cursor")), serve, records="data")


def test_next_request_after_the_last_page_is_a_bug() -> None:
    paginator = make_paginator(CursorPagination(style="cursor"))
    paginator.first_request({})
    paginator.update(page_of(0), {}, 0)
    with pytest.raises(RuntimeError, match="has_next"):
        paginator.next_request()


def test_first_request_resets_state() -> None:
    paginator = make_paginator(CursorPagination(style="cursor"))
    serve = in_order(*[(page_of(1, next_cursor=c), {}) for c in ["a", None, "a", None]])
    assert len(walk(paginator, serve, records="data")) == 2
    assert len(walk(paginator, serve, records="data")) == 2  # "a" again is a new walk, not a loop


# --- next_url -------------------------------------------------------------------------------------


def test_next_url_follows_urls_without_resending_params() -> None:
    spec = NextUrlPagination(style="next_url", limit_param="per_page", limit=2)
    pages = {
        None: {"results": [1, 2], "next": "https://api.test/items?page=2"},
        "https://api.test/items?page=2": {"results": [3, 4], "next": "https://api.test/items?page=3"},
        "https://api.test/items?page=3": {"results": [5], "next": None},
    }

    made = walk(make_paginator(spec), by_url(pages), base={"q": "x"}, records="results")

    assert made == [
        PageRequest(url=None, params={"q": "x", "per_page": "2"}),
        PageRequest(url="https://api.test/items?page=2", params={}),
        PageRequest(url="https://api.test/items?page=3", params={}),
    ]


def test_next_url_stops_when_missing() -> None:
    pages = {None: {"results": [1], "links": {"next": "u2"}}, "u2": {"results": [2], "links": {}}}
    spec = NextUrlPagination(style="next_url", next_url_path="links.next")
    assert len(walk(make_paginator(spec), by_url(pages), records="results")) == 2


def test_self_referencing_next_url_raises_loop_error() -> None:
    pages = {None: {"r": [1], "next": "u2"}, "u2": {"r": [2], "next": "u2"}}

    with pytest.raises(PaginationLoopError, match="next URL 'u2'"):
        walk(make_paginator(NextUrlPagination(style="next_url")), by_url(pages), records="r")


# --- link header ----------------------------------------------------------------------------------


def link_api(pages: Mapping[str | None, tuple[list[int], str | None]]) -> Serve:
    def serve(request: PageRequest) -> Response:
        rows, link = pages[request.url]
        return rows, ({"link": link} if link else {})

    return serve


def test_link_header_follows_rel_next() -> None:
    pages: dict[str | None, tuple[list[int], str | None]] = {
        None: ([1], '<https://gh.test/r?page=2>; rel="next", <https://gh.test/r?page=3>; rel="last"'),
        "https://gh.test/r?page=2": ([2], '<https://gh.test/r?page=3>; rel="next"'),
        "https://gh.test/r?page=3": ([3], '<https://gh.test/r?page=1>; rel="first"'),
    }
    spec = LinkHeaderPagination(style="link_header", limit_param="per_page", limit=100)

    made = walk(make_paginator(spec), link_api(pages))

    assert [r.url for r in made] == [None, "https://gh.test/r?page=2", "https://gh.test/r?page=3"]
    assert made[0].params == {"per_page": "100"}


def test_link_header_name_is_case_insensitive_and_loops_are_caught() -> None:
    serve = in_order(([1], {"Link": "<u2>; rel=next"}), ([2], {"LINK": "<u2>; rel=next"}))
    with pytest.raises(PaginationLoopError, match="'u2'"):
        walk(make_paginator(LinkHeaderPagination(style="link_header")), serve)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('<https://a/?p=2>; rel="next"', {"next": "https://a/?p=2"}),
        (
            "<https://a/?p=2>; rel=next, <https://a/?p=1>; rel=prev",
            {"next": "https://a/?p=2", "prev": "https://a/?p=1"},
        ),
        (
            '<https://a/?ids=1,2>; rel="next last"',
            {"next": "https://a/?ids=1,2", "last": "https://a/?ids=1,2"},
        ),
        ('<https://a/x>; title="t"; REL="Next"', {"next": "https://a/x"}),
        ('<https://a/x>; title="no rel"', {}),
        ("", {}),
    ],
)
def test_parse_link_header(header: str, expected: dict[str, str]) -> None:
    assert parse_link_header(header) == expected


# --- page number ----------------------------------------------------------------------------------


def test_page_number_stops_at_the_known_total() -> None:
    spec = PageNumberPagination(style="page_number", total_pages_path="pages")
    made = walk(make_paginator(spec), numbered(list(range(25)), 10, total_key="pages"), records="items")
    assert [r.params for r in made] == [{"page": str(n), "page_size": "100"} for n in (1, 2, 3)]


def test_page_number_without_total_stops_at_an_empty_page() -> None:
    spec = PageNumberPagination(style="page_number", size_param=None, page_size=10)
    made = walk(make_paginator(spec), numbered(list(range(20)), 10), records="items")
    assert [r.params for r in made] == [{"page": "1"}, {"page": "2"}, {"page": "3"}]


def test_page_number_counts_from_start_page() -> None:
    spec = PageNumberPagination(style="page_number", start_page=0, total_pages_path="pages")
    made = walk(make_paginator(spec), numbered([1, 2, 3], 1, total_key="pages", first=0), records="items")
    assert [r.params["page"] for r in made] == ["0", "1", "2"]


def test_page_number_range_walks_only_its_pages() -> None:
    spec = PageNumberPagination(style="page_number", total_pages_path="pages")
    serve = numbered(list(range(50)), 10, total_key="pages")
    made = walk(make_paginator(spec, page_range=(2, 3)), serve, records="items")
    assert [r.params["page"] for r in made] == ["2", "3"]


def test_page_number_range_stops_early_when_pages_run_out() -> None:
    spec = PageNumberPagination(style="page_number")
    made = walk(make_paginator(spec, page_range=(2, 9)), numbered(list(range(25)), 10), records="items")
    assert [r.params["page"] for r in made] == ["2", "3", "4"]


def test_bad_total_is_reported() -> None:
    spec = PageNumberPagination(style="page_number", total_pages_path="meta.pages")
    paginator = make_paginator(spec)
    paginator.first_request({})
    with pytest.raises(PaginationError, match=r"total at 'meta.pages' is a string \('many'\)"):
        paginator.update({"meta": {"pages": "many"}}, {}, 1)


# --- offset ---------------------------------------------------------------------------------------


def test_offset_stops_at_the_known_total() -> None:
    spec = OffsetPagination(style="offset", limit=100, total_path="total")
    made = walk(make_paginator(spec), offsets(list(range(300)), total_key="total"), records="items")
    assert [r.params for r in made] == [{"offset": str(o), "limit": "100"} for o in (0, 100, 200)]


@pytest.mark.parametrize(("count", "expected_offsets"), [(250, [0, 100, 200]), (200, [0, 100, 200]), (0, [0])])
def test_offset_without_total_stops_at_a_short_page(count: int, expected_offsets: list[int]) -> None:
    made = walk(make_paginator(OffsetPagination(style="offset")), offsets(list(range(count))), records="items")
    assert [int(r.params["offset"]) for r in made] == expected_offsets


def test_offset_range_walks_only_its_pages() -> None:
    spec = OffsetPagination(style="offset", limit=10, total_path="total")
    serve = offsets(list(range(100)), total_key="total")
    made = walk(make_paginator(spec, page_range=(3, 4)), serve, base={"q": "x"}, records="items")
    assert [r.params for r in made] == [
        {"q": "x", "offset": "20", "limit": "10"},
        {"q": "x", "offset": "30", "limit": "10"},
    ]


# --- none, factory, totals ------------------------------------------------------------------------


def test_no_pagination_makes_one_request_with_the_base_params() -> None:
    made = walk(make_paginator(NoPagination()), in_order(([1, 2], {})), base={"a": "1"})
    assert made == [PageRequest(url=None, params={"a": "1"})]


@pytest.mark.parametrize(
    "spec",
    [CursorPagination(style="cursor"), NextUrlPagination(style="next_url"), NoPagination()],
)
def test_page_ranges_need_countable_pages(spec: CursorPagination | NextUrlPagination | NoPagination) -> None:
    with pytest.raises(ValueError, match="page range"):
        make_paginator(spec, page_range=(1, 2))


@pytest.mark.parametrize("page_range", [(0, 2), (3, 2)])
def test_page_range_must_be_ordered_and_one_based(page_range: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="page range"):
        make_paginator(OffsetPagination(style="offset"), page_range=page_range)


def test_total_pages_from_either_style() -> None:
    pages = PageNumberPagination(style="page_number", total_pages_path="meta.pages")
    by_offset = OffsetPagination(style="offset", limit=100, total_path="total")
    assert total_pages(pages, {"meta": {"pages": 7}}) == 7
    assert total_pages(by_offset, {"total": 201}) == 3
    assert total_pages(by_offset, {"total": "200"}) == 2
    assert total_pages(by_offset, {}) is None
    assert total_pages(OffsetPagination(style="offset"), {"total": 5}) is None


# --- record selector ------------------------------------------------------------------------------


def test_select_records_paths() -> None:
    assert select_records([1, 2], None) == [1, 2]
    assert select_records([1, 2], "") == [1, 2]
    assert select_records({"data": [{"id": 1}]}, "data") == [{"id": 1}]
    assert select_records({"payload": {"items": [3]}}, "payload.items") == [3]
    assert select_records({"pages": [{"rows": [4]}]}, "pages.0.rows") == [4]
    assert select_records({"data": None}, "data") == []


@pytest.mark.parametrize(
    ("body", "selector", "message"),
    [
        (
            {"items": [], "page": 1},
            "data",
            "the selector 'data' matched nothing: the body is an object with keys ['items', 'page']",
        ),
        (
            {"payload": {"rows": []}},
            "payload.items",
            "the selector 'payload.items' matched nothing: 'payload' is an object with keys ['rows']",
        ),
        ([1, 2, 3], "data", "the selector 'data' matched nothing: the body is a list of 3 items"),
        ({"data": "oops"}, "data.items", "the selector 'data.items' matched nothing: 'data' is a string"),
        ({"data": {"id": 1}}, "data", "the selector 'data' leads to an object with keys ['id'], not a list"),
        ({"id": 1}, None, "the body is an object with keys ['id'], not a list of records"),
        ("<html>", None, "the body is a string, not a list of records"),
    ],
)
def test_select_records_says_what_it_found(body: object, selector: str | None, message: str) -> None:
    with pytest.raises(RecordSelectorError) as caught:
        select_records(body, selector)
    assert str(caught.value).startswith(message)
    assert caught.value.selector == selector


def test_select_records_lists_at_most_ten_keys() -> None:
    body = {f"k{i}": i for i in range(12)}
    with pytest.raises(RecordSelectorError, match=r"'k9', \.\.\.\]"):
        select_records(body, "data")


# --- slicing plans --------------------------------------------------------------------------------


def test_plan_page_slices_examples() -> None:
    assert plan_page_slices(10, 3) == [(1, 4), (5, 7), (8, 10)]
    assert plan_page_slices(2, 5) == [(1, 1), (2, 2)]
    assert plan_page_slices(0, 4) == []
    with pytest.raises(ValueError, match="slices"):
        plan_page_slices(10, 0)


@given(total=st.integers(min_value=0, max_value=5000), slices=st.integers(min_value=1, max_value=64))
def test_page_slices_cover_every_page_once_and_are_balanced(total: int, slices: int) -> None:
    ranges = plan_page_slices(total, slices)

    covered = [page for first, last in ranges for page in range(first, last + 1)]
    assert covered == list(range(1, total + 1))
    assert all(first <= last for first, last in ranges)
    assert len(ranges) == min(total, slices)
    sizes = [last - first + 1 for first, last in ranges]
    assert not sizes or max(sizes) - min(sizes) <= 1


def test_plan_date_windows_examples() -> None:
    assert plan_date_windows(date(2024, 1, 1), date(2024, 1, 10), 4) == [
        (date(2024, 1, 1), date(2024, 1, 4)),
        (date(2024, 1, 5), date(2024, 1, 8)),
        (date(2024, 1, 9), date(2024, 1, 10)),
    ]
    assert plan_date_windows(date(2024, 1, 1), date(2024, 1, 1), 7) == [(date(2024, 1, 1), date(2024, 1, 1))]
    assert plan_date_windows(date(2024, 1, 2), date(2024, 1, 1), 7) == []
    with pytest.raises(ValueError, match="window_days"):
        plan_date_windows(date(2024, 1, 1), date(2024, 1, 2), 0)


@given(
    start=st.dates(min_value=date(2000, 1, 1), max_value=date(2030, 1, 1)),
    span=st.integers(min_value=0, max_value=800),
    window_days=st.integers(min_value=1, max_value=120),
)
def test_date_windows_cover_every_day_once(start: date, span: int, window_days: int) -> None:
    end = start + timedelta(days=span)

    windows = plan_date_windows(start, end, window_days)

    assert windows[0][0] == start
    assert windows[-1][1] == end
    for (_, last), (first, _) in pairwise(windows):
        assert first == last + timedelta(days=1)
    lengths = [(last - first).days + 1 for first, last in windows]
    assert all(length == window_days for length in lengths[:-1])
    assert 1 <= lengths[-1] <= window_days
