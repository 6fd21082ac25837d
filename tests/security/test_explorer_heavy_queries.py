"""Heavy SQL Explorer queries are stopped and do not starve everyone else (RELIABILITY S10), over real HTTP.

The stack is test_sql_explorer.py's (module-scoped: a SQLite store, the accounts' DuckDB warehouses and the app
served by uvicorn, in this process, so the server's RSS is this process's and its registry of running queries can be
watched), with RUNYARD_SQL_TIMEOUT_SECONDS at 2 s.

The corpus of the matrix: a count over range(10^12), a trillion-pair cross join, string_agg over a billion rows, a
recursive CTE without an end, and repeat('A', 10^9). Each must end (bounded by the test's timeout and a generous
wait, never a tight threshold) with a 400 JSON answer saying in words that the timeout or the warehouse's memory
limit was reached, without a traceback or a path of the server; the server's RSS must stay under its baseline plus
DuckDB's memory_limit plus a margin; the warehouse's temp folders must stay under max_temp_directory_size (which
runyard sets: DuckDB's default is 90% of the free disk) and hold nothing once the answer is back. While a heavy query
runs, another user's SELECT 1 answers, side by side: the heavy query is in the running registry before the small one
is sent, and still there, unanswered, when the small one has answered.

One known gap, asserted as a strict xfail: repeat('A', 10^9) builds its string outside DuckDB's buffer manager, so
memory_limit does not bound it (the server peaks near 2 GB), and the timeout cannot interrupt it mid-call (it ends
some seconds past the timeout, with the timeout's answer). When that is fixed the xfail fails, to be removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from runyard.services.sql_explorer import explorer_for
from runyard.warehouse.duckdb import CONFIG
from tests.integration.cli_helpers import wait_until
from tests.integration.test_sql_explorer import SqlStack, query
from tests.integration.test_sql_explorer import stack as stack  # that file's module-scoped in-process stack

TIMEOUT_SECONDS = 2
ENDS_WITHIN = 60.0  # generous: the slowest (repeat, which cannot be interrupted mid-call) ends in about 10 s
MARGIN = 256 * 2**20  # bytes over baseline + memory_limit: Python, Arrow and allocator slack
SAMPLE_SECONDS = 0.01
TIMED_OUT = f"the query ran longer than {TIMEOUT_SECONDS} s and was stopped"
OUT_OF_MEMORY = re.compile(
    r"the query needed more memory than the warehouse allows and was stopped \(Out of Memory Error: [^\n]*\)"
)
UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
UNITS |= {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


class MemoryPastTheLimit(AssertionError):
    """The server's RSS went past baseline + memory_limit + MARGIN during a query."""


def to_bytes(text: str) -> int:
    """'488.2 MiB', '512MB', '9.3 GiB' as bytes."""
    found = re.fullmatch(r"\s*([\d.]+)\s*([A-Za-z]*)\s*", text)
    assert found is not None, text
    return int(float(found.group(1)) * UNITS[found.group(2).upper()])


def status_bytes(field_name: str) -> int:
    """A field of /proc/self/status in bytes (VmRSS: now; VmHWM: the peak since the process started)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"/proc/{os.getpid()}/status has no {field_name}")


@dataclass
class Heavy:
    stack: SqlStack
    baseline_rss: int
    memory_limit: int
    temp_limit: int

    def temp_bytes(self) -> int:
        """What DuckDB's temp folders (<account>.duckdb.tmp/) in the warehouse folder hold now."""
        total = 0
        for folder in self.stack.folder.glob("*.tmp"):
            for path in folder.rglob("*"):
                with contextlib.suppress(FileNotFoundError):  # deleted while we looked
                    total += path.stat().st_size if path.is_file() else 0
        return total


@dataclass
class Peaks:
    rss: int = 0
    temp: int = 0


@pytest.fixture(scope="module")
def heavy(stack: SqlStack) -> Iterator[Heavy]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            stack.runtime, "settings", stack.settings.model_copy(update={"sql_timeout_seconds": TIMEOUT_SECONDS})
        )
        answer = query(
            stack.api("default", "administrator"),
            "SELECT current_setting('memory_limit'), current_setting('max_temp_directory_size')",
        )
        assert answer.status_code == 200, answer.text
        memory_limit, temp_limit = answer.json()["rows"][0]
        # The server as it idles: warehouses open, one query run.
        yield Heavy(stack, status_bytes("VmRSS"), to_bytes(memory_limit), to_bytes(temp_limit))


def measured(heavy: Heavy, call: Callable[[], httpx.Response]) -> tuple[httpx.Response, Peaks]:
    """`call`'s answer, with the highest RSS and temp-folder size while it ran (sampled, and the kernel's own peak,
    VmHWM, when that rose during the call)."""
    peaks = Peaks()
    done = threading.Event()
    high_before = status_bytes("VmHWM")

    def sample() -> None:
        while not done.is_set():
            peaks.rss = max(peaks.rss, status_bytes("VmRSS"))
            peaks.temp = max(peaks.temp, heavy.temp_bytes())
            done.wait(SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, name="rss-sampler", daemon=True)
    sampler.start()
    try:
        answer = call()
    finally:
        done.set()
        sampler.join(5)
    high_after = status_bytes("VmHWM")
    if high_after > high_before:
        peaks.rss = max(peaks.rss, high_after)
    return answer, peaks


def case(sql: str, *outcomes: str, memory_bounded: bool = True) -> object:
    marks: tuple[pytest.MarkDecorator, ...] = ()
    if not memory_bounded:
        reason = "DuckDB builds the string outside its buffer manager: memory_limit does not bound it"
        marks = (pytest.mark.xfail(raises=MemoryPastTheLimit, strict=True, reason=reason),)
    return pytest.param(sql, outcomes, marks=marks, id=sql[:40])


CORPUS = [
    case("SELECT count(*) FROM range(1000000000000)", "timeout"),
    case("SELECT count(*) FROM range(1000000) a, range(1000000) b WHERE a.range + b.range < 0", "timeout"),
    case(
        "SELECT length(string_agg(range::VARCHAR || repeat('x', 100), ',')) FROM range(1000000000)",
        "timeout",
        "memory",
    ),
    case("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM r) SELECT count(*) FROM r", "timeout", "memory"),
    # Last: its peak is the highest.
    case("SELECT repeat('A', 1000000000)", "timeout", "memory", memory_bounded=False),
]


def test_the_warehouse_bounds_its_temp_folders(heavy: Heavy) -> None:
    configured = to_bytes(str(CONFIG["max_temp_directory_size"]))
    # DuckDB reports it in binary units, rounded to one decimal ("9.3 GiB" for "10GB"): equal within that rounding.
    assert abs(heavy.temp_limit - configured) <= configured * 0.01, heavy.temp_limit
    assert heavy.temp_limit <= 100 * 10**9  # not DuckDB's default, 90% of the free disk


@pytest.mark.parametrize(("sql", "outcomes"), CORPUS)
def test_a_heavy_query_ends_in_words_within_memory_and_temp_limits(
    heavy: Heavy, sql: str, outcomes: tuple[str, ...]
) -> None:
    admin = heavy.stack.api("default", "administrator")

    answer, peaks = measured(heavy, lambda: query(admin, sql))

    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert set(body) == {"detail"}, body
    detail = body["detail"]
    said = "timeout" if detail == TIMED_OUT else "memory" if OUT_OF_MEMORY.fullmatch(detail) else detail
    assert said in outcomes, detail
    text = json.dumps(body)
    for leak in ("Traceback", str(heavy.stack.tmp), ".duckdb", "/tmp"):
        assert leak not in text
    assert peaks.temp <= heavy.temp_limit
    assert heavy.temp_bytes() == 0  # nothing left behind once the answer is back
    explorer = explorer_for(heavy.stack.app.state, heavy.stack.runtime)
    assert explorer.registry.running(heavy.stack.user_id("default", "administrator")) == []  # nothing left running
    cap = heavy.baseline_rss + heavy.memory_limit + MARGIN
    if peaks.rss > cap:
        raise MemoryPastTheLimit(
            f"the server's RSS peaked at {peaks.rss / 2**20:.0f} MiB, over {cap / 2**20:.0f} MiB "
            f"(baseline {heavy.baseline_rss / 2**20:.0f} MiB + memory_limit {heavy.memory_limit / 2**20:.0f} MiB "
            f"+ {MARGIN / 2**20:.0f} MiB)"
        )


def test_another_users_small_query_answers_while_a_heavy_one_runs(heavy: Heavy) -> None:
    stack = heavy.stack
    owner = stack.api("default", "administrator")
    owner_id = stack.user_id("default", "administrator")
    other = stack.api("default", "operator")
    registry = explorer_for(stack.app.state, stack.runtime).registry
    heavy_answers: list[httpx.Response] = []
    sql = "SELECT count(*) FROM range(1000000000000)"
    runner = threading.Thread(target=lambda: heavy_answers.append(query(owner, sql, query_id="heavy")))
    runner.start()
    try:
        wait_until(
            lambda: "heavy" in registry.running(owner_id) or bool(heavy_answers),
            timeout=ENDS_WITHIN,
            what="the heavy query to be running",
            interval=0.01,
        )
        assert not heavy_answers, heavy_answers[0].text

        small = query(other, "SELECT 1 AS one")
        still_running = "heavy" in registry.running(owner_id) and not heavy_answers

        assert small.status_code == 200, small.text
        assert small.json()["rows"] == [[1]]
        assert still_running, "the small query answered only after the heavy one had ended"
    finally:
        runner.join(ENDS_WITHIN)
    assert not runner.is_alive()
    assert heavy_answers[0].status_code == 400
    assert heavy_answers[0].json() == {"detail": TIMED_OUT}
    assert registry.running(owner_id) == []
