"""`runyard serve` over real HTTP on loopback: a body over RUNYARD_MAX_BODY_BYTES answers 413 before it is read
(declared or chunked), a JSON body nested too deep answers 400, normal requests are unaffected, and a path that
carries a forged log line is logged on one escaped line.

Raw sockets where a client library would not send what an attacker sends: a Content-Length the body never
reaches, a chunked body, a path with %0A in it.
"""

from __future__ import annotations

import json
import re
import signal
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from runyard.limits import MAX_JSON_DEPTH
from runyard.settings import Settings
from tests.integration.cli_helpers import Background, Runyard, free_port, wait_until

STARTUP_SECONDS = 30.0
SOCKET_SECONDS = 30.0
LIMIT = 2 * 1024 * 1024  # the default, which the server runs with
PASSWORD = "limits-test-password-1"
FORGED = "2026-12-05 12:00:00,000 INFO runyard.access: POST /api/v1/users 201 1.0ms"
FORGING_PATH = (
    "/x%0ATraceback%0A2026-12-05%2012:00:00,000%20INFO%20runyard.access:%20POST%20/api/v1/users%20201%201.0ms"
)


@dataclass
class Served:
    url: str
    port: int
    process: Background

    def health(self) -> int:
        assert self.process.alive(), self.process.describe()
        return httpx.get(f"{self.url}/healthz", timeout=10).status_code

    def token(self) -> str:
        response = httpx.post(f"{self.url}/api/v1/auth/token", json={"login": "admin", "password": PASSWORD})
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("limits")
    cli = Runyard(home / "home", extra_env={"RUNYARD_ADMIN_PASSWORD": PASSWORD})
    port = free_port()
    process = cli.spawn("serve", "--port", str(port), log=home / "serve")
    running = Served(f"http://127.0.0.1:{port}", port, process)
    try:

        def up() -> bool:
            try:
                return running.health() == 200
            except httpx.TransportError:
                return False

        wait_until(up, timeout=STARTUP_SECONDS, what="runyard serve to answer /healthz")
        yield running
    finally:
        process.stop(signal.SIGKILL)


def exchange(port: int, head: bytes, body_parts: Iterable[bytes] = ()) -> bytes:
    """Send `head` then each body part while the server reads them; everything it answered, until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_SECONDS) as sock:
        sock.sendall(head)
        for part in body_parts:
            try:
                sock.sendall(part)
            except (BrokenPipeError, ConnectionResetError):  # it answered and closed without reading the rest
                break
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:  # the unread rest of the body resets the connection after the answer
            pass
    return answer


def status_and_json(answer: bytes) -> tuple[int, dict[str, object], str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    assert status_line.startswith("HTTP/1.1 "), answer[:300]
    return int(status_line.split()[1]), json.loads(body), "\r\n".join(header_lines).lower()


def request_head(method: str, path: str, *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *headers, "", ""]
    return "\r\n".join(lines).encode("latin-1")


def chunked(total: int, piece: bytes) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b"%x\r\n%s\r\n" % (len(piece), piece)
        sent += len(piece)
    yield b"0\r\n\r\n"


def nested(depth: int) -> bytes:
    return b'{"login": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b', "password": "x"}'


# --- size ----------------------------------------------------------------------------------------------------------


def test_the_default_limit_fits_the_largest_body_a_route_accepts() -> None:
    assert Settings.model_fields["max_body_bytes"].default == LIMIT


def test_a_declared_oversized_body_answers_413_before_it_is_sent(served: Served) -> None:
    declared = 3 * 1024 * 1024
    head = request_head("POST", "/api/v1/auth/token", "Content-Type: application/json", f"Content-Length: {declared}")
    # Only 64 KiB of the 3 MiB ever leave: the answer comes without the server waiting for the rest.
    answer = exchange(served.port, head, [b"[" * 65536])
    status, body, headers = status_and_json(answer)
    assert status == 413
    assert body == {"detail": f"the request body is larger than {LIMIT:,} bytes (RUNYARD_MAX_BODY_BYTES)"}
    assert "connection: close" in headers
    assert "x-content-type-options: nosniff" in headers  # answered inside the access log and headers middleware
    assert served.health() == 200


def test_any_route_refuses_a_declared_oversized_body(served: Served) -> None:
    for method, path in (("GET", "/healthz"), ("POST", "/login"), ("POST", "/sql")):
        head = request_head(method, path, f"Content-Length: {LIMIT + 1}", "Content-Type: text/plain")
        status, body, _ = status_and_json(exchange(served.port, head, [b"x" * 1024]))
        assert status == 413, (path, body)
    assert served.health() == 200


def test_a_chunked_json_body_past_the_limit_answers_413(served: Served) -> None:
    head = request_head("POST", "/api/v1/auth/token", "Content-Type: application/json", "Transfer-Encoding: chunked")
    answer = exchange(served.port, head, chunked(LIMIT + 3 * 65536, b" " * 65536))
    status, body, headers = status_and_json(answer)
    assert status == 413
    assert "RUNYARD_MAX_BODY_BYTES" in str(body["detail"])
    assert "connection: close" in headers
    assert served.health() == 200


def test_a_chunked_body_of_another_type_past_the_limit_answers_413_as_the_app_reads_it(served: Served) -> None:
    head = request_head("POST", "/api/v1/auth/token", "Content-Type: text/plain", "Transfer-Encoding: chunked")
    answer = exchange(served.port, head, chunked(LIMIT + 3 * 65536, b"y" * 65536))
    status, body, _ = status_and_json(answer)
    assert status == 413
    assert "RUNYARD_MAX_BODY_BYTES" in str(body["detail"])
    assert served.health() == 200


def test_spec_003_answers_an_oversized_body_in_its_own_shape(served: Served) -> None:
    head = request_head("POST", "/v1/dag/launch", "Content-Type: application/json", f"Content-Length: {LIMIT * 2}")
    status, body, _ = status_and_json(exchange(served.port, head, [b"{" * 1024]))
    assert status == 413
    assert body["code"] == 413
    assert body["data"] == {}
    assert "RUNYARD_MAX_BODY_BYTES" in str(body["message"])


def test_a_chunked_body_within_the_limit_is_read_whole(served: Served) -> None:
    body = json.dumps({"login": "admin", "password": PASSWORD}).encode()
    head = request_head(
        "POST",
        "/api/v1/auth/token",
        "Content-Type: application/json",
        "Transfer-Encoding: chunked",
        "Connection: close",
    )
    parts = [b"%x\r\n%s\r\n" % (len(body[i : i + 5]), body[i : i + 5]) for i in range(0, len(body), 5)]
    status, answer, _ = status_and_json(exchange(served.port, head, [*parts, b"0\r\n\r\n"]))
    assert status == 200, answer
    assert answer["access_token"]


def test_the_largest_sql_query_passes_the_limit(served: Served) -> None:
    # 100,000 characters (the explorer's own limit), ASCII-escaped by json.dumps: each emoji is 12 bytes.
    prefix = "SELECT 1 AS one -- "
    sql = prefix + "\U0001f642" * (100_000 - len(prefix))
    body = json.dumps({"sql": sql}).encode()
    assert len(body) > 1_100_000
    response = httpx.post(
        f"{served.url}/api/v1/sql",
        content=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {served.token()}"},
        timeout=60,
    )
    assert response.status_code == 200, response.text[:500]
    assert response.json()["rows"] == [[1]]


# --- depth ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 100_000])
def test_json_nested_too_deep_answers_400(served: Served, depth: int) -> None:
    response = httpx.post(
        f"{served.url}/api/v1/auth/token", content=nested(depth), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text[:300]
    assert response.json() == {"detail": f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels"}
    assert served.health() == 200


def test_json_at_the_depth_limit_reaches_the_route(served: Served) -> None:
    response = httpx.post(
        f"{served.url}/api/v1/auth/token", content=nested(MAX_JSON_DEPTH), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert "nested" not in response.json()["detail"]
    assert "login" in response.json()["detail"]  # the route's own validation answered


def test_brackets_inside_strings_do_not_count(served: Served) -> None:
    body = json.dumps({"login": "admin", "password": "[" * 500 + PASSWORD}).encode()
    response = httpx.post(f"{served.url}/api/v1/auth/token", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 401, response.text


def test_json_without_a_content_type_is_checked_too(served: Served) -> None:
    head = request_head("POST", "/api/v1/auth/token", f"Content-Length: {len(nested(1000))}", "Connection: close")
    status, body, _ = status_and_json(exchange(served.port, head, [nested(1000)]))
    assert status == 400
    assert "nested deeper" in str(body["detail"])


def test_spec_003_answers_deep_json_in_its_own_shape(served: Served) -> None:
    response = httpx.post(
        f"{served.url}/v1/dag/launch", content=b"[" * 5000 + b"]" * 5000, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json() == {
        "code": 400,
        "data": {},
        "message": f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels",
    }


# --- normal requests -------------------------------------------------------------------------------------------------


def test_normal_requests_are_unaffected(served: Served) -> None:
    token = served.token()
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=served.url, headers=auth, timeout=30) as client:
        assert client.get("/api/v1/operations").status_code == 200
        sql = client.post("/api/v1/sql", json={"sql": "SELECT 2 AS two", "limit": 5})
        assert sql.status_code == 200, sql.text
        assert sql.json()["rows"] == [[2]]
        missing = client.post("/api/v1/runs/999999/cancel")
        assert missing.status_code == 404, missing.text
    login = httpx.get(f"{served.url}/login")
    assert login.status_code == 200


# --- the access log --------------------------------------------------------------------------------------------------


def test_a_path_that_forges_a_log_line_is_logged_on_one_escaped_line(served: Served) -> None:
    head = request_head("GET", FORGING_PATH, "Connection: close")
    answer = exchange(served.port, head)
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    escaped = f"GET /x\\nTraceback\\n{FORGED} "

    def logged() -> list[str]:
        return [line for line in served.process.stderr.splitlines() if escaped in line]

    lines = wait_until(logged, timeout=10, what="the access line of the forging request")
    assert len(lines) == 1, lines
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO runyard\.access: GET /x\\n", lines[0]), lines[0]
    log = served.process.stderr.splitlines()
    assert not [line for line in log if line.startswith("2026-12-05 12:00:00,000")], log
    assert "Traceback" not in [line.strip() for line in log]


def test_a_path_with_other_control_characters_is_escaped(served: Served) -> None:
    head = request_head("GET", "/y%0D%1B%5B31m%E2%80%A8z%C2%85end", "Connection: close")
    assert exchange(served.port, head).startswith(b"HTTP/1.1 ")

    def logged() -> list[str]:
        return [line for line in served.process.stderr.splitlines() if "GET /y" in line]

    lines = wait_until(logged, timeout=10, what="the access line of the request")
    assert len(lines) == 1, lines
    assert "GET /y\\r\\x1b[31m\\u2028z\\x85end " in lines[0], lines[0]
