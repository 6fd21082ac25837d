"""Fixtures the reliability tests share: a runyard home, and the real `runyard worker` processes started on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runyard.store.database import Store
from tests.reliability.procs import Workers


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def workers(store: Store, home: Path) -> Iterator[Workers]:
    """Workers on the test's store and home; every one started is stopped at the end, whatever happened."""
    pool = Workers(store.url.render_as_string(hide_password=False), home)
    try:
        yield pool
    finally:
        pool.close()
