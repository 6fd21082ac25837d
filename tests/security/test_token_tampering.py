"""Spec 004's continuation tokens under attack (RELIABILITY.md S11), over real HTTP.

A token is `<session uuid>.<HMAC>`: every altered form (a flipped bit, another HMAC, a base64 edit, padding,
another instance's key) answers 400 naming the token; another account's users get 404 as for a session that does
not exist; parameters changed between pages answer 400; page sizes out of range answer 400; the real token still
pages afterwards.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from runyard.services.exports import ExportTokens
from tests.integration.rest_harness import RestStack, database, rest_stack, wait_for

VIEW = "/api/integration/v2/biviews/events"
STATUS = "/api/integrations/v2/biviews-status"
TOKEN = "continuation-token"
INVALID = "continuation token is not valid"


@dataclass
class World:
    stack: RestStack
    token: str  # page 1 of `events`, pageSize=100, fromDate 2024-01-01


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("tokens")
    with database("sqlite", directory, lambda: "") as url, rest_stack(directory / "home", url) as stack:
        assert stack.runtime.warehouses is not None
        stack.runtime.warehouses.for_account("default").query(
            "CREATE TABLE events AS SELECT range AS id, TIMESTAMP '2024-01-01' + to_minutes(range) AS "
            "_runyard_loaded_at FROM range(1000)"
        )
        first = stack.as_user("default", "operator").get(
            VIEW, params={"pagenum": 1, "pageSize": 100, "fromDate": "2024-01-01"}
        )
        assert first.status_code == 200, first.text
        yield World(stack, first.headers[TOKEN])


def page(
    client: httpx.Client, token: str, number: int = 2, params: dict[str, str | int] | None = None
) -> httpx.Response:
    """A later page, asked again while it is not cached yet."""

    def answered() -> httpx.Response | None:
        response = client.get(VIEW, params={"pagenum": number, **(params or {})}, headers={TOKEN: token})
        return None if response.status_code == 400 and "not yet" in response.json()["detail"] else response

    return wait_for(answered, timeout=30, what=f"page {number}")


def _flip(text: str, index: int, bit: int) -> str:
    return text[:index] + chr(ord(text[index]) ^ (1 << bit)) + text[index + 1 :]


def tampered(token: str) -> list[str]:
    session, signature = token.split(".")
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    forged_key = hmac.new(b"guessed-key", session.encode(), hashlib.sha256).digest()[: len(raw)]
    other_instance = ExportTokens(b"another-instance-signing-key-of-32-bytes!").issue(session)
    flipped_bits = [_flip(token, i, bit) for i in range(0, len(token), 3) for bit in (0, 5)]
    return [
        *[t for t in flipped_bits if t != token and t.isascii() and t.isprintable() and t == t.strip()],
        f"{session}.{base64.urlsafe_b64encode(forged_key).rstrip(b'=').decode()}",  # forged HMAC
        other_instance,  # a real HMAC under another instance's key
        f"{session}.{base64.urlsafe_b64encode(raw[:-1]).rstrip(b'=').decode()}",  # truncated
        f"{session}.{base64.urlsafe_b64encode(raw + b'x').rstrip(b'=').decode()}",  # extended
        f"{session}.{signature}==",  # padding added
        f"{session}.{base64.standard_b64encode(raw).decode()}",  # the other alphabet
        f"{session}.{signature}.{signature}",
        f"{session.upper()}.{signature}",
        f"{uuid.uuid4()}.{signature}",  # another session, this signature
        f"{session}.",
        f".{signature}",
        session,
        signature,
        base64.b64encode(token.encode()).decode(),
    ]


def test_every_tampered_token_is_400_and_the_real_one_still_pages(world: World) -> None:
    client = world.stack.as_user("default", "operator")
    for forged in tampered(world.token):
        response = client.get(VIEW, params={"pagenum": 2}, headers={TOKEN: forged})
        assert response.status_code == 400, (forged, response.text)
        assert INVALID in response.json()["detail"], (forged, response.json())
        status = client.get(f"{STATUS}/{forged}")
        assert status.status_code in (400, 404), (forged, status.text)
    assert page(client, world.token).status_code == 200


@pytest.mark.parametrize("role", ["operator", "administrator"])
def test_another_accounts_users_get_404_for_the_token(world: World, role: str) -> None:
    other = world.stack.as_user("other", role)
    assert other.get(VIEW, params={"pagenum": 2}, headers={TOKEN: world.token}).status_code == 404
    assert other.get(f"{STATUS}/{world.token}").status_code == 404
    assert other.delete(f"{STATUS}/{world.token}").status_code == 404
    listed = other.get(STATUS).json()
    assert all(world.token != s["task_id"] for queue in listed.values() for s in queue)
    assert page(world.stack.as_user("default", "operator"), world.token).status_code == 200  # not canceled


def test_a_viewer_of_the_same_account_cannot_replay_it(world: World) -> None:
    viewer = world.stack.as_user("default", "viewer")
    assert viewer.get(VIEW, params={"pagenum": 2}, headers={TOKEN: world.token}).status_code == 403


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"pageSize": 50}, "pageSize=100"),
        ({"pageSize": 1}, "pageSize=100"),
        ({"fromDate": "2024-01-02"}, "fromDate=2024-01-01"),
        ({"toDate": "2024-06-01"}, "toDate=None"),
        ({"outputType": "json"}, "outputType=csv"),
    ],
)
def test_changed_parameters_mid_paging_are_400(world: World, params: dict[str, str | int], named: str) -> None:
    client = world.stack.as_user("default", "operator")
    response = page(client, world.token, params=params)
    assert response.status_code == 400, response.text
    assert "parameters cannot change between pages" in response.json()["detail"]
    assert named in response.json()["detail"]


def test_repeating_page_ones_parameters_is_allowed(world: World) -> None:
    client = world.stack.as_user("default", "operator")
    same = page(client, world.token, params={"pageSize": 100, "fromDate": "2024-01-01T00:00:00", "outputType": "CSV"})
    assert same.status_code == 200, same.text


@pytest.mark.parametrize("size", ["-1", "0", "-99999999999999999999", "10001", "99999999999999999999", "1e3", "0x10"])
def test_page_sizes_out_of_range_are_400(world: World, size: str) -> None:
    response = world.stack.as_user("default", "operator").get(VIEW, params={"pagenum": 1, "pageSize": size})
    assert response.status_code == 400, response.text
    assert "pageSize" in response.json()["detail"]


@pytest.mark.parametrize("number", ["-1", "99999999999999999999", "1.5"])
def test_bad_page_numbers_with_the_token_are_4xx(world: World, number: str) -> None:
    response = world.stack.as_user("default", "operator").get(
        VIEW, params={"pagenum": number}, headers={TOKEN: world.token}
    )
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["detail"]
