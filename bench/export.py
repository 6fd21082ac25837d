"""Export throughput (spec 004): rows/s of paging a table through the BI Views v2 API, beside DuckDB's own COPY.

The bench makes a fresh RUNYARD_HOME in a temporary folder and, before any server starts (the server holds the
file's lock), writes the warehouse of the `default` account (`<home>/warehouse/default.duckdb`) with DuckDB: a table
`bench_rows` of `--rows` rows (id BIGINT, four VARCHARs, one with commas, quotes and NULLs, a DOUBLE, a DATE and
`_runyard_loaded_at` TIMESTAMP increasing with id), stored in an order unlike the time order, checkpointed.

- **peer** (same run, same file, before the server starts): DuckDB's own
  `COPY (SELECT * FROM bench_rows ORDER BY _runyard_loaded_at) TO '<tmp>/peer.csv' (HEADER)`, with
  `COMPRESSION gzip` for `--output-type gzip`, on one connection opened with runyard's warehouse memory limit;
  best of `--repeat`.
- **runyard**: `runyard serve` in its own process (no demo, the administrator's password from
  RUNYARD_ADMIN_PASSWORD, a free port), logged in once; then `--repeat` fresh exports, each from a new page 1
  (`GET /api/integration/v2/biviews/bench_rows?pagenum=1&pageSize=S&outputType=T`) to the last page's last byte,
  every page read whole over one keep-alive connection, a page not cached yet asked again at once (after
  `--retry-sleep`, 1 ms). Best of `--repeat`. The server's CPU time (/proc) and this client's are noted for each.

Every export is checked after its clock stops: as many rows as the table, pages of `--page-size` rows (the last
one less), every page's header, and the ids (the first column, parsed alone by pyarrow) 1, 2, ... N, which is
the time order. A bench that pages wrong data fails (exit 2) whatever its speed.

    python bench/export.py [--rows 1000000] [--page-size 10000] [--output-type csv|gzip] [--repeat 3]
                           [--json out.json] [--min-ratio 0]

The issue's target is a ratio (runyard rows/s over DuckDB COPY rows/s) of at least 0.5 for CSV; `--min-ratio`
(default 0, so that smoke runs do not fail on a busy machine) makes the exit code non-zero below it.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
from rich.console import Console
from rich.table import Table

from benchlib import code_version, command_line, machine

TARGET_RATIO = 0.5
TABLE = "bench_rows"
ACCOUNT = "default"
ADMIN_LOGIN = "admin"
ADMIN_PASSWORD = "bench-export-admin-password"  # a throwaway server's
TOKEN_HEADER = "continuation-token"
NOT_CACHED = "Page still not yet cached. Please retry."
WILL_NOT_EXIST = "This page will not exist"
EXPORT_PATH = f"/api/integration/v2/biviews/{TABLE}"
STATUS_PATH = "/api/integration/v2/biviews-status"
STARTUP_SECONDS = 60.0
HTTP_TIMEOUT = 120.0
PEER_MEMORY_LIMIT = "512MB"  # runyard.warehouse.duckdb.CONFIG's: the server's DuckDB runs with it too
COLUMNS = ("id", "customer", "region", "reference", "note", "amount", "order_date", "_runyard_loaded_at")
# One row per id; _runyard_loaded_at is 2026-01-01 plus id milliseconds (strictly increasing with id), and the
# rows are stored in the order of an unrelated hash, so the export's ORDER BY has work to do.
CREATE_TABLE = f"""
CREATE TABLE {TABLE} AS
SELECT
    id::BIGINT AS id,
    'customer-' || lpad((hash(id, 1) % 100000)::VARCHAR, 6, '0') AS customer,
    ['north', 'south', 'east', 'west', 'central'][1 + (hash(id, 2) % 5)::INTEGER] AS region,
    md5(id::VARCHAR) AS reference,
    CASE hash(id, 3) % 10 WHEN 0 THEN 'needs review, "urgent"' WHEN 1 THEN NULL ELSE 'ok' END AS note,
    round((hash(id, 4) % 10000000) / 100.0, 2)::DOUBLE AS amount,
    DATE '2020-01-01' + (hash(id, 5) % 2192)::INTEGER AS order_date,
    TIMESTAMP '2026-01-01 00:00:00' + to_microseconds(id * 1000) AS _runyard_loaded_at
FROM range(1, ? + 1) AS source(id)
ORDER BY hash(id, 99)
"""
PEER_SELECT = f"SELECT * FROM {TABLE} ORDER BY _runyard_loaded_at"


class CheckFailed(RuntimeError):
    """The export gave other rows than the table holds, or in another order."""


# --- the table and the peer --------------------------------------------------------------------------------------


def create_table(path: Path, rows: int) -> float:
    """Write `bench_rows` into a new DuckDB file at `path`; the seconds it took."""
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with closing(duckdb.connect(str(path), config={"memory_limit": PEER_MEMORY_LIMIT})) as con:
        con.execute(CREATE_TABLE, [rows])
        con.execute("CHECKPOINT")
    return time.perf_counter() - started


@dataclass
class PeerResult:
    seconds: list[float]
    cpu_seconds: list[float]  # this process's (DuckDB's threads included), for each COPY
    bytes: int
    rows: int

    @property
    def best(self) -> float:
        return min(self.seconds)


def measure_peer(path: Path, out: Path, rows: int, output_type: str, repeat: int) -> PeerResult:
    """DuckDB's own COPY of the rows in time order to a CSV file (gzip with `output_type` gzip), `repeat` times."""
    options = "HEADER, COMPRESSION gzip" if output_type == "gzip" else "HEADER"
    seconds: list[float] = []
    cpu: list[float] = []
    with closing(duckdb.connect(str(path), config={"memory_limit": PEER_MEMORY_LIMIT})) as con:
        con.execute(f"SELECT count(*) FROM {TABLE}").fetchall()  # the table read once before the clock
        for _ in range(repeat):
            out.unlink(missing_ok=True)
            cpu_before, started = time.process_time(), time.perf_counter()
            copied = con.execute(f"COPY ({PEER_SELECT}) TO '{out}' ({options})").fetchall()
            seconds.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_before)
            if int(copied[0][0]) != rows:
                raise CheckFailed(f"DuckDB's COPY wrote {copied[0][0]} rows, not {rows}")
    return PeerResult(seconds=seconds, cpu_seconds=cpu, bytes=out.stat().st_size, rows=rows)


# --- the server ---------------------------------------------------------------------------------------------------


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    base_url: str
    pid: int

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the server process (all its threads) has used so far (Linux /proc)."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def served(home: Path) -> Iterator[Server]:
    """`runyard serve` as production runs it: its own process, no demo, the administrator's password from the
    environment, on a free port. Stopped (SIGTERM, then SIGKILL) when the block ends."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}
    env.update(RUNYARD_HOME=str(home), RUNYARD_ADMIN_PASSWORD=ADMIN_PASSWORD, NO_COLOR="1", PYTHONUNBUFFERED="1")
    log_path = home / "serve.log"
    with log_path.open("w") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "runyard.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            base_url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + STARTUP_SECONDS
            while True:
                if child.poll() is not None:
                    raise RuntimeError(f"runyard serve exited {child.returncode}:\n{log_path.read_text()[-3000:]}")
                try:
                    if httpx.get(f"{base_url}/healthz", timeout=5).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"runyard serve did not answer /healthz:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.1)
            yield Server(base_url, child.pid)
        finally:
            child.terminate()
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(5)


def login(client: httpx.Client) -> None:
    response = client.post("/api/v1/auth/token", json={"login": ADMIN_LOGIN, "password": ADMIN_PASSWORD})
    response.raise_for_status()
    client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"


# --- paging -------------------------------------------------------------------------------------------------------


@dataclass
class Export:
    """One export paged through the API: its pages and what it took."""

    seconds: float  # page 1's request to the last page's last byte
    first_page_seconds: float  # page 1's request to its last byte
    pages: list[bytes]
    requests: int
    not_cached: int  # answers "not cached yet" (asked again)
    total_pages: int | None
    total_rows: int | None
    server_cpu_seconds: float
    client_cpu_seconds: float
    token: str

    @property
    def bytes(self) -> int:
        return sum(len(page) for page in self.pages)


def page_through(client: httpx.Client, server: Server, page_size: int, output_type: str, retry_sleep: float) -> Export:
    """Page 1 (a new session) to the last page, every page read whole; a page not cached yet is asked again."""
    pages: list[bytes] = []
    token: str | None = None
    requests = not_cached = 0
    total_pages = total_rows = None
    first_page = last_byte = 0.0
    cpu_server, cpu_client = server.cpu_seconds(), time.process_time()
    started = time.perf_counter()
    number = 1
    while True:
        if token is None:
            params = {"pagenum": "1", "pageSize": str(page_size), "outputType": output_type}
            response = client.get(EXPORT_PATH, params=params)
        else:
            response = client.get(EXPORT_PATH, params={"pagenum": str(number)}, headers={TOKEN_HEADER: token})
        requests += 1
        if response.status_code == 200:
            pages.append(response.content)
            last_byte = time.perf_counter()
            if number == 1:
                first_page = last_byte - started
            token = response.headers[TOKEN_HEADER]
            if "total-pages" in response.headers:
                total_pages, total_rows = int(response.headers["total-pages"]), int(response.headers["total-rows"])
            if total_pages is not None and number >= total_pages:
                break
            number += 1
            continue
        detail = _detail(response)
        if response.status_code == 400 and detail.get("detail") == NOT_CACHED:
            token = response.headers.get(TOKEN_HEADER, token)
            not_cached += 1
            if retry_sleep > 0:
                time.sleep(retry_sleep)
            continue
        if response.status_code == 404 and detail.get("detail") == WILL_NOT_EXIST and number > 1:
            total_pages, total_rows = detail.get("total_pages"), detail.get("total_rows")
            break
        raise RuntimeError(f"page {number}: HTTP {response.status_code} {response.text[:500]}")
    cpu_server, cpu_client = server.cpu_seconds() - cpu_server, time.process_time() - cpu_client
    assert token is not None
    return Export(
        seconds=last_byte - started,
        first_page_seconds=first_page,
        pages=pages,
        requests=requests,
        not_cached=not_cached,
        total_pages=total_pages,
        total_rows=total_rows,
        server_cpu_seconds=cpu_server,
        client_cpu_seconds=cpu_client,
        token=token,
    )


def _detail(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def cancel(client: httpx.Client, token: str) -> None:
    """End a measured session now, so that its cached pages do not pile up in staging (not timed)."""
    client.delete(f"{STATUS_PATH}/{token}")


# --- the check ----------------------------------------------------------------------------------------------------


@dataclass
class Check:
    rows: int
    expected_rows: int
    pages: int
    ordered: bool
    passed: bool
    problems: list[str] = field(default_factory=list)


def check_export(export: Export, rows: int, page_size: int, output_type: str) -> Check:
    """Every page a CSV (gunzipped for gzip) with the table's header; ids 1..rows in order; full pages but the last."""
    problems: list[str] = []
    ids: list[pa.ChunkedArray] = []
    options = pa_csv.ConvertOptions(include_columns=["id"], column_types={"id": pa.int64()})
    for index, data in enumerate(export.pages, start=1):
        text = zlib.decompress(data, wbits=31) if output_type == "gzip" else data
        header = text[: text.find(b"\n")].decode()
        if [name.strip('"') for name in header.split(",")] != list(COLUMNS):
            problems.append(f"page {index}: header {header!r}")
            continue
        column = pa_csv.read_csv(io.BytesIO(text), convert_options=options).column("id")
        expected = page_size if index < len(export.pages) else None
        if expected is not None and len(column) != expected:
            problems.append(f"page {index}: {len(column)} rows, not {expected}")
        ids.append(column)
    got = pa.chunked_array([chunk for column in ids for chunk in column.chunks], type=pa.int64())
    ordered = len(got) > 0 and got[0].as_py() == 1
    if len(got) > 1:
        steps = pc.subtract(got[1:], got[:-1])
        ordered = ordered and bool(pc.all(pc.equal(steps, 1)).as_py())
    if len(got) != rows:
        problems.append(f"{len(got)} rows paged, the table holds {rows}")
    if not ordered:
        problems.append("the ids do not come out 1, 2, ... N (the time order)")
    if export.total_rows is not None and export.total_rows != rows:
        problems.append(f"the server counted {export.total_rows} rows, the table holds {rows}")
    if export.total_pages is not None and export.total_pages != len(export.pages):
        problems.append(f"the server counted {export.total_pages} pages, {len(export.pages)} were paged")
    return Check(
        rows=len(got),
        expected_rows=rows,
        pages=len(export.pages),
        ordered=ordered,
        passed=not problems,
        problems=problems,
    )


# --- the run ------------------------------------------------------------------------------------------------------


def measure_runyard(
    home: Path, rows: int, page_size: int, output_type: str, repeat: int, retry_sleep: float
) -> dict[str, Any]:
    exports: list[dict[str, Any]] = []
    checks: list[Check] = []
    with served(home) as server, httpx.Client(base_url=server.base_url, timeout=HTTP_TIMEOUT) as client:
        login(client)
        warm = client.get(EXPORT_PATH, params={"count": "true", "pageSize": str(page_size), "outputType": output_type})
        warm.raise_for_status()  # opens the account's warehouse (as the peer's connection is open before its clock)
        if warm.json().get("count") != rows:
            raise CheckFailed(f"the server counts {warm.text} rows, the table holds {rows}")
        for attempt in range(1, repeat + 1):
            export = page_through(client, server, page_size, output_type, retry_sleep)
            check = check_export(export, rows, page_size, output_type)
            cancel(client, export.token)
            checks.append(check)
            exports.append(
                {
                    "seconds": export.seconds,
                    "rows_per_second": rows / export.seconds if export.seconds > 0 else 0.0,
                    "first_page_seconds": export.first_page_seconds,
                    "bytes": export.bytes,
                    "pages": len(export.pages),
                    "requests": export.requests,
                    "not_cached": export.not_cached,
                    "server_cpu_seconds": round(export.server_cpu_seconds, 3),
                    "client_cpu_seconds": round(export.client_cpu_seconds, 3),
                    "check": asdict(check),
                }
            )
            print(
                f"  export {attempt}/{repeat}: {export.seconds:.3f} s, {rows / export.seconds:,.0f} rows/s, "
                f"page 1 in {export.first_page_seconds * 1000:.0f} ms, {export.not_cached} not-cached answers, "
                f"server CPU {export.server_cpu_seconds:.2f} s, client CPU {export.client_cpu_seconds:.2f} s, "
                f"check {'passed' if check.passed else 'FAILED: ' + '; '.join(check.problems)}",
                file=sys.stderr,
            )
    best = min(exports, key=lambda each: float(each["seconds"]))
    return {
        "seconds": [each["seconds"] for each in exports],
        "best_seconds": best["seconds"],
        "rows_per_second": best["rows_per_second"],
        "bytes": best["bytes"],
        "pages": best["pages"],
        "exports": exports,
        "check_passed": all(check.passed for check in checks),
        "problems": [problem for check in checks for problem in check.problems],
    }


def print_table(console: Console, report: dict[str, Any]) -> None:
    runyard, peer = report["runyard"], report["duckdb_copy"]
    best = min(runyard["exports"], key=lambda each: float(each["seconds"]))
    table = Table(title=f"Exports: {report['rows']:,} rows, {report['output_type']}, best of {report['repeat']}")
    table.add_column("side")
    table.add_column("rows/s", justify="right")
    table.add_column("best s", justify="right")
    table.add_column("all s", justify="right")
    table.add_column("bytes", justify="right")
    table.add_column("CPU s (best)", justify="right")
    table.add_column(f"ratio (target ≥ {TARGET_RATIO})", justify="right")
    table.add_row(
        f"runyard API, pageSize {report['page_size']:,} ({runyard['pages']} pages)",
        f"{runyard['rows_per_second']:,.0f}",
        f"{runyard['best_seconds']:.3f}",
        ", ".join(f"{s:.3f}" for s in runyard["seconds"]),
        f"{runyard['bytes']:,}",
        f"{best['server_cpu_seconds']:.2f} server + {best['client_cpu_seconds']:.2f} client",
        f"{report['ratio']:.2f}",
    )
    table.add_row(
        "DuckDB COPY" + (" (gzip)" if report["output_type"] == "gzip" else ""),
        f"{peer['rows_per_second']:,.0f}",
        f"{peer['best_seconds']:.3f}",
        ", ".join(f"{s:.3f}" for s in peer["seconds"]),
        f"{peer['bytes']:,}",
        f"{peer['cpu_seconds'][peer['seconds'].index(peer['best_seconds'])]:.2f}",
        "",
    )
    console.print(table)
    check = "passed" if runyard["check_passed"] else "FAILED: " + "; ".join(runyard["problems"])
    console.print(f"row check: {check}", markup=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the table (default 1,000,000)")
    parser.add_argument("--page-size", type=int, default=10_000, help="pageSize of the export (default 10,000)")
    parser.add_argument("--output-type", choices=("csv", "gzip"), default="csv", help="outputType (default csv)")
    parser.add_argument("--repeat", type=int, default=3, help="exports and COPYs measured; the best counts (3)")
    parser.add_argument("--retry-sleep", type=float, default=0.001, help="pause before asking a page again (s)")
    parser.add_argument("--json", metavar="PATH", type=Path, help="also write the figures here")
    parser.add_argument(
        "--min-ratio",
        type=float,
        default=0.0,
        help=f"exit 1 when runyard/DuckDB rows/s is below this (default 0; the issue's target is {TARGET_RATIO})",
    )
    args = parser.parse_args(argv)
    if args.rows < 1 or args.repeat < 1 or args.page_size < 1:
        parser.error("--rows, --repeat and --page-size must be at least 1")

    console = Console(width=None if sys.stdout.isatty() else 160)
    started_at = datetime.now(UTC)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="runyard-bench-export-") as folder:
        home = Path(folder) / "home"
        warehouse = home / "warehouse" / f"{ACCOUNT}.duckdb"
        print(f"creating {TABLE}: {args.rows:,} rows in {warehouse}...", file=sys.stderr)
        create_seconds = create_table(warehouse, args.rows)
        print(f"measuring DuckDB COPY ({args.output_type}), {args.repeat} times...", file=sys.stderr)
        suffix = ".csv.gz" if args.output_type == "gzip" else ".csv"
        peer = measure_peer(warehouse, Path(folder) / f"peer{suffix}", args.rows, args.output_type, args.repeat)
        print(f"measuring runyard serve, {args.repeat} exports...", file=sys.stderr)
        runyard = measure_runyard(home, args.rows, args.page_size, args.output_type, args.repeat, args.retry_sleep)
    elapsed = (datetime.now(UTC) - started_at).total_seconds()
    peer_rate = args.rows / peer.best
    ratio = runyard["rows_per_second"] / peer_rate
    report = {
        "date": started_at.isoformat(timespec="seconds"),
        "elapsed_seconds": elapsed,
        "command": command_line("bench/export.py", argv if argv is not None else sys.argv[1:], None),
        "code": code_version(),
        "machine": {**machine(None), "load_average_before": load_before, "duckdb": duckdb.__version__},
        "rows": args.rows,
        "page_size": args.page_size,
        "output_type": args.output_type,
        "repeat": args.repeat,
        "retry_sleep_seconds": args.retry_sleep,
        "create_table_seconds": create_seconds,
        "runyard": runyard,
        "duckdb_copy": {
            "statement": f"COPY ({PEER_SELECT}) TO '<tmp>/peer{suffix}' "
            f"({'HEADER, COMPRESSION gzip' if args.output_type == 'gzip' else 'HEADER'})",
            "seconds": peer.seconds,
            "best_seconds": peer.best,
            "cpu_seconds": [round(cpu, 3) for cpu in peer.cpu_seconds],
            "rows_per_second": peer_rate,
            "bytes": peer.bytes,
        },
        "ratio": ratio,
        "target_ratio": TARGET_RATIO,
        "min_ratio": args.min_ratio,
        "check_passed": runyard["check_passed"],
    }
    print_table(console, report)
    console.print(
        f"{started_at:%Y-%m-%d %H:%M} UTC, {elapsed:.0f} s, code {report['code']}; {json.dumps(report['machine'])}",
        markup=False,
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if not runyard["check_passed"]:
        console.print("error: the export paged wrong data (see the row check above)", style="bold red")
        return 2
    if ratio < args.min_ratio:
        console.print(f"error: ratio {ratio:.2f} is below --min-ratio {args.min_ratio}", style="bold red")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
