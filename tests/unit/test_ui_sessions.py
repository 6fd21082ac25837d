"""Session cookies, CSRF tokens and flash messages: signed, bound to one login, and refused when altered."""

from __future__ import annotations

import base64
import json

from runyard.ui.sessions import Flash, SessionSigner

KEY = b"k" * 32
NOW = 1_800_000_000.0


def signer(key: bytes = KEY) -> SessionSigner:
    return SessionSigner(key, lifetime_seconds=3600)


def test_a_session_reads_back_until_it_expires() -> None:
    cookie = signer().issue(7, 3, NOW)

    session = signer().read(cookie, NOW + 3599)

    assert session is not None
    assert (session.user_id, session.account_id, session.expires_at) == (7, 3, int(NOW) + 3600)
    assert signer().read(cookie, NOW + 3600) is None


def test_an_altered_or_foreign_cookie_is_no_session() -> None:
    cookie = signer().issue(7, 3, NOW)
    payload, _, signature = cookie.partition(".")
    forged_payload = (
        base64.urlsafe_b64encode(json.dumps({"u": 1, "a": 1, "e": int(NOW) + 9999, "n": "x"}).encode())
        .decode()
        .rstrip("=")
    )

    assert signer().read(f"{forged_payload}.{signature}", NOW) is None
    assert signer().read(f"{payload}.{signature[:-2]}xx", NOW) is None
    assert signer().read(payload, NOW) is None
    assert signer(b"q" * 32).read(cookie, NOW) is None
    assert signer().read("", NOW) is None
    assert signer().read("x" * 5000, NOW) is None
    assert signer().read("not base64!.abc", NOW) is None


def test_csrf_tokens_belong_to_one_login() -> None:
    first = signer().read(signer().issue(7, 3, NOW), NOW)
    second = signer().read(signer().issue(7, 3, NOW), NOW)
    assert first is not None
    assert second is not None

    token = signer().csrf_token(first)

    assert signer().csrf_valid(first, token)
    assert not signer().csrf_valid(second, token)  # a new login, a new token
    assert not signer().csrf_valid(first, None)
    assert not signer().csrf_valid(first, token + "x")


def test_flash_messages_are_signed_and_a_session_cookie_is_no_flash() -> None:
    flash = signer().flash("error", "Run 3 was not retried")

    assert signer().read_flash(flash) == Flash("error", "Run 3 was not retried")
    assert signer().read_flash(signer().issue(7, 3, NOW)) is None
    assert signer().read(flash, NOW) is None
    assert signer().read_flash(signer().flash("warning", "x")) is None
