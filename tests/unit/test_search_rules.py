"""The pure parts of the API Run Details search (spec 000): initials, status prefixes, LIKE escaping."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runyard.domain.search import (
    INITIALS_MAX_LENGTH,
    contains_pattern,
    initials,
    like_escape,
    normalize_query,
    prefix_pattern,
    statuses_starting_with,
    words,
)
from runyard.domain.statuses import RunStatus, TaskStatus


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Metadata Consolidation [employees]", "mce"),
        ("Process [time_off]", "pto"),
        ("employees Consolidation", "ec"),
        ("Data Load", "dl"),
        ("Metadata Consolidation []", "mc"),  # a word of brackets only has no letter
        ("Ingest__employees  table", "iet"),  # repeated separators make no empty words
        ("  leading and trailing_ ", "lat"),
        ("Process (time-off) 2024", "pt2"),  # digits count, hyphens do not split words
        ("UPPER lower", "ul"),
        ("Éléments Über", "éü"),
        ("", ""),
        ("[] _ ()", ""),
    ],
)
def test_initials(name: str, expected: str) -> None:
    assert initials(name) == expected


def test_initials_are_cut_to_the_column_length() -> None:
    assert initials(" ".join(["word"] * 150)) == "w" * INITIALS_MAX_LENGTH


def test_words_split_on_spaces_and_underscores_only() -> None:
    assert words("Process [time_off] x-y") == ["Process", "[time", "off]", "x-y"]


_letters = st.characters(categories=("Lu", "Ll", "Nd"))
_word = st.builds(
    lambda before, core, after: before + core + after,
    st.sampled_from(["", "[", "(", "'", "[["]),
    st.text(_letters, min_size=1, max_size=8),
    st.sampled_from(["", "]", ")", ".", "],"]),
)
_separator = st.sampled_from([" ", "_", "  ", "__", " _ ", "\t"])


@given(st.lists(_word, min_size=0, max_size=30), st.data())
def test_initials_have_one_letter_per_word(parts: list[str], data: st.DataObject) -> None:
    name = "".join(part + data.draw(_separator) for part in parts)
    result = initials(name)
    assert len(result) == len(parts)
    assert result == result.lower()
    for letter, part in zip(result, parts, strict=True):
        assert letter == next(c for c in part.lower() if c.isalnum())


@given(st.text(max_size=40))
def test_initials_never_contain_separators_or_punctuation(name: str) -> None:
    result = initials(name)
    assert len(result) <= len(words(name))
    assert all(char.isalnum() for char in result)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("waiting", [TaskStatus.WAITING_TO_START]),
        ("WAITING TO", [TaskStatus.WAITING_TO_START]),
        ("comp", [TaskStatus.COMPLETED, TaskStatus.COMPLETED_WITH_ERRORS]),
        ("completed ", [TaskStatus.COMPLETED_WITH_ERRORS]),
        ("Completed with", [TaskStatus.COMPLETED_WITH_ERRORS]),
        ("c", [TaskStatus.COMPLETED, TaskStatus.COMPLETED_WITH_ERRORS, TaskStatus.CANCELED]),
        ("start", []),  # a prefix of the label, not any word of it
        ("waiting_to_start", []),  # labels, not stored values
        ("xyz", []),
    ],
)
def test_task_statuses_starting_with(query: str, expected: list[TaskStatus]) -> None:
    assert sorted(statuses_starting_with(query, TaskStatus)) == sorted(expected)


def test_run_statuses_starting_with() -> None:
    assert statuses_starting_with("rej", RunStatus) == [RunStatus.REJECTED]
    assert statuses_starting_with("cancel", RunStatus) == [RunStatus.CANCELING, RunStatus.CANCELED]


def test_an_empty_status_prefix_matches_every_status() -> None:
    assert statuses_starting_with("", TaskStatus) == list(TaskStatus)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("100%", "100\\%"),
        ("time_off", "time\\_off"),
        ("back\\slash", "back\\\\slash"),
        ("\\%_", "\\\\\\%\\_"),
        ("' OR 1=1 --", "' OR 1=1 --"),
        ("", ""),
    ],
)
def test_like_escape(text: str, expected: str) -> None:
    assert like_escape(text) == expected


def test_like_escape_with_another_escape_character() -> None:
    assert like_escape("a!b%c_d", "!") == "a!!b!%c!_d"
    with pytest.raises(ValueError, match="single character"):
        like_escape("x", "!!")


def _like_to_regex(pattern: str, escape: str = "\\") -> re.Pattern[str]:
    """A reference LIKE matcher: what the databases do with a pattern and an ESCAPE character."""
    out, chars = [], iter(pattern)
    for char in chars:
        if char == escape:
            out.append(re.escape(next(chars)))
        elif char == "%":
            out.append(".*")
        elif char == "_":
            out.append(".")
        else:
            out.append(re.escape(char))
    return re.compile("".join(out), re.DOTALL)


@given(st.text(max_size=20), st.text(max_size=20), st.text(max_size=20))
def test_escaped_patterns_match_literally(before: str, needle: str, after: str) -> None:
    assert _like_to_regex(contains_pattern(needle)).fullmatch(before + needle + after)
    assert _like_to_regex(prefix_pattern(needle)).fullmatch(needle + after)


@given(st.text(alphabet="ab%_\\", max_size=6), st.text(alphabet="ab%_\\", max_size=10))
def test_escaped_patterns_match_only_values_containing_the_text(needle: str, value: str) -> None:
    assert bool(_like_to_regex(contains_pattern(needle)).fullmatch(value)) == (needle in value)
    assert bool(_like_to_regex(prefix_pattern(needle)).fullmatch(value)) == value.startswith(needle)


@pytest.mark.parametrize(("query", "expected"), [(None, ""), ("", ""), ("   ", ""), ("  MC ", "mc")])
def test_normalize_query(query: str | None, expected: str) -> None:
    assert normalize_query(query) == expected


def test_the_search_rules_load_no_io_library() -> None:
    import subprocess
    import sys

    code = (
        "import sys, runyard.domain.search; print(','.join(m for m in ('sqlalchemy', 'pydantic') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""
