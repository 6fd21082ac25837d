"""RUNYARD_SECRET_KEY: long enough is not enough, it must look random; the keys people generate always pass."""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable
from pathlib import Path

import pytest

from runyard.errors import ConfigError
from runyard.settings import MAKE_A_KEY, MIN_SECRET_KEY_BITS_PER_BYTE, Settings, key_weakness

WEAK = [
    pytest.param("a" * 32, id="32 identical bytes"),
    pytest.param("\x00" * 64, id="64 zero bytes"),
    pytest.param("ab" * 32, id="two bytes alternating"),
    pytest.param("secret" * 6, id="a word repeated"),
    pytest.param("0123456789abcdef" * 2, id="sixteen distinct bytes repeated"),
    pytest.param("changeme-changeme-changeme-changeme", id="a phrase repeated"),
    pytest.param("a" * 100 + "bcdefghijk", id="mostly one byte"),
]


def settings(tmp_path: Path, key: str) -> Settings:
    return Settings(home=tmp_path, secret_key=key)


@pytest.mark.parametrize("key", WEAK)
def test_a_weak_key_is_refused_naming_the_variable_and_how_to_make_one(tmp_path: Path, key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        settings(tmp_path, key).signing_key()
    assert raised.value.field == "RUNYARD_SECRET_KEY"
    assert "RUNYARD_SECRET_KEY" in str(raised.value)
    assert MAKE_A_KEY in str(raised.value)
    assert MAKE_A_KEY == 'python -c "import secrets; print(secrets.token_urlsafe(48))"'


def test_the_message_says_why() -> None:
    assert key_weakness(b"a" * 32) == (
        "has too little entropy to be random (1 distinct bytes, 0.0 bits per byte; at least 3.0 wanted)"
    )
    assert key_weakness(b"0123456789abcdef" * 2) == "is a shorter string repeated, not a random key"


def test_a_short_key_is_still_refused_for_its_length(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="too short"):
        settings(tmp_path, secrets.token_urlsafe(16)).signing_key()


@pytest.mark.parametrize("size", [32, 33, 40, 48, 64, 128])
def test_token_urlsafe_keys_are_accepted(tmp_path: Path, size: int) -> None:
    key = secrets.token_urlsafe(size)
    assert settings(tmp_path, key).signing_key() == key.encode()
    for _ in range(2000):
        key = secrets.token_urlsafe(size)
        assert key_weakness(key.encode()) is None, key


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: secrets.token_hex(32), id="openssl rand -hex 32"),
        pytest.param(lambda: secrets.token_bytes(48).hex(), id="hex of 48 bytes"),
        pytest.param(
            lambda: "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(40)), id="a-z0-9"
        ),
        pytest.param(
            lambda: "".join(secrets.choice(string.ascii_uppercase + "234567") for _ in range(52)), id="base32"
        ),
    ],
)
def test_keys_from_other_common_generators_are_accepted(make: Callable[[], str]) -> None:
    for _ in range(500):
        key = make()
        assert key_weakness(key.encode()) is None, key


def test_keys_the_tests_and_benchmarks_use_pass() -> None:
    for key in (
        "sql-explorer-test-key-of-at-least-32-bytes",
        "fuzz-test-signing-key-of-at-least-32-bytes",
        "api-latency-benchmark-signing-key-0123456789",
    ):
        assert key_weakness(key.encode()) is None, key


def test_a_key_of_fewer_than_eight_distinct_bytes_can_never_pass() -> None:
    # Shannon entropy is at most log2(distinct bytes): seven give at most 2.81 bits per byte.
    key = "".join(secrets.choice("abcdefg") for _ in range(256)).encode()
    assert len(set(key)) <= 7
    assert MIN_SECRET_KEY_BITS_PER_BYTE > 2.81
    assert key_weakness(key) is not None


def test_the_generated_key_is_not_checked_against_the_setting(tmp_path: Path) -> None:
    generated = Settings(home=tmp_path).signing_key()
    assert key_weakness(generated) is None
    assert Settings(home=tmp_path).signing_key() == generated
