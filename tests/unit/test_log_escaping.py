"""The log formatter writes every record on one line, whatever its message and args hold; only the traceback it
appends itself (from exc_info) keeps its lines, and an exception's own text inside it cannot start one."""

from __future__ import annotations

import logging
import re

import pytest

from runyard.logtext import ExcInfo, OneLineFormatter, escape_control, escape_lines
from runyard.runtime import configure_logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FORGED = "2026-12-05 12:00:00,000 INFO runyard.access: POST /api/v1/users 201 1.0ms"
#: A line that runyard itself would write: it starts with a timestamp.
TIMESTAMPED = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")

#: Every character some reader takes for a line break or a terminal command, and its escape.
HOSTILE = {
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\x00": "\\x00",
    "\x0b": "\\x0b",
    "\x0c": "\\x0c",
    "\x1b": "\\x1b",
    "\x1c": "\\x1c",
    "\x1e": "\\x1e",
    "\x7f": "\\x7f",
    "\x85": "\\x85",
    "\x9b": "\\x9b",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def record(
    msg: object,
    *args: object,
    exc_info: ExcInfo | None = None,
    name: str = "runyard.access",
) -> logging.LogRecord:
    return logging.LogRecord(name, logging.INFO, __file__, 1, msg, args or None, exc_info)


def formatted(rec: logging.LogRecord) -> str:
    return OneLineFormatter(FORMAT).format(rec)


def caught(error: BaseException) -> ExcInfo:
    try:
        raise error
    except BaseException as raised:
        return (type(raised), raised, raised.__traceback__)


def assert_one_line(text: str) -> None:
    assert text.splitlines() == [text], text


@pytest.mark.parametrize("char", list(HOSTILE))
def test_each_control_character_becomes_a_visible_escape(char: str) -> None:
    assert escape_control(f"a{char}b") == f"a{HOSTILE[char]}b"
    assert_one_line(formatted(record(f"a{char}b")))


def test_printable_text_is_unchanged() -> None:
    text = "GET /runs?page=2 200 1.0ms, ünïcode, 日本, emoji 🙂 and a \\n typed by hand"
    assert escape_control(text) == text
    assert formatted(record(text)).endswith(text)


def test_a_forged_line_in_the_message_stays_on_the_record_line() -> None:
    text = formatted(record(f"GET /x\nTraceback\n{FORGED}"))
    assert_one_line(text)
    assert text.endswith(f"GET /x\\nTraceback\\n{FORGED}")


def test_args_are_escaped_like_the_message() -> None:
    path = f"/x\r\n{FORGED}\u2028{FORGED}\x85{FORGED}"
    text = formatted(record("%s %s %d", "GET", path, 404))
    assert_one_line(text)
    assert f"\\r\\n{FORGED}\\u2028{FORGED}\\x85{FORGED} 404" in text


def test_an_arg_whose_str_breaks_lines_is_escaped() -> None:
    class Sneaky:
        def __str__(self) -> str:
            return f"ok\n{FORGED}"

    text = formatted(record("source said %s", Sneaky()))
    assert_one_line(text)
    assert text.endswith(f"ok\\n{FORGED}")


def test_a_dict_arg_is_escaped() -> None:
    text = formatted(record("%(path)s answered", {"path": f"/x\n{FORGED}"}))
    assert_one_line(text)


def test_the_logger_name_and_other_fields_are_escaped_too() -> None:
    text = OneLineFormatter("%(name)s %(funcName)s: %(message)s").format(record("m", name=f"runyard.x\n{FORGED}"))
    assert_one_line(text)


def test_a_real_traceback_keeps_its_lines_after_one_escaped_record_line() -> None:
    def fail() -> None:
        raise ValueError("the source answered 500")

    try:
        fail()
    except ValueError as error:
        info: ExcInfo = (ValueError, error, error.__traceback__)
    lines = formatted(record(f"task failed\n{FORGED}", exc_info=info)).split("\n")
    assert lines[0].endswith(f"task failed\\n{FORGED}")
    assert lines[1] == "Traceback (most recent call last):"
    assert any(line.startswith("  File ") and "in fail" in line for line in lines)
    assert any(line.strip() == 'raise ValueError("the source answered 500")' for line in lines)
    assert lines[-1] == "ValueError: the source answered 500"
    assert not [line for line in lines[1:] if TIMESTAMPED.match(line)]


def test_an_exception_message_cannot_forge_a_line_in_the_traceback() -> None:
    info = caught(RuntimeError(f"bad row\n{FORGED}\r\n{FORGED}"))
    lines = formatted(record("extract failed", exc_info=info)).split("\n")
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == f"RuntimeError: bad row\\n{FORGED}\\r\\n{FORGED}"
    assert not [line for line in lines[1:] if TIMESTAMPED.match(line)]


def test_a_chained_exception_keeps_both_tracebacks_and_escapes_both_messages() -> None:
    try:
        try:
            raise KeyError(f"k\n{FORGED}")
        except KeyError as inner:
            raise ValueError(f"outer\n{FORGED}") from inner
    except ValueError as error:
        info: ExcInfo = (ValueError, error, error.__traceback__)
    text = formatted(record("failed", exc_info=info))
    lines = text.split("\n")
    assert lines.count("Traceback (most recent call last):") == 2
    assert "The above exception was the direct cause of the following exception:" in lines
    assert f"ValueError: outer\\n{FORGED}" in lines
    assert not [line for line in lines[1:] if TIMESTAMPED.match(line)]


def test_an_exception_note_cannot_forge_a_line() -> None:
    error = ValueError("plain")
    error.add_note(FORGED)
    lines = formatted(record("failed", exc_info=caught(error))).split("\n")
    assert lines[-1] == f"ValueError: plain\\n{FORGED}"


def test_control_characters_inside_a_traceback_line_are_escaped() -> None:
    lines = formatted(record("failed", exc_info=caught(OSError("\x1b[31mred\x1b[0m\u2028x")))).split("\n")
    assert lines[-1] == "OSError: \\x1b[31mred\\x1b[0m\\u2028x"


def test_a_message_that_says_traceback_is_not_taken_for_one() -> None:
    # The old formatter split at "\nTraceback" before it cleaned the text: what followed went out raw.
    text = formatted(record(f"x\nTraceback\n{FORGED}\n{FORGED}"))
    assert_one_line(text)


def test_the_record_is_left_unchanged_for_other_handlers() -> None:
    info = caught(ValueError("v"))
    rec = record("m %s", "a\nb", exc_info=info)
    formatted(rec)
    assert rec.msg == "m %s"
    assert rec.args == ("a\nb",)
    assert rec.exc_info == info
    assert logging.Formatter(FORMAT).format(rec).split("\n")[0].endswith("m a")


def test_exc_text_made_elsewhere_keeps_its_lines_escaped() -> None:
    rec = record("m")
    rec.exc_text = 'Traceback (most recent call last):\n  File "x", line 1\nValueError: \x1b[1m'
    lines = formatted(rec).split("\n")
    assert lines[1:] == ["Traceback (most recent call last):", '  File "x", line 1', "ValueError: \\x1b[1m"]


def test_escape_lines_keeps_only_line_feeds() -> None:
    assert escape_lines("a\r\nb\u2028c\nd") == "a\\r\nb\\u2028c\nd"


def test_the_configured_runyard_logger_writes_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger("runyard")
    saved = (root.handlers[:], root.level, root.propagate)
    try:
        configure_logging()
        assert isinstance(root.handlers[0].formatter, OneLineFormatter)
        logging.getLogger("runyard.access").info("%s %s %d", "GET", f"/x\n{FORGED}", 404)
        err = capsys.readouterr().err
    finally:
        root.handlers[:], root.level, root.propagate = saved[0], saved[1], saved[2]
    assert err.count("\n") == 1, err
    assert f"GET /x\\n{FORGED} 404" in err
