"""Every request runyard makes to a source API goes through :class:`SourceClient`.

The client owns what a data admin should never have to think about: authentication from
environment variables, rate limiting, retries with backoff (honouring ``Retry-After``), response
size caps, JSON-only bodies, a deadline for each page (``request_deadline_seconds``: httpx's timeout
applies to each read, so a source that trickles bytes would never trip it), and the SSRF guard
(OWASP API7) that refuses any host the deployment has not allowed (``RUNYARD_ALLOWED_HOSTS``)
*before* a connection is opened.

The guard lives in a transport wrapper, so every request (redirect hops included) passes through
it. With the default network transport the guard is also applied at connect time, to the very
addresses the socket connects to, so a DNS answer that changes between the check and the connect
(rebinding) cannot reach a refused address.

The same backend registers every connection with an :class:`Interrupter`, so the page deadline and
:meth:`SourceClient.interrupt` (a task's stop: cancel, lost lease, shutdown) end a blocked read at once.
"""

from __future__ import annotations

import base64
import ipaddress
import random
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit

import httpcore
import httpx
import orjson

from runyard.errors import RunyardError
from runyard.operations.api_to_table.interrupt import Interrupter, TrackedStream
from runyard.operations.api_to_table.spec import (
    ApiKeyAuth,
    ApiToTableSpec,
    BasicAuth,
    BearerAuth,
    resolve_secret,
)

__all__ = [
    "ALLOWED_HOSTS_SETTING",
    "HostNotAllowed",
    "HostPolicy",
    "Page",
    "RequestInterrupted",
    "SourceClient",
    "SourceError",
    "TransientSourceError",
]

ALLOWED_HOSTS_SETTING = "RUNYARD_ALLOWED_HOSTS"
MASK = "***"
MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_SNIPPET_CHARS = 200
_URL_CHARS = 300

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str], list[str]]


# --- errors ---------------------------------------------------------------------------------------


class SourceError(RunyardError):
    """The source answered something runyard cannot use; retrying will not help."""

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None) -> None:
        self.url = url
        self.status = status
        super().__init__(message)


class TransientSourceError(SourceError):
    """5xx, 429, timeouts or connection errors that outlasted every retry."""


class RequestInterrupted(SourceError):
    """The client was stopped (the task is stopping): the request under way, and every later one, ends."""


class _TooSlow(Exception):
    """One attempt outlasted its deadline; `problem` says so for the retry message."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(problem)


class HostNotAllowed(SourceError):
    """A URL points at a scheme or host the deployment does not allow (SSRF guard)."""

    def __init__(self, host: str, reason: str) -> None:
        self.host = host
        self.reason = reason
        super().__init__(
            f"host {host!r} is not allowed: {reason}; if this source is trusted, add it to {ALLOWED_HOSTS_SETTING}"
        )


# --- the page -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """One successful response: the parsed JSON body and facts about how it was fetched."""

    url: str  # final URL (after redirects), credentials masked: safe to show
    status: int
    headers: Mapping[str, str]  # case-insensitive (httpx.Headers)
    body: object
    size_bytes: int
    latency_ms: float
    attempts: int


# --- SSRF guard -----------------------------------------------------------------------------------


def _default_resolver(host: str) -> list[str]:
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _parse_ip(text: str) -> IPAddress | None:
    """An IP address literal (IPv6 scope ids dropped), or None when ``text`` is not one."""
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def _effective(ip: IPAddress) -> IPAddress:
    """IPv4-mapped IPv6 (``::ffff:127.0.0.1``) is judged as the IPv4 address it carries."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _is_public(ip: IPAddress) -> bool:
    return bool(
        ip.is_global
        and not (
            ip.is_private
            or ip.is_loopback
            or ip.is_link_local
            or ip.is_multicast
            or ip.is_reserved
            or ip.is_unspecified
        )
    )


def _is_legacy_numeric(host: str) -> bool:
    """True for hosts that C resolvers read as IPv4 but are not dotted quads (2130706433, 0x7f.1)."""
    try:
        socket.inet_aton(host)
    except OSError:
        return False
    return _parse_ip(host) is None


class HostPolicy:
    """The allow-list: hostnames (exact or ``*.example.com``), IPs, CIDR networks, or ``public``."""

    def __init__(self, entries: Iterable[str], resolver: Resolver | None = None) -> None:
        self._names: set[str] = set()
        self._suffixes: list[str] = []
        self._networks: list[IPNetwork] = []
        self._public = False
        self._resolver = resolver or _default_resolver
        for raw in entries:
            self._add(raw)

    def _add(self, raw: str) -> None:
        entry = raw.strip().lower().rstrip(".")
        if not entry:
            return
        if entry == "public":
            self._public = True
        elif entry.startswith("*."):
            self._suffixes.append(entry[1:])
        else:
            try:
                self._networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                self._names.add(entry)

    def ip_allowed(self, ip: IPAddress) -> bool:
        """Whether connecting to ``ip`` is allowed (mapped IPv6 judged as IPv4)."""
        candidates = {ip, _effective(ip)}
        if any(c in net for c in candidates for net in self._networks if c.version == net.version):
            return True
        return self._public and all(_is_public(c) for c in candidates)

    def name_listed(self, host: str) -> bool:
        """Whether a hostname is allowed by name (then its addresses are not checked)."""
        name = host.lower().rstrip(".")
        return name in self._names or any(name.endswith(s) and len(name) > len(s) for s in self._suffixes)

    def check_url(self, url: str) -> None:
        """Refuse a URL text whose scheme or host cannot be allowed, before it is even parsed by httpx."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise HostNotAllowed(parts.hostname or "(none)", f"scheme {scheme or '(none)'!r}: only http and https")
        host = parts.hostname or ""
        if host and _is_legacy_numeric(host):
            raise HostNotAllowed(host, "numeric host in a non-standard form; write IPv4 addresses as a.b.c.d")

    def addresses(self, host: str) -> list[str] | None:
        """The addresses to connect to for ``host``, all allowed; None when the name is listed.

        Raises HostNotAllowed, or httpx.ConnectError when the name does not resolve.
        """
        if not host:
            raise HostNotAllowed(host, "the URL has no host")
        if _is_legacy_numeric(host):
            raise HostNotAllowed(host, "numeric host in a non-standard form; write IPv4 addresses as a.b.c.d")
        literal = _parse_ip(host.strip("[]"))
        if literal is not None:
            if not self.ip_allowed(literal):
                raise HostNotAllowed(host, f"address {literal} is not in the allowed list")
            return [str(literal)]
        if self.name_listed(host):
            return None
        resolved = self._resolve(host.lower().rstrip("."))
        for text in resolved:
            ip = _parse_ip(text)
            if ip is None or not self.ip_allowed(ip):
                raise HostNotAllowed(host, f"it resolves to {text}, which is not an allowed address")
        return resolved

    def _resolve(self, host: str) -> list[str]:
        try:
            resolved = self._resolver(host)
        except OSError as exc:
            raise httpx.ConnectError(f"could not resolve host {host!r}: {exc.strerror or exc}") from exc
        if not resolved:
            raise httpx.ConnectError(f"host {host!r} resolves to no address")
        return resolved


class _GuardTransport(httpx.BaseTransport):
    """Checks scheme and host of every request before handing it to the real transport."""

    def __init__(self, inner: httpx.BaseTransport, policy: HostPolicy) -> None:
        self._inner = inner
        self._policy = policy

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme not in ("http", "https"):
            raise HostNotAllowed(request.url.host, f"scheme {request.url.scheme!r}: only http and https")
        self._policy.addresses(request.url.host)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


class _GuardedBackend(httpcore.NetworkBackend):
    """Connects only to addresses the policy allows, re-resolving at connect time (anti-rebinding)."""

    def __init__(self, policy: HostPolicy, interrupter: Interrupter) -> None:
        self._policy = policy
        self._interrupter = interrupter
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = self._policy.addresses(host) or [host]
        error: Exception | None = None
        for address in addresses:
            try:
                stream = self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
                return TrackedStream(stream, self._interrupter)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise HostNotAllowed(path, "unix sockets are never allowed")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _network_transport(policy: HostPolicy, interrupter: Interrupter) -> httpx.BaseTransport:
    transport = httpx.HTTPTransport(http1=True, http2=False, retries=0)
    pool = getattr(transport, "_pool", None)
    if isinstance(pool, httpcore.ConnectionPool) and hasattr(pool, "_network_backend"):
        pool._network_backend = _GuardedBackend(policy, interrupter)
    return transport


def guarded_transport(policy: HostPolicy) -> httpx.BaseTransport:
    """A transport that refuses what `policy` does not allow before connecting, redirects included (webhooks)."""
    return _GuardTransport(_network_transport(policy, Interrupter()), policy)


# --- auth and secrets -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Auth:
    headers: dict[str, str]
    query: dict[str, str]
    secrets: tuple[str, ...]


def _auth_from_spec(spec: ApiToTableSpec, environ: Mapping[str, str]) -> _Auth:
    auth = spec.auth
    if isinstance(auth, BearerAuth):
        token = resolve_secret(auth.token_env, environ)
        return _Auth({"Authorization": f"Bearer {token}"}, {}, (token,))
    if isinstance(auth, ApiKeyAuth):
        key = resolve_secret(auth.value_env, environ)
        if auth.location == "query":
            return _Auth({}, {auth.name: key}, (key,))
        return _Auth({auth.name: key}, {}, (key,))
    if isinstance(auth, BasicAuth):
        user = auth.username if auth.username is not None else resolve_secret(auth.username_env or "", environ)
        password = resolve_secret(auth.password_env, environ)
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        return _Auth({"Authorization": f"Basic {token}"}, {}, (password, token))
    return _Auth({}, {}, ())


# --- the client -----------------------------------------------------------------------------------


@dataclass
class _Outcome:
    """One attempt that got an HTTP answer (possibly after same-host redirects)."""

    response: httpx.Response
    content: bytes
    latency_ms: float


@dataclass
class _Deadline:
    """The clock of one attempt (every redirect hop of it): what arrived, and whether time is up."""

    seconds: float
    started: float = field(default_factory=time.monotonic)
    response: httpx.Response | None = None  # once the status line and headers have arrived

    def check(self) -> None:
        if time.monotonic() - self.started > self.seconds:
            raise _TooSlow(self.problem())

    def problem(self) -> str:
        limit = f"the {_seconds(self.seconds)} s deadline for one page"
        if self.response is None:
            return f"was too slow: the source did not answer within {limit} (request_deadline_seconds)"
        sent = self.response.num_bytes_downloaded
        elapsed = _seconds(time.monotonic() - self.started)
        return (
            f"was too slow: the source sent {sent} bytes in {elapsed} s, slower than {limit} allows "
            "(request_deadline_seconds)"
        )


class SourceClient:
    """GETs JSON pages from one source API, safely; see the module docstring."""

    def __init__(
        self,
        spec: ApiToTableSpec,
        *,
        environ: Mapping[str, str],
        allowed_hosts: Sequence[str],
        transport: httpx.BaseTransport | None = None,
        resolver: Resolver | None = None,
        backoff_seconds: float = 0.5,
        max_backoff_seconds: float = 30.0,
        max_retry_after_seconds: float = 60.0,
        max_response_bytes: int = 64 * 1024 * 1024,
        sleep: Callable[[float], None] | None = None,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        """Read the secrets (ConfigError naming a missing variable) and open the keep-alive client."""
        self._spec = spec
        self._auth = _auth_from_spec(spec, environ)
        self._policy = HostPolicy(allowed_hosts, resolver)
        self._backoff = backoff_seconds
        self._max_backoff = max_backoff_seconds
        self._max_retry_after = max_retry_after_seconds
        self._max_bytes = max_response_bytes
        self._interrupter = Interrupter()
        self._sleep = sleep or self._interrupter.pause  # a backoff ends early when the client is stopped
        self._on_retry = on_retry
        self._interval = 1.0 / spec.rate_limit.requests_per_second if spec.rate_limit else 0.0
        self._last_request: float | None = None
        inner = transport if transport is not None else _network_transport(self._policy, self._interrupter)
        self._client = httpx.Client(
            transport=_GuardTransport(inner, self._policy),
            headers={"Accept": "application/json", **spec.headers, **self._auth.headers},
            timeout=httpx.Timeout(spec.timeout_seconds),
            follow_redirects=False,
            trust_env=False,  # a proxy from the environment would bypass the host guard
        )

    # -- public API --

    def get(self, url_or_path: str, params: Mapping[str, str] | None = None) -> Page:
        """GET a page: an absolute URL (next_url / link styles) or a path joined to base_url.

        Raises SourceError (terminal), TransientSourceError (retries exhausted), HostNotAllowed,
        RequestInterrupted (the client was stopped).
        """
        url = self._build_url(url_or_path, params)
        attempts = self._spec.max_retries + 1
        for attempt in range(1, attempts + 1):
            self._check_stopped(url)
            try:
                outcome = self._fetch(url)
            except _TooSlow as slow:
                problem = slow.problem
                delay = self._backoff_delay(attempt)
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                problem = self._describe_exception(exc)
                delay = self._backoff_delay(attempt)
            else:
                status = outcome.response.status_code
                if status != 429 and status < 500:
                    return self._page(outcome, attempt)
                problem = f"answered {status}"
                retry_after = self._retry_after(outcome.response)
                delay = self._backoff_delay(attempt) if retry_after is None else retry_after
            if attempt == attempts:
                raise TransientSourceError(
                    f"GET {self._safe(url)} {problem}; gave up after {attempts} attempt(s) (max_retries "
                    f"{self._spec.max_retries})",
                    url=self._safe(url),
                )
            self._announce_retry(url, problem, attempt, delay)
            self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def safe_url(self, url_or_path: str, params: Mapping[str, str] | None = None) -> str:
        """The URL `get(url_or_path, params)` would fetch, without credentials: safe to show in a message."""
        return self._safe(self._build_url(url_or_path, params))

    def interrupt(self) -> None:
        """Stop for good, from any thread: a read blocked on the source returns now, and the request under
        way and every later one raise RequestInterrupted. A task's on-stop hook (cancel, lost lease)."""
        self._interrupter.stop()

    def close(self) -> None:
        """Close the connection pool."""
        self._interrupter.close()
        self._client.close()

    def __enter__(self) -> SourceClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- URLs and secrets --

    def _build_url(self, url_or_path: str, params: Mapping[str, str] | None) -> httpx.URL:
        text = url_or_path if urlsplit(url_or_path).scheme else self._spec.base_url + "/" + url_or_path.lstrip("/")
        self._policy.check_url(text)
        try:
            url = httpx.URL(text)
        except httpx.InvalidURL as exc:
            raise SourceError(f"{self._scrub(text)[:_URL_CHARS]} is not a valid URL: {exc}") from None
        if params:
            url = url.copy_merge_params(dict(params))
        return self._with_auth(url)

    def _with_auth(self, url: httpx.URL) -> httpx.URL:
        for name, value in self._auth.query.items():
            url = url.copy_set_param(name, value)
        return url

    def _safe(self, url: httpx.URL) -> str:
        """The URL as text without credentials: user info dropped, api-key query values masked."""
        if url.userinfo:
            url = url.copy_with(username=None, password=None)
        for name in self._auth.query:
            if name in url.params:
                url = url.copy_set_param(name, MASK)
        return self._scrub(str(url).replace("%2A%2A%2A", MASK))

    def _safe_target(self, url: httpx.URL) -> str:
        """Path and query only, for short retry messages."""
        safe = httpx.URL(self._safe(url))
        target = safe.raw_path.decode("ascii", "replace")
        return target if len(target) <= 120 else target[:119] + "…"

    def _scrub(self, text: str) -> str:
        for secret in self._auth.secrets:
            text = text.replace(secret, MASK).replace(quote(secret, safe=""), MASK)
        return text

    # -- one attempt --

    def _check_stopped(self, url: httpx.URL) -> None:
        if self._interrupter.stopped:
            safe = self._safe(url)
            raise RequestInterrupted(f"GET {safe} was interrupted: the task is stopping", url=safe)

    def _fetch(self, url: httpx.URL) -> _Outcome:
        """One attempt within its deadline: send, follow same-host redirects (at most MAX_REDIRECTS), read the body.

        Raises _TooSlow past the deadline: between chunks, or when the watchdog cut a blocked read.
        """
        self._throttle()
        deadline = _Deadline(self._spec.request_deadline_seconds)
        self._interrupter.arm(deadline.seconds)
        try:
            return self._follow(url, deadline)
        except httpx.TransportError:
            self._check_stopped(url)
            if self._interrupter.expired:
                raise _TooSlow(deadline.problem()) from None
            raise
        finally:
            self._interrupter.disarm()

    def _follow(self, url: httpx.URL, deadline: _Deadline) -> _Outcome:
        current = url
        for hop in range(MAX_REDIRECTS + 1):
            if hop:
                self._throttle()
            started = time.perf_counter()
            with self._client.stream("GET", current) as response:
                if response.status_code in _REDIRECT_STATUSES and "location" in response.headers:
                    current = self._redirect_target(current, response.headers["location"])
                    continue
                deadline.response = response
                content = self._read_capped(response, current, deadline)
            latency_ms = (time.perf_counter() - started) * 1000.0
            return _Outcome(response, content, latency_ms)
        raise SourceError(f"GET {self._safe(url)} redirected more than {MAX_REDIRECTS} times", url=self._safe(url))

    def _redirect_target(self, current: httpx.URL, location: str) -> httpx.URL:
        try:
            target = current.join(location)
        except httpx.InvalidURL as exc:
            raise SourceError(f"GET {self._safe(current)} redirected to an invalid URL: {exc}") from None
        if (target.scheme, target.host, target.port) != (current.scheme, current.host, current.port):
            origin = f"{target.scheme}://{target.host}" + (f":{target.port}" if target.port else "")
            raise SourceError(
                f"GET {self._safe(current)}: redirect to another host ({self._scrub(origin)}) refused",
                url=self._safe(current),
            )
        return self._with_auth(target)

    def _read_capped(self, response: httpx.Response, url: httpx.URL, deadline: _Deadline) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            raise self._too_large(url)
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_bytes():  # decoded: a gzip bomb is counted after inflation
                size += len(chunk)
                if size > self._max_bytes:
                    raise self._too_large(url)
                chunks.append(chunk)
                deadline.check()
        except httpx.DecodingError as exc:
            raise SourceError(
                f"the source sent a body for GET {self._safe(url)} that cannot be decompressed "
                f"({response.headers.get('content-encoding', 'no content-encoding')}): {exc}",
                url=self._safe(url),
            ) from None
        return b"".join(chunks)

    def _too_large(self, url: httpx.URL) -> SourceError:
        return SourceError(
            f"the response to GET {self._safe(url)} is larger than the {_human_bytes(self._max_bytes)} cap "
            "(max_response_bytes); ask for smaller pages (a lower limit or page size)",
            url=self._safe(url),
        )

    def _throttle(self) -> None:
        if self._interval <= 0:
            return
        now = time.monotonic()
        if self._last_request is not None:
            wait = self._last_request + self._interval - now
            if wait > 0:
                self._sleep(wait)
                now = max(time.monotonic(), self._last_request)
        self._last_request = now

    # -- interpreting the answer --

    def _page(self, outcome: _Outcome, attempts: int) -> Page:
        response = outcome.response
        safe = self._safe(response.request.url)
        if response.status_code >= 400:
            raise SourceError(
                self._status_message(response, outcome.content, safe), url=safe, status=response.status_code
            )
        if response.status_code >= 300:
            raise SourceError(
                f"GET {safe} answered {response.status_code} without a usable redirect",
                url=safe,
                status=response.status_code,
            )
        body = self._parse_json(response, outcome.content, safe)
        return Page(
            url=safe,
            status=response.status_code,
            headers=response.headers,
            body=body,
            size_bytes=len(outcome.content),
            latency_ms=outcome.latency_ms,
            attempts=attempts,
        )

    def _parse_json(self, response: httpx.Response, content: bytes, safe: str) -> object:
        content_type = response.headers.get("content-type", "").lower()
        if "html" in content_type or content.lstrip()[:1] == b"<":
            raise SourceError(
                f"the source answered HTML, not JSON, for GET {safe} (status {response.status_code}, "
                f"content-type {content_type or 'not set'}): {self._snippet(content)}",
                url=safe,
                status=response.status_code,
            )
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise SourceError(
                f"the source answered malformed JSON for GET {safe}: {exc}", url=safe, status=response.status_code
            ) from None

    def _status_message(self, response: httpx.Response, content: bytes, safe: str) -> str:
        status = response.status_code
        hint = ""
        if status in (401, 403):
            hint = "; check the operation's auth settings and the secret in its environment variable"
        elif status == 404:
            hint = "; check base_url and the endpoint path"
        detail = self._snippet(content)
        return f"GET {safe} answered {status} {response.reason_phrase}{hint}" + (f": {detail}" if detail else "")

    def _snippet(self, content: bytes) -> str:
        text = " ".join(content[: _SNIPPET_CHARS * 4].decode("utf-8", "replace").split())
        text = self._scrub(text)
        return text if len(text) <= _SNIPPET_CHARS else text[: _SNIPPET_CHARS - 1] + "…"

    def _describe_exception(self, exc: httpx.HTTPError) -> str:
        if isinstance(exc, httpx.TimeoutException):
            return f"timed out after {self._spec.timeout_seconds:g} s"
        reason = self._scrub(str(exc)) or type(exc).__name__
        return f"failed to connect or read ({reason})"

    # -- retries --

    def _retry_after(self, response: httpx.Response) -> float | None:
        raw = response.headers.get("retry-after")
        if raw is None:
            return None
        seconds = _parse_retry_after(raw.strip())
        if seconds is None:
            return None
        return min(max(seconds, 0.0), self._max_retry_after)

    def _backoff_delay(self, attempt: int) -> float:
        base: float = min(self._max_backoff, self._backoff * 2.0 ** (attempt - 1))
        return min(self._max_backoff, base + random.uniform(0, base / 4))

    def _announce_retry(self, url: httpx.URL, problem: str, attempt: int, delay: float) -> None:
        if self._on_retry is None:
            return
        self._on_retry(
            f"GET {self._safe_target(url)} {problem}; retry {attempt} of {self._spec.max_retries} in {delay:.1f} s"
        )


def _parse_retry_after(raw: str) -> float | None:
    """Retry-After as delta-seconds or an HTTP-date; None when it is neither."""
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    return moment.timestamp() - time.time()


def _seconds(value: float) -> str:
    """Seconds for a message: 30, 0.5, 120.4."""
    return f"{value:.2g}" if value < 10 else f"{value:.0f}"


def _human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:g} {unit}" if unit != "bytes" else f"{size} bytes"
        value /= 1024
    return f"{size} bytes"  # pragma: no cover
