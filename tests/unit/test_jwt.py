"""Access JWTs: the round trip, and the RFC 8725 forgery corpus of RELIABILITY S4, every one refused.

Forged tokens are built by hand (base64url JSON + HMAC), not with PyJWT, so that the library
under test has no say in what the attacker sends.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from typing import Any

import pytest

from runyard.api.auth import AccessLogRedactor, AuthFailed, TokenService, redact_query_token
from runyard.domain.statuses import Role
from runyard.services.tokens import Principal

KEY = b"unit-test-signing-key-of-32-bytes!!"
OTHER_KEY = b"another-signing-key-also-32-bytes-long"
PRINCIPAL = Principal(user_id=7, account_id=3, account="default", login="ada", role=Role.OPERATOR, via="jwt")
DIGESTS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


@pytest.fixture
def service() -> TokenService:
    return TokenService(KEY)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: dict[str, Any]) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def good_claims(**changes: Any) -> dict[str, Any]:
    """Valid access claims for PRINCIPAL; a change to None removes that claim."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": "7",
        "acct": 3,
        "role": "operator",
        "typ": "access",
        "iss": "runyard",
        "aud": "runyard-api",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": "abc",
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


def forge(claims: dict[str, Any], *, alg: str = "HS256", key: bytes = KEY, header: dict[str, Any] | None = None) -> str:
    """A compact JWS signed by hand; `alg` goes in the header, HS* sign with that hash, anything else with sha256."""
    head = b64json({"alg": alg, "typ": "JWT", **(header or {})})
    signing_input = f"{head}.{b64json(claims)}"
    digest = DIGESTS.get(alg, hashlib.sha256)
    signature = hmac.new(key, signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64(signature)}"


def refused(service: TokenService, token: str) -> AuthFailed:
    with pytest.raises(AuthFailed) as caught:
        service.verify(token)
    return caught.value


# --- what must work ---------------------------------------------------------------------------


def test_issue_then_verify_round_trip(service: TokenService) -> None:
    before = int(time.time())

    claims = service.verify(service.issue(PRINCIPAL))

    assert claims["sub"] == "7"
    assert claims["acct"] == 3
    assert claims["role"] == "operator"
    assert claims["typ"] == "access"
    assert (claims["iss"], claims["aud"]) == ("runyard", "runyard-api")
    assert before <= claims["iat"] == claims["nbf"] <= int(time.time())
    assert claims["exp"] - claims["iat"] == 600
    assert claims["jti"]


def test_every_token_has_its_own_jti(service: TokenService) -> None:
    first, second = (service.verify(service.issue(PRINCIPAL))["jti"] for _ in range(2))

    assert first != second


def test_header_is_exactly_alg_and_typ(service: TokenService) -> None:
    header = json.loads(base64.urlsafe_b64decode(service.issue(PRINCIPAL).split(".")[0] + "=="))

    assert header == {"alg": "HS256", "typ": "JWT"}


def test_ttl_issuer_and_audience_are_configurable() -> None:
    custom = TokenService(KEY, ttl_seconds=60, issuer="me", audience="them")

    claims = custom.verify(custom.issue(PRINCIPAL))

    assert (claims["exp"] - claims["iat"], claims["iss"], claims["aud"]) == (60, "me", "them")
    refused(TokenService(KEY), custom.issue(PRINCIPAL))


def test_a_hand_signed_valid_token_verifies(service: TokenService) -> None:
    """The forging helper is right, so every refusal below is about the one thing each test changes."""
    assert service.verify(forge(good_claims()))["sub"] == "7"


def test_expiry_within_the_leeway_is_tolerated(service: TokenService) -> None:
    assert service.verify(forge(good_claims(exp=int(time.time()) - 3)))["sub"] == "7"


# --- keys ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 16, 31])
def test_short_keys_are_refused(length: int) -> None:
    with pytest.raises(ValueError, match="at least 32"):
        TokenService(b"k" * length)


def test_a_32_byte_key_is_accepted() -> None:
    service = TokenService(b"k" * 32)

    assert service.verify(service.issue(PRINCIPAL))["sub"] == "7"


def test_token_signed_with_another_key_is_refused(service: TokenService) -> None:
    refused(service, TokenService(OTHER_KEY).issue(PRINCIPAL))
    refused(service, forge(good_claims(), key=OTHER_KEY))


# --- algorithms (RFC 8725 §3.1, §3.2) -----------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_is_refused(service: TokenService, alg: str) -> None:
    token = f"{b64json({'alg': alg, 'typ': 'JWT'})}.{b64json(good_claims())}."

    refused(service, token)


@pytest.mark.parametrize("alg", ["HS384", "HS512"])
def test_other_hmac_algorithms_are_refused_even_with_the_right_key(service: TokenService, alg: str) -> None:
    refused(service, forge(good_claims(), alg=alg))


@pytest.mark.parametrize("alg", ["RS256", "ES256", "PS256", "EdDSA"])
def test_asymmetric_alg_headers_are_refused(service: TokenService, alg: str) -> None:
    """Algorithm confusion: an RS256 header over an HMAC made with our key must not verify."""
    refused(service, forge(good_claims(), alg=alg))


# --- signature and payload ---------------------------------------------------------------------


def test_stripped_signature_is_refused(service: TokenService) -> None:
    head, payload, _signature = service.issue(PRINCIPAL).split(".")

    refused(service, f"{head}.{payload}.")
    refused(service, f"{head}.{payload}")


def test_tampered_payload_is_refused(service: TokenService) -> None:
    head, _payload, signature = service.issue(PRINCIPAL).split(".")
    promoted = b64json(good_claims(sub="1", role="administrator"))

    refused(service, f"{head}.{promoted}.{signature}")


def test_tampered_header_is_refused(service: TokenService) -> None:
    _head, payload, signature = service.issue(PRINCIPAL).split(".")
    other_head = b64json({"typ": "JWT", "alg": "HS256"})  # same meaning, other bytes

    refused(service, f"{other_head}.{payload}.{signature}")


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "...", "x" * 5000, "ry_abcdef12_secret"])
def test_garbage_is_refused(service: TokenService, token: str) -> None:
    refused(service, token)


# --- time claims (RFC 8725 §3.10 is about keys; these are RFC 7519 §4.1) ---------------------


def test_expired_beyond_leeway_is_refused(service: TokenService) -> None:
    now = int(time.time())

    refused(service, forge(good_claims(iat=now - 700, nbf=now - 700, exp=now - 60)))


def test_nbf_in_the_future_is_refused(service: TokenService) -> None:
    refused(service, forge(good_claims(nbf=int(time.time()) + 120)))


def test_iat_in_the_future_is_refused(service: TokenService) -> None:
    refused(service, forge(good_claims(iat=int(time.time()) + 120)))


# --- tokens remembered as verified ------------------------------------------------------------


def test_a_remembered_token_still_expires(service: TokenService, monkeypatch: pytest.MonkeyPatch) -> None:
    token = service.issue(PRINCIPAL)
    assert service.verify(token)["sub"] == "7"  # verified, then remembered
    expiry = service.verify(token)["exp"]

    later = expiry + 11  # past the 10 s leeway
    monkeypatch.setattr(time, "time", lambda: later)

    assert "expired" in refused(service, token).reason


def test_a_remembered_token_is_not_valid_before_its_time(
    service: TokenService, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = service.issue(PRINCIPAL)
    issued = service.verify(token)["iat"]

    monkeypatch.setattr(time, "time", lambda: issued - 60)  # a clock stepped back

    assert "not yet valid" in refused(service, token).reason


def test_a_copy_of_a_remembered_token_with_another_signature_is_refused(service: TokenService) -> None:
    token = service.issue(PRINCIPAL)
    service.verify(token)
    head, body, signature = token.split(".")
    other = "A" if signature[0] != "A" else "B"

    refused(service, f"{head}.{body}.{other}{signature[1:]}")
    refused(service, f"{head}.{b64json({**good_claims(), 'sub': '1'})}.{signature}")  # the claims changed


def test_refused_tokens_are_not_remembered(service: TokenService) -> None:
    forged = forge(good_claims(), key=OTHER_KEY)

    for _ in range(3):
        refused(service, forged)  # each time the full check, each time refused
    assert service._verified == {}


def test_remembered_tokens_are_bounded(service: TokenService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("runyard.api.auth.VERIFIED_CACHE_SIZE", 3)
    tokens = [service.issue(PRINCIPAL) for _ in range(5)]

    for token in tokens:
        assert service.verify(token)["jti"]
    assert list(service._verified) == tokens[2:]  # the oldest went first

    assert service.verify(tokens[0])["sub"] == "7"  # evicted: verified again in full, and still valid
    assert list(service._verified) == [*tokens[3:], tokens[0]]


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf", "iss", "aud", "sub", "typ", "jti"])
def test_missing_claims_are_refused(service: TokenService, claim: str) -> None:
    refused(service, forge(good_claims(**{claim: None})))


# --- audience, issuer, type (RFC 8725 §3.9, §3.11, §3.12) --------------------------------------


@pytest.mark.parametrize("aud", ["other-api", "", ["runyard-api", "other-api"], ["runyard-api"]])
def test_wrong_audience_is_refused(service: TokenService, aud: Any) -> None:
    refused(service, forge(good_claims(aud=aud)))


@pytest.mark.parametrize("iss", ["someone-else", "", "RUNYARD"])
def test_wrong_issuer_is_refused(service: TokenService, iss: str) -> None:
    refused(service, forge(good_claims(iss=iss)))


@pytest.mark.parametrize("typ", ["refresh", "id", "ACCESS", ""])
def test_other_token_types_are_refused(service: TokenService, typ: str) -> None:
    error = refused(service, forge(good_claims(typ=typ)))

    assert "access" in error.reason or "typ" in error.reason


def test_non_string_subject_is_refused(service: TokenService) -> None:
    refused(service, forge(good_claims(sub=7)))


# --- header parameters (RFC 8725 §3.10: never fetch or pick keys from the token) ----------------


@pytest.mark.parametrize(
    "header",
    [
        {"kid": "1"},
        {"kid": "../../dev/null"},
        {"jku": "https://attacker.example/jwks.json"},
        {"jwk": {"kty": "oct", "k": b64(KEY)}},
        {"x5u": "https://attacker.example/cert.pem"},
        {"x5c": ["MIIB"]},
        {"crit": ["exp"]},
    ],
)
def test_key_selection_headers_are_refused(service: TokenService, header: dict[str, Any]) -> None:
    """Signed with the right key, so the header alone is why each is refused."""
    refused(service, forge(good_claims(), header=header))


# --- redaction for the access log --------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("/etl/rest/v1/tasks/", "/etl/rest/v1/tasks/"),
        ("/etl/rest/v1/tasks/?type=stream", "/etl/rest/v1/tasks/?type=stream"),
        (
            "/etl/rest/v1/tasks/?type=stream&Authorization=Bearer%20eyJ.abc.def",
            "/etl/rest/v1/tasks/?type=stream&Authorization=[redacted]",
        ),
        ("/x?authorization=Bearer+abc&id=1", "/x?authorization=[redacted]&id=1"),
        ("/x?AUTHORIZATION=abc", "/x?AUTHORIZATION=[redacted]"),
        ("/x?%41uthorization=abc", "/x?%41uthorization=[redacted]"),
        ("/x?token=ry_ab_cd&TOKEN=ry_ef_gh&Token=z", "/x?token=[redacted]&TOKEN=[redacted]&Token=[redacted]"),
        ("/x?access_token=abc", "/x?access_token=[redacted]"),
        ("/x?token", "/x?token=[redacted]"),
        ("/x?token=", "/x?token=[redacted]"),
        ("/x?tokens=1&my_token=2&authorization_hint=3", "/x?tokens=1&my_token=2&authorization_hint=3"),
        ("/x?name=Job%231&token=abc#frag", "/x?name=Job%231&token=[redacted]#frag"),
        (
            "https://h.example:8080/a?b=1&Authorization=Bearer%20t",
            "https://h.example:8080/a?b=1&Authorization=[redacted]",
        ),
        ("/x?a=1&&b=2", "/x?a=1&&b=2"),
    ],
)
def test_redact_query_token(given: str, expected: str) -> None:
    assert redact_query_token(given) == expected


def test_access_log_redactor_hides_the_token_in_uvicorn_records() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/etl/rest/v1/tasks/?Authorization=Bearer%20secret-jwt", "1.1", 200),
        None,
    )

    assert AccessLogRedactor().filter(record)

    message = record.getMessage()
    assert "secret-jwt" not in message
    assert message == '127.0.0.1:5000 - "GET /etl/rest/v1/tasks/?Authorization=[redacted] HTTP/1.1" 200'
