"""A configured folder, resolved on this worker: which store, which real folder, and the limits on it.

Local folders must be under one of the allowed roots (RUNYARD_STORAGE_ROOTS, EngineResources.storage_roots),
judged on real paths: `..` was refused at deploy time, and a symbolic link anywhere on the way that leads out of
the root is refused here. A relative folder is under the first root. S3 folders are reached with the
credentials named in the configuration (environment variable names; the values never reach a message or a
log), and an endpoint_url must be allowed by RUNYARD_ALLOWED_HOSTS, as an API source must.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from runyard.engine.context import TaskFailed
from runyard.engine.resources import EngineResources
from runyard.operations.api_to_table.http import HostPolicy
from runyard.operations.api_to_table.spec import resolve_secret
from runyard.operations.storage_to_storage.names import name_problem
from runyard.staging.storage import FileInfo, LocalStorage, StagingError, Storage, open_storage

ROOTS_SETTING = "RUNYARD_STORAGE_ROOTS"


@dataclass(frozen=True)
class Place:
    """A folder of a store. `label` is the folder as configured, for messages (`landing`, `s3://bucket/x`)."""

    storage: Storage
    folder: str  # the store's full path: a real local path, or `bucket/prefix`
    label: str
    role: str  # "source" or "destination"
    root: str | None = None  # local: the allowed root (a real path) the folder is under

    @property
    def local(self) -> bool:
        return self.root is not None

    def show(self, relative: str) -> str:
        """A file of this folder as a data admin reads it: `landing/stores-1.csv`."""
        return f"{self.label.rstrip('/')}/{relative}"

    def relative(self, path: str) -> str:
        """A listed file's path relative to the folder, with '/' between folders."""
        rest = path[len(self.folder) :].lstrip("/" + os.sep)
        return rest.replace(os.sep, "/") if self.local else rest

    def path_of(self, relative: str) -> str:
        """The full path of `relative` (a listed path or a rendered name); TaskFailed if it would leave the folder."""
        problem = name_problem(relative)
        if problem:
            raise TaskFailed(f"{self.role} file name {problem}")
        if self.local:
            return os.path.join(self.folder, *relative.split("/"))
        return posixpath.join(self.folder, relative)

    def allowed(self, path: str) -> bool:
        """Whether `path`, symbolic links resolved, is inside this folder's allowed root (always, on S3)."""
        return self.root is None or _under(os.path.realpath(path), self.root)

    def check_file(self, info: FileInfo, relative: str) -> None:
        """Refuse a listed file that is a symbolic link leading out of the allowed root."""
        if info.target is not None and not _under(info.target, self.root or ""):
            raise TaskFailed(
                f"{self.show(relative)} is a symbolic link to {info.target}, which is not under the allowed root "
                f"{self.root}; runyard copies no file from outside its roots"
            )

    def readable_path(self, relative: str) -> str:
        """The full path of a source file, checked again just before it is opened (a link may have appeared)."""
        path = self.path_of(relative)
        if not self.allowed(path):
            raise TaskFailed(f"{self.show(relative)} now leads out of the allowed root {self.root}; it is not copied")
        return path

    def writable_path(self, relative: str) -> str:
        """The full path of a destination file, its folders made, none of them leading out of the allowed root."""
        path = self.path_of(relative)
        if not self.local:
            return path
        parent = os.path.dirname(path)
        existing = parent
        while not os.path.lexists(existing):  # the deepest folder that exists must be inside before any is made
            existing = os.path.dirname(existing)
        above_root = _under(self.root or "", os.path.realpath(existing))  # the root itself is yet to be made
        if not (above_root or self.allowed(existing)):
            raise TaskFailed(f"{self.show(relative)}: its folder leads out of the allowed root {self.root}")
        os.makedirs(parent, exist_ok=True)
        if not self.allowed(parent):
            raise TaskFailed(f"{self.show(relative)}: its folder leads out of the allowed root {self.root}")
        return path

    def check_can_hold_files(self) -> None:
        """TaskFailed, before anything is copied, when files cannot be written here (an S3 bucket that is not)."""
        if not self.storage.can_hold(self.folder):
            bucket = self.folder.split("/", 1)[0]
            raise TaskFailed(f"{self.role} bucket {bucket} does not exist (or these credentials cannot see it)")

    def list_files(self, *, recursive: bool) -> list[FileInfo]:
        try:
            return self.storage.list_files(self.folder, recursive=recursive)
        except FileNotFoundError:
            if self.local:
                raise TaskFailed(f"{self.role} folder {self.label} does not exist ({self.folder})") from None
            bucket = self.folder.split("/", 1)[0]
            raise TaskFailed(
                f"{self.role} bucket {bucket} does not exist (or these credentials cannot see it)"
            ) from None
        except PermissionError as error:
            raise TaskFailed(f"{self.role} folder {self.label} cannot be listed: permission denied ({error})") from None


def resolve(location: Mapping[str, Any], resources: EngineResources, role: str) -> Place:
    """The folder a configured location names, on this worker (TaskFailed, in a data admin's words, if refused)."""
    url = str(location["url"])
    if url.startswith("s3://"):
        return _s3_place(location, url, resources, role)
    roots = [str(root) for root in resources.storage_roots]
    if not roots:
        raise TaskFailed(f"{role} folder {url} cannot be used: no local folder is allowed (set {ROOTS_SETTING})")
    candidate = url if os.path.isabs(url) else os.path.join(roots[0], url)
    real = os.path.realpath(candidate)
    root = next((root for root in roots if real == root or _under(real, root)), None)
    if root is None:
        raise TaskFailed(f"{role} folder {url} is not under an allowed root ({ROOTS_SETTING}: {', '.join(roots)})")
    return Place(storage=LocalStorage(root), folder=real, label=url, role=role, root=root)


def _s3_place(location: Mapping[str, Any], url: str, resources: EngineResources, role: str) -> Place:
    options: dict[str, Any] = {"use_listings_cache": False}  # a retry lists what is there now
    endpoint = location.get("endpoint_url")
    if endpoint:
        _check_endpoint(str(endpoint), resources, role)
        options["endpoint_url"] = endpoint
    if location.get("region"):
        options["client_kwargs"] = {"region_name": location["region"]}
    try:
        if location.get("key_env"):
            options["key"] = resolve_secret(str(location["key_env"]), resources.environ)
            options["secret"] = resolve_secret(str(location["secret_env"]), resources.environ)
        if location.get("token_env"):
            options["token"] = resolve_secret(str(location["token_env"]), resources.environ)
        storage = open_storage(url, options)
    except (StagingError, ValueError) as error:  # the secrets are in `options`, never in these messages
        raise TaskFailed(f"{role} {url}: {error}") from None
    return Place(storage=storage, folder=url.removeprefix("s3://").rstrip("/"), label=url, role=role)


def _check_endpoint(endpoint: str, resources: EngineResources, role: str) -> None:
    host = urlsplit(endpoint).hostname or ""
    try:
        HostPolicy(resources.allowed_hosts).addresses(host)
    except Exception as error:  # HostNotAllowed names the setting; a name that does not resolve says so
        raise TaskFailed(f"{role} endpoint_url {endpoint}: {error}") from None


def _under(path: str, root: str) -> bool:
    return bool(root) and (path == root or path.startswith(root.rstrip(os.sep) + os.sep))
