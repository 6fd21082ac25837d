"""storage-to-storage without I/O: patterns, names, the plan, and the configuration's deploy-time refusals."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from runyard.errors import ConfigError
from runyard.operations.loader import load_text
from runyard.operations.storage_to_storage import globs, plan
from runyard.operations.storage_to_storage.names import file_variables, name_problem, render_name
from runyard.operations.storage_to_storage.spec import StorageToStorageOperation
from runyard.staging.storage import multipart_etag, s3_part_bytes

VALID = """\
configuration_type: storage-to-storage
configuration_id: stores-archive
environment: DEV
source: landing
destination: {url: archive}
files: ["stores-*.csv"]
destination_name: "stores-{{FD_DATE}}-{{FD_TIME}}.csv"
"""


# --- patterns -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("stores-*.csv", "stores-1.csv", True),
        ("stores-*.csv", "stores-1.csv.bak", False),
        ("stores-*.csv", "2024/stores-1.csv", False),  # `*` stays within a name
        ("*.csv", ".hidden.csv", False),  # as in a shell: a leading dot is matched explicitly
        (".*.csv", ".hidden.csv", True),
        ("stores-?.csv", "stores-12.csv", False),
        ("stores-[0-9].csv", "stores-7.csv", True),
        ("stores-[!0-9].csv", "stores-x.csv", True),
        ("stores-[!0-9].csv", "stores-7.csv", False),
        ("**/*.csv", "a.csv", True),  # `**` is any number of folders, none included
        ("**/*.csv", "2024/05/a.csv", True),
        ("2024/**", "2024/05/a.csv", True),
        ("2024/**", "2025/a.csv", False),
        ("data[1].csv", "data[1].csv", False),  # a set, not literal brackets
        ("data[.csv", "data[.csv", True),  # an unclosed `[` is literal
        ("a+b(1).csv", "a+b(1).csv", True),  # regular-expression characters are literal
        ("Stores.csv", "stores.csv", False),  # case-sensitive
    ],
)
def test_patterns_match_relative_paths(pattern: str, path: str, matches: bool) -> None:
    assert bool(globs.compile_pattern(pattern).fullmatch(path)) is matches


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("../secrets/*.csv", "'..' folder"),
        ("a/../../b.csv", "'..' folder"),
        ("./a.csv", "'.' folder"),
        ("/etc/passwd", "absolute path"),
        ("C:\\data\\x.csv", "absolute path"),
        ("a//b.csv", "empty folder name"),
        ("", "empty"),
        ("a\x00.csv", "NUL"),
    ],
)
def test_patterns_that_leave_the_folder_are_refused(pattern: str, problem: str) -> None:
    found = globs.pattern_problem(pattern)
    assert found is not None
    assert problem in found


def test_only_patterns_with_folders_list_subfolders() -> None:
    assert not globs.recursive(["*.csv", "stores-?.txt"])
    assert globs.recursive(["*.csv", "2024/*.csv"])
    assert globs.recursive(["**"])


# --- names ----------------------------------------------------------------------------------------


def test_file_variables() -> None:
    modified = datetime(2024, 5, 1, 12, 15, 30, tzinfo=UTC)
    variables = file_variables("2024/stores-1.csv", modified, date(2024, 5, 2))
    assert variables["FD_NAME"] == "stores-1.csv"
    assert variables["FD_BASENAME"] == "stores-1"
    assert variables["FD_EXTENSION"] == ".csv"
    assert variables["FD_PATH"] == "2024/stores-1.csv"
    assert variables["FD_FOLDER"] == "2024"
    assert (variables["FD_DATE"], variables["FD_TIME"]) == ("20240501", "121530")
    assert variables["execution_date"] == "2024-05-02"


def test_file_time_is_taken_in_utc() -> None:
    from datetime import timedelta, timezone

    paris = datetime(2024, 5, 1, 2, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    assert file_variables("a.csv", paris, date(2024, 5, 1))["FD_DATE"] == "20240501"
    assert file_variables("a.csv", paris, date(2024, 5, 1))["FD_TIME"] == "000000"


@pytest.mark.parametrize(
    ("name", "basename", "extension"),
    [("README", "README", ""), (".env", ".env", ""), ("a.tar.gz", "a.tar", ".gz"), ("x.", "x", "")],
)
def test_extensions(name: str, basename: str, extension: str) -> None:
    variables = file_variables(name, datetime(2024, 1, 1, tzinfo=UTC), date(2024, 1, 1))
    assert (variables["FD_BASENAME"], variables["FD_EXTENSION"]) == (basename, extension)


def test_names_that_leave_the_destination_are_refused() -> None:
    assert name_problem("2024/stores.csv") is None
    for bad in ("../x", "a/../../x", "/etc/x", "a//b", "", "./x"):
        assert name_problem(bad) is not None, bad
    variables = file_variables("..csv", datetime(2024, 1, 1, tzinfo=UTC), date(2024, 1, 1))
    assert name_problem(render_name("{{FD_BASENAME}}./{{FD_NAME}}", variables)) is not None


# --- the plan -------------------------------------------------------------------------------------


def test_the_plan_is_one_listing_task_carrying_the_configuration() -> None:
    (spec,) = load_text(VALID)
    (listing,) = plan.plan_storage_run(spec.model_dump(mode="json"), date(2024, 5, 2))
    assert listing.name == "List Files [landing]"
    assert listing.executor == plan.LIST
    assert listing.metrics_type == "task"
    assert listing.params["execution_date"] == "2024-05-02"
    assert listing.params["operation"]["destination_name"] == "stores-{{FD_DATE}}-{{FD_TIME}}.csv"


def _files(*sizes: int) -> list[dict[str, object]]:
    return [{"path": f"f{index}.csv", "size": size} for index, size in enumerate(sizes, 1)]


def test_one_copy_task_per_file() -> None:
    tasks = plan.copy_tasks("List Files [landing]", _files(10, 20, 30), 1, {"move": False})
    assert [t.name for t in tasks] == ["Copy [f1.csv]", "Copy [f2.csv]", "Copy [f3.csv]"]
    assert all(t.depends_on[0].upstream == "List Files [landing]" for t in tasks)
    assert tasks[0].params == {"move": False, "files": [{"path": "f1.csv", "size": 10}]}
    assert {t.metrics_type for t in tasks} == {"task"}


def test_batches_by_count() -> None:
    tasks = plan.copy_tasks("L", _files(*[1] * 5), 2, {})
    assert [t.name for t in tasks] == ["Copy files 1-2 of 5", "Copy files 3-4 of 5", "Copy [f5.csv]"]


def test_auto_batches_by_size_and_keeps_big_files_alone() -> None:
    mib = 2**20
    # 1 GiB in all: a sixteenth is 64 MiB, the most a task holds
    sizes = [30 * mib, 30 * mib, 30 * mib, 900 * mib, 1, 1]
    assert [list(r) for r in plan.batches(sizes, plan.AUTO)] == [[0, 1], [2], [3], [4, 5]]
    # 100 MiB in all: a sixteenth is 6.25 MiB, so tasks hold the least, 8 MiB
    assert [len(r) for r in plan.batches([mib] * 100, plan.AUTO)] == [8] * 12 + [4]
    assert [list(r) for r in plan.batches([1] * 2500, plan.AUTO)] == [
        list(range(0, 1000)),
        list(range(1000, 2000)),
        list(range(2000, 2500)),
    ]


def test_copy_tasks_never_exceed_the_cap() -> None:
    assert len(plan.batches([1] * 5000, 1)) == plan.MAX_COPY_TASKS
    assert sum(len(r) for r in plan.batches([1] * 5000, 1)) == 5000


def test_long_names_stay_distinct_within_the_task_name_limit() -> None:
    long_a, long_b = "a" * 400 + "1.csv", "a" * 400 + "2.csv"
    tasks = plan.copy_tasks("L", [{"path": long_a, "size": 1}, {"path": long_b, "size": 1}], 1, {})
    assert len({t.name for t in tasks}) == 2
    assert all(len(t.name) <= 300 for t in tasks)


# --- S3 helpers -----------------------------------------------------------------------------------


def test_multipart_etag_and_part_sizes() -> None:
    import hashlib

    parts = [hashlib.md5(b"a").digest(), hashlib.md5(b"b").digest()]
    assert multipart_etag(parts) == hashlib.md5(b"".join(parts)).hexdigest() + "-2"
    assert s3_part_bytes(None) == s3_part_bytes(1) == 8 * 2**20
    assert s3_part_bytes(200 * 2**30) * 10_000 >= 200 * 2**30  # 200 GiB fits in S3's 10,000 parts


# --- the configuration ----------------------------------------------------------------------------


def test_a_valid_configuration_and_its_defaults() -> None:
    (spec,) = load_text(VALID, "stores.yaml")
    assert isinstance(spec, StorageToStorageOperation)
    assert spec.source.url == "landing"
    assert spec.destination.url == "archive"
    assert spec.move is False
    assert spec.files_per_task == "auto"
    (default,) = load_text(VALID.replace('destination_name: "stores-{{FD_DATE}}-{{FD_TIME}}.csv"\n', ""))
    assert isinstance(default, StorageToStorageOperation)
    assert default.destination_name == "{{FD_NAME}}"


def test_an_s3_location() -> None:
    text = VALID.replace(
        "destination: {url: archive}",
        "destination: {url: 's3://my-bucket/archive/', endpoint_url: 'http://127.0.0.1:9000', region: eu-west-1,"
        " key_env: S3_KEY, secret_env: S3_SECRET}",
    )
    (spec,) = load_text(text)
    assert isinstance(spec, StorageToStorageOperation)
    assert spec.destination.url == "s3://my-bucket/archive"
    assert spec.destination.key_env == "S3_KEY"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ('["stores-*.csv"]', '["../secrets/*.csv"]'),
            r"line 6: field 'files': file pattern '\.\./secrets/\*\.csv' has",
        ),
        (('["stores-*.csv"]', '["/etc/passwd"]'), r"line 6: field 'files': .* is an absolute path"),
        (('["stores-*.csv"]', '["a.csv", "a.csv"]'), r"line 6: field 'files': file pattern 'a.csv' is listed twice"),
        (("stores-{{FD_DATE}}", "../stores-{{FD_DATE}}"), r"line 7: field 'destination_name': .* would leave"),
        (("stores-{{FD_DATE}}", "/srv/stores-{{FD_DATE}}"), r"line 7: field 'destination_name': .* absolute path"),
        (("stores-{{FD_DATE}}", "{{ '..' }}/stores-{{FD_DATE}}"), r"line 7: field 'destination_name': .* leave"),
        (("{{FD_TIME}}", "{{FD_HOUR}}"), r"line 7: field 'destination_name': .* unknown variable\(s\) FD_HOUR"),
        (("{{FD_TIME}}", "{{ FD_TIME "), r"line 7: field 'destination_name': .* not a valid template"),
        (("{{FD_TIME}}", "{{ ''.__class__ }}"), r"line 7: field 'destination_name'"),
        (("source: landing", "source: ../landing"), r"line 4: field 'source.url': '\.\./landing' has a '\.\.'"),
        (("source: landing", "source: ftp://x/y"), r"line 4: field 'source.url': .* not ftp://"),
        (("source: landing", "source: s3://Bad_Bucket/x"), r"line 4: field 'source.url': 'Bad_Bucket' is not"),
        (("source: landing", "source: {url: landing, region: eu-west-1}"), r"field 'source': region only apply"),
        (
            ("source: landing", "source: {url: 's3://b-1/x', key_env: K}"),
            r"field 'source': give key_env and secret_env together",
        ),
        (("source: landing", "source: {url: 's3://b-1/x', key_env: 'not a name', secret_env: S}"), r"key_env"),
        (("environment: DEV", "environment: DEV\nfiles_per_task: 0"), r"line 4: field 'files_per_task': .* not 0$"),
        (("environment: DEV", "environment: DEV\nfiles_per_task: many"), r"field 'files_per_task': .* not 'many'"),
        (("environment: DEV", "environment: DEV\ncolour: red"), r"line 4: field 'colour': is not a known field"),
    ],
)
def test_mistakes_name_the_file_line_and_field(change: tuple[str, str], expected: str) -> None:
    text = VALID.replace(*change)
    assert text != VALID
    with pytest.raises(ConfigError, match=expected) as caught:
        load_text(text, "stores.yaml")
    assert str(caught.value).startswith("stores.yaml")
    assert "\n" not in str(caught.value)


def test_a_copy_onto_itself_is_refused() -> None:
    text = VALID.replace("destination: {url: archive}", "destination: landing").replace(
        'destination_name: "stores-{{FD_DATE}}-{{FD_TIME}}.csv"\n', ""
    )
    with pytest.raises(ConfigError, match=r"stores.yaml, line 1: source and destination are the same folder"):
        load_text(text, "stores.yaml")
