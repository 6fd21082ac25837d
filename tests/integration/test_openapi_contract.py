"""/openapi.json is the exact contract: schemathesis with every check, over real HTTP, finds nothing.

The app is served on loopback over a seeded SQLite store (test_openapi_fuzz's seed: three operations and their
runs). The `schemathesis run` command (a subprocess, as a user runs it) loads the live `/openapi.json` and runs
its examples, coverage and fuzzing phases with `--checks all`: no 5xx, every status code, content type, header
and body documented, schema-valid requests accepted and schema-violating ones refused, `Allow` listing exactly
the documented methods, unsupported methods answering 405, every guarded operation refusing a request without
credentials. The seed is fixed and generation deterministic, and the number of examples per operation bounded,
so a run is the same every time and takes about a minute on two cores.

It acts as an administrator whose user id is too large for the fuzzer to draw (deleting user 1 deactivates
the bootstrap administrator, not it). A few operations take values whose validity a schema cannot state (see
`SEMANTIC_400`): there a 400 to a schema-valid request is the documented refusal, not a contract failure.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher

from runyard.app import create_app
from runyard.runtime import Runtime, engine_resources, open_store
from runyard.services import accounts, tokens
from runyard.services.accounts import create_user
from runyard.settings import Settings
from runyard.store.tables import users
from tests import live_server
from tests.integration.test_openapi_fuzz import SIGNING_KEY, SSE_PATH, _seed

pytestmark = pytest.mark.slow

FUZZER_LOGIN = "contract-fuzzer"
FUZZER_PASSWORD = "contract-fuzzer-password"
# Far from the ids the fuzzer draws (boundaries 1 and 2**31 - 1, and small or random numbers).
FUZZER_ID = 1_234_567_891
SEED = 16
MAX_EXAMPLES = 12  # per operation and phase
RUN_SECONDS = 240  # the subprocess's own bound; pytest's timeout is the outer one

# Operations whose requests can be schema-valid and still wrong in a way no schema states: a 400 there is the
# documented answer (400 is in each one's responses) and the positive_data_acceptance check allows it.
SEMANTIC_400 = {
    # The SQL must parse and read only the account's tables.
    "^/api/v1/sql$": "SQL text",
    # A rule's channel_id names a channel of the caller's account (state, not schema); a channel's target must
    # suit its kind (a webhook URL, or email addresses).
    "^/api/v1/notifications/(rules|channels)$": "a channel of the account; a target that suits the kind",
    # A silence's `until` must be in the future: it depends on the clock.
    "^/api/v1/alerts/": "a time in the future",
    # Spec 004: continuation tokens and task ids are HMAC-signed (which strings runyard signed is no pattern),
    # and pageSize's bound depends on outputType.
    "^/api/integrations?/v2/": "signed continuation tokens",
    # Spec 003: the action, configuration_type and identity must agree (e.g. reset_workflow_status needs a workflow).
    "^/v1/": "fields that must agree with each other",
}


def _config(path: Path) -> Path:
    lines = [
        "[generation]",
        "deterministic = true",
        'database = "none"',
        "",
    ]
    for regex in SEMANTIC_400:
        lines += [
            "[[operations]]",
            f'include-path-regex = "{regex}"',
            "checks.positive_data_acceptance.expected-statuses = "
            '["2xx", "3xx", "400", "401", "403", "404", "409", "429", "5xx"]',
            "",
        ]
    path.write_text("\n".join(lines))
    return path


def _add_fuzzer(runtime: Runtime) -> None:
    user_id = create_user(
        runtime.store, account="default", login=FUZZER_LOGIN, password=FUZZER_PASSWORD, role="administrator"
    )
    with runtime.store.write() as conn:
        conn.execute(users.update().where(users.c.id == user_id).values(id=FUZZER_ID))
        assert conn.execute(sa.select(users.c.id).where(users.c.login == FUZZER_LOGIN)).scalar_one() == FUZZER_ID


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The base URL of the seeded app on loopback, and the fuzzing administrator's JWT."""
    home = tmp_path_factory.mktemp("contract")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(accounts, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
        tokens._dummy_hash.cache_clear()
        settings = Settings(home=home, secret_key=SIGNING_KEY)
        runtime = Runtime(settings, open_store(settings), resources=engine_resources(settings))
        try:
            _seed(runtime)
            _add_fuzzer(runtime)
            with live_server.serving(create_app(runtime), name="uvicorn-contract") as base_url:
                response = httpx.post(
                    f"{base_url}/api/v1/auth/token",
                    json={"login": FUZZER_LOGIN, "password": FUZZER_PASSWORD},
                    timeout=10,
                )
                assert response.status_code == 200, response.text
                yield base_url, response.json()["access_token"]
        finally:
            runtime.close()
            tokens._dummy_hash.cache_clear()  # the next module must not inherit a cheap dummy hash


def test_schemathesis_with_every_check_finds_nothing(served: tuple[str, str], tmp_path: Path) -> None:
    base_url, token = served
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(_config(tmp_path / "schemathesis.toml")),
        "run",
        f"{base_url}/openapi.json",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing",
        "--mode",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--generation-deterministic",
        "--workers",
        "1",
        "--request-timeout",
        "20",
        "--exclude-path",
        SSE_PATH,  # never ends while its run is active; tested with a real stream elsewhere
        "--header",
        f"Authorization: Bearer {token}",
        "--no-color",
        "--output-truncate",
        "true",
        "--warnings",
        "off",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=RUN_SECONDS, check=False, cwd=tmp_path)
    # The Allow check passes on an empty header too: make sure there is one, and the right one.
    allow = httpx.options(f"{base_url}/api/v1/users", timeout=10)
    assert (allow.status_code, allow.headers.get("allow")) == (405, "GET, POST")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-20000:]
    assert " passed" in output, output[-5000:]
