"""A real HTTP server for tests: an ASGI app served by uvicorn in a thread on a loopback port."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

STARTUP_SECONDS = 10.0


@contextmanager
def serving(app: Any, *, access_log: bool = False, name: str = "uvicorn-test") -> Iterator[str]:
    """Serve `app` on 127.0.0.1 (a port the OS picks, bound before uvicorn starts: no race); its base URL.

    uvicorn runs in a thread (it installs no signal handlers off the main thread) and is stopped
    with `should_exit`, the way its own signal handler stops it, so no socket or task is left behind.
    """
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted sockets only when the listening socket says
    # it is TCP; without it every keep-alive response waits ~40 ms (Nagle's algorithm and delayed ACKs).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # h11, as runyard serve uses (runyard.serve.http_server): the parser the product answers with.
    # proxy_headers off, as runyard.serve.http_server: the app sees the socket peer, not X-Forwarded-For.
    config = uvicorn.Config(
        app, lifespan="off", log_config=None, access_log=access_log, http="h11", proxy_headers=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=name, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not server.started:
            assert thread.is_alive(), "uvicorn stopped while starting"
            assert time.monotonic() < deadline, f"uvicorn did not start within {STARTUP_SECONDS} s"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(STARTUP_SECONDS)
        sock.close()
    assert not thread.is_alive(), "uvicorn did not stop"


@contextmanager
def serving_handler(handler: type[http.server.BaseHTTPRequestHandler], *, name: str = "http-test") -> Iterator[str]:
    """Serve a standard-library request handler (a source or receiver scripted by a test) on 127.0.0.1 in a
    thread, one thread per request; its base URL. Shut down and closed on exit."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
