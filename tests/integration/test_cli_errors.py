"""The `runyard` command's answer to a command line it cannot use: one `error:` line on stderr naming the option,
argument or command, and exit 2 (Click's code for it) — never a usage box. Real subprocesses, as a person runs it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.integration.cli_helpers import Runyard, describe

USAGE_EXIT = 2


def usage_error(result: subprocess.CompletedProcess[str]) -> str:
    """The one `error: ...` line of a refused command line (exit 2, nothing on stdout, no traceback)."""
    assert result.returncode == USAGE_EXIT, describe(result)
    assert result.stdout == "", describe(result)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, describe(result)
    assert lines[0].startswith("error: "), describe(result)
    return lines[0]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["runs", "--status", "bogus"], ["'--status'", "'bogus' is not one of", "'failed'", "runyard runs --help"]),
        (["runs", "--limit", "0"], ["'--limit'", "greater than or equal to 1"]),
        (["runs", "--page-size", "0"], ["no such option: --page-size", "runyard runs --help"]),
        (["runs", "show", "abc"], ["'run_id'", "valid integer", "runyard runs show --help"]),
        (["run"], ["missing argument 'operation'", "runyard run --help"]),
        (["run", "quick", "--destructive=maybe"], ["--destructive"]),
        (["teleport"], ["no such command 'teleport'", "runyard --help"]),
        (["operations", "resurrect", "1"], ["no such command 'resurrect'"]),
        (["export", "VIEW", "--page-size", "0"], ["'--page-size'"]),
        (["retry"], ["missing argument"]),
    ],
)
def test_a_bad_command_line_is_one_error_line_and_exit_2(tmp_path: Path, args: list[str], words: list[str]) -> None:
    line = usage_error(Runyard(tmp_path / "home")(*args, check=False))

    for word in words:
        assert word in line, line
    assert "Value error" not in line  # pydantic's prefix, which says nothing to a person
    assert not line.endswith(".")


def test_the_store_is_not_touched_by_a_refused_command_line(tmp_path: Path) -> None:
    runyard = Runyard(tmp_path / "home")

    usage_error(runyard("runs", "--status", "bogus", check=False))

    assert not runyard.db.exists()


def test_help_is_still_help(tmp_path: Path) -> None:
    runyard = Runyard(tmp_path / "home")

    asked = runyard("runs", "--help")
    assert "Usage: runyard runs" in asked.stdout
    assert asked.stderr == ""
    bare = runyard(check=False)  # no command: the help, as Click gives it
    assert "Usage: runyard" in bare.stdout + bare.stderr
    assert "error:" not in bare.stdout + bare.stderr


def test_errors_of_a_valid_command_line_still_exit_1(tmp_path: Path) -> None:
    runyard = Runyard(tmp_path / "home")
    runyard("db", "upgrade")

    line = runyard.fails("operations", "list", "--state", "sleeping")

    assert "--state" in line
