"""The storage-to-storage configuration: which files to copy, from where, to where, under which names.

    configuration_type: storage-to-storage
    configuration_id: stores-archive
    source: landing                     # a folder under an allowed root, or {url: s3://bucket/prefix, ...}
    destination: archive
    files: ["stores-*.csv"]             # patterns relative to the source folder
    destination_name: "stores-{{FD_DATE}}-{{FD_TIME}}.csv"
    move: false
    files_per_task: auto                # or a number of files per copy task

What can be refused without the machine's settings is refused here, with the field: patterns and names that
would leave their folder (`..`, absolute paths), templates naming unknown variables, the same pattern twice.
Whether a local folder is under an allowed root (RUNYARD_STORAGE_ROOTS) is a worker's setting, so the run's
first task checks it, and the names each file renders to.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from runyard.errors import ConfigError
from runyard.operations.api_to_table.spec import EnvName
from runyard.operations.spec import OperationBase, StrictModel, invalid
from runyard.operations.storage_to_storage.globs import pattern_problem
from runyard.operations.storage_to_storage.names import (
    DEFAULT_NAME,
    TEMPLATE_VARIABLES,
    file_variables,
    name_problem,
    render_name,
)
from runyard.operations.templating import check_template

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_S3_OPTIONS = ("endpoint_url", "region", "key_env", "secret_env", "token_env")
MAX_FILES_PER_TASK = 10_000


class LocationSpec(StrictModel):
    """A folder: local (under an allowed root) or on S3. Credentials come from environment variables only."""

    url: str = Field(
        description="A folder: relative (to the first allowed root), absolute (under an allowed root), or "
        "s3://bucket/prefix"
    )
    endpoint_url: str | None = Field(default=None, description="S3: another endpoint than AWS's (MinIO, Ceph, ...)")
    region: str | None = Field(default=None, description="S3: the bucket's region, e.g. eu-west-1")
    key_env: EnvName | None = Field(default=None, description="S3: environment variable holding the access key id")
    secret_env: EnvName | None = Field(default=None, description="S3: environment variable holding the secret key")
    token_env: EnvName | None = Field(default=None, description="S3: environment variable holding a session token")

    @model_validator(mode="before")
    @classmethod
    def _folder_alone(cls, value: Any) -> Any:
        return {"url": value} if isinstance(value, str) else value  # `source: landing` is `source: {url: landing}`

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        text = value.strip()
        if not text or "\x00" in text:
            raise invalid("a location needs a folder: a path, or s3://bucket/prefix")
        if "://" in text:
            return _s3_url(text)
        if any(segment == ".." for segment in re.split(r"[\\/]", text)):
            raise invalid(f"{text!r} has a '..' folder; name the folder itself (under an allowed root)")
        return text.rstrip("/") or "/"

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise invalid(f"endpoint_url {value!r} must be an http:// or https:// URL with a host")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _options_fit(self) -> LocationSpec:
        given = [name for name in _S3_OPTIONS if getattr(self, name) is not None]
        if given and not self.is_s3:
            raise invalid(f"{', '.join(given)} only apply to s3:// locations; {self.url!r} is a local folder")
        if (self.key_env is None) != (self.secret_env is None):
            raise invalid("give key_env and secret_env together (or neither, to use the environment's credentials)")
        if self.token_env is not None and self.key_env is None:
            raise invalid("token_env goes with key_env and secret_env")
        return self

    @property
    def is_s3(self) -> bool:
        return self.url.startswith("s3://")


def _s3_url(text: str) -> str:
    scheme, _, rest = text.partition("://")
    if scheme.lower() != "s3":
        raise invalid(f"{text!r}: locations are local folders or s3://bucket/prefix, not {scheme}://")
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET.match(bucket):
        raise invalid(f"{bucket!r} is not an S3 bucket name (3-63 lowercase letters, digits, '.' and '-')")
    segments = [segment for segment in prefix.split("/") if segment]
    if any(segment in ("..", ".") for segment in segments):
        raise invalid(f"{text!r} has a '.' or '..' folder; name the prefix itself")
    return "/".join([f"s3://{bucket}", *segments])


class StorageToStorageSpec(StrictModel):
    """Files matching `files` in `source`, copied (or moved) to `destination` under `destination_name`."""

    source: LocationSpec
    destination: LocationSpec
    files: Annotated[list[str], Field(min_length=1, description="Patterns relative to the source folder")]
    destination_name: str = Field(
        default=DEFAULT_NAME,
        description="A template: {{FD_NAME}}, {{FD_BASENAME}}, {{FD_EXTENSION}}, {{FD_PATH}}, {{FD_FOLDER}}, "
        "{{FD_DATE}}, {{FD_TIME}} (the file's last-modified time, UTC), {{execution_date}}",
    )
    move: bool = Field(default=False, description="Delete each source file once its copy is verified")
    files_per_task: Literal["auto"] | int = Field(
        default="auto",
        description="Files per copy task: a number, or auto (up to 64 MiB or 1,000 files a task, big files alone)",
    )

    @field_validator("files_per_task", mode="before")
    @classmethod
    def _per_task(cls, value: Any) -> Any:
        if value == "auto" or (
            isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_FILES_PER_TASK
        ):
            return value
        raise invalid(f"files_per_task is auto or a number of files from 1 to {MAX_FILES_PER_TASK:,}, not {value!r}")

    @field_validator("files", mode="before")
    @classmethod
    def _one_pattern(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("files")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        seen: set[str] = set()
        for pattern in value:
            problem = pattern_problem(pattern)
            if problem:
                raise invalid(problem)
            if pattern in seen:
                raise invalid(f"file pattern {pattern!r} is listed twice")
            seen.add(pattern)
        return value

    @field_validator("destination_name")
    @classmethod
    def _name(cls, value: str) -> str:
        check_template(value, TEMPLATE_VARIABLES, what="destination_name")
        # What the template's own text does, whatever the file: `../{{FD_NAME}}`, `/x/{{FD_NAME}}`, `{{ '..' }}`.
        variables = file_variables("sample.csv", datetime(2000, 1, 1, tzinfo=UTC), date(2000, 1, 1))
        try:
            sample = render_name(value, variables)
        except ConfigError as error:  # the sandbox refused it (`{{ ''.__class__ }}`)
            raise invalid(error.reason) from None
        problem = name_problem(sample)
        if problem:
            raise invalid(f"destination_name {problem} (for a file named sample.csv)")
        return value

    @model_validator(mode="after")
    def _not_onto_itself(self) -> StorageToStorageSpec:
        if self.source.url == self.destination.url and self.destination_name in (DEFAULT_NAME, "{{FD_PATH}}"):
            raise invalid("source and destination are the same folder and destination_name keeps the names")
        return self


class StorageToStorageOperation(OperationBase, StorageToStorageSpec):
    """Files copied from one folder to another (local or S3) under templated names."""

    configuration_type: Literal["storage-to-storage"]
