"""A real S3 endpoint for the tests: moto's server on a free 127.0.0.1 port, spoken to over HTTP by s3fs.

`s3_server()` is a context manager (the storage tests wrap it in a fixture). Without moto installed, a test that
needs it fails under CI=true and is skipped elsewhere, with the reason, never silently.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

# Credentials the tests put in the environment and name in their configurations (moto accepts any).
KEY_ENV = "S3_TEST_ACCESS_KEY"  # no RUNYARD_ prefix: worker subprocesses of the tests inherit it
SECRET_ENV = "S3_TEST_SECRET_KEY"
KEY = "runyard-test-key"
SECRET = "runyard-test-secret-value"
REGION = "us-east-1"


@dataclass
class S3Server:
    endpoint_url: str
    fs: Any  # an s3fs.S3FileSystem on the server, for the tests' own reads and writes

    def create_bucket(self, name: str) -> None:
        self.fs.call_s3("create_bucket", Bucket=name)

    def location(self, url: str) -> str:
        """The YAML flow mapping of a configuration's location on this server."""
        return (
            f"{{url: '{url}', endpoint_url: '{self.endpoint_url}', region: {REGION}, "
            f"key_env: {KEY_ENV}, secret_env: {SECRET_ENV}}}"
        )

    def objects(self, prefix: str) -> dict[str, bytes]:
        """Every object under `prefix` (bucket/folder) -> its bytes."""
        self.fs.invalidate_cache()
        return {path: bytes(self.fs.cat_file(path)) for path in sorted(self.fs.find(prefix))}

    def etag(self, path: str) -> str:
        self.fs.invalidate_cache()
        return str(self.fs.info(path)["ETag"]).strip('"')

    def pending_uploads(self, bucket: str) -> list[str]:
        """The keys of the multipart uploads started and neither completed nor aborted."""
        listed = self.fs.call_s3("list_multipart_uploads", Bucket=bucket)
        return [str(upload["Key"]) for upload in listed.get("Uploads", [])]


def require_moto() -> Any:
    """moto's ThreadedMotoServer class; a failure under CI=true (a skip elsewhere) when moto is missing."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as error:
        message = f"moto[server] is not installed ({error}): pip install -r requirements.lock"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return ThreadedMotoServer


@contextmanager
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server in a thread on a free loopback port, stopped (with its data) when the block ends."""
    server_class = require_moto()
    import s3fs

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = server_class(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        fs = s3fs.S3FileSystem(
            key=KEY,
            secret=SECRET,
            endpoint_url=endpoint,
            client_kwargs={"region_name": REGION},
            use_listings_cache=False,
            skip_instance_cache=True,
        )
        yield S3Server(endpoint, fs)
    finally:
        server.stop()
