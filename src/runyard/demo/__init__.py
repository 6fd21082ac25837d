"""The demo: operations that ship with runyard so a newcomer sees real runs at once."""

from __future__ import annotations

from pathlib import Path

OPERATIONS = Path(__file__).parent / "operations"
