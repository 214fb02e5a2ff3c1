"""A synchronous Bitrix24 REST client for one portal (Lambdas are synchronous).

Rules (protocols.md §A1-A5; docs/bitrix24-connector.md):

* Requests go to the portal's own ``client_endpoint`` as JSON with the access token in ``auth``.
* ``expired_token`` → refresh through the OAuth server and retry once. The refresh is written with a condition
  on ``token_version``; if another Lambda rotated first, this one re-reads and uses the winner's tokens.
* ``QUERY_LIMIT_EXCEEDED`` was refused before execution: retried after a jittered backoff while the time
  budget (≈2 s) lasts, then :class:`RateLimited`. ``OPERATION_TIME_LIMIT`` → :class:`RateLimited` at once.
* 5xx, timeouts, dropped connections: the request may have run. Only read-only methods are retried (within the
  budget); anything else raises :class:`PortalUnavailable` with ``maybe_executed=True`` and the caller resumes
  its operation later. A refused connection (nothing sent) is retried like a rate limit.
* A 302 (portal renamed): re-POSTed to the new address, which is stored as the tenant's endpoint.
* Tokens never reach a log line or an error message.
"""

from __future__ import annotations

import logging
import random
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from cloud.bitrix24.errors import AuthorizationLost, MethodError, PortalUnavailable, RateLimited
from cloud.bitrix24.forms import encode_command
from cloud.bitrix24.oauth import OAuthRefused, refresh_tokens
from cloud.bitrix24.responses import Answer, classify, is_read_only
from cloud.errors import UnknownTenant
from cloud.runtime import Runtime
from cloud.tenants import store
from cloud.tenants.store import StoredTokens, Tenant

__all__ = ["MAX_BATCH", "BatchResult", "Bitrix24Client", "RetryPolicy", "client_for", "domain_of"]

log = logging.getLogger("cloud.bitrix24")

MAX_BATCH = 50  # DOC settings/how-to-call-rest-api/batch.md
MAX_REDIRECTS = 3
_COMMAND_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_METHOD = re.compile(r"^[A-Za-z][A-Za-z0-9_.]{0,127}$")
_FIELD_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_FILE_NAME = re.compile(r"[^\x00-\x1f\"\\/]{1,200}")


@dataclass(frozen=True)
class RetryPolicy:
    """How long one call may wait for retries, and the clock/sleep/randomness it uses (injected in tests)."""

    budget: float = 2.0  # seconds of waiting per call before giving up with RateLimited/PortalUnavailable
    base_delay: float = 0.25
    max_delay: float = 1.0
    rate_limited_retry_after: float = 1.0  # told to the caller: the bucket drains 2 requests/s (DOC limits.md)
    refresh_settle: float = 1.5  # how long a refresh that lost the race waits for the winner's write
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    random: Callable[[], float] = field(default_factory=lambda: random.Random().random)

    def delay(self, attempt: int) -> float:
        """Exponential backoff with jitter (half fixed, half random), capped."""
        ceiling = min(self.max_delay, self.base_delay * (2.0 ** min(attempt, 16)))
        jitter: float = self.random()
        return ceiling / 2 + jitter * ceiling / 2


@dataclass
class BatchResult:
    """Per-command results and errors of one ``batch`` (commands that failed are only in ``errors``)."""

    results: dict[str, Any]
    errors: dict[str, MethodError]
    totals: dict[str, int] = field(default_factory=dict)
    nexts: dict[str, int] = field(default_factory=dict)


def domain_of(client_endpoint: str) -> str:
    """The portal's domain from its REST endpoint: ``https://acme.bitrix24.com/rest/`` → ``acme.bitrix24.com``.
    A path prefix before ``/rest/`` (the emulator's loopback addressing, ``http://127.0.0.1:8090/acme/rest/``)
    names the portal instead of the host."""
    parts = urlsplit(client_endpoint)
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) >= 2 and segments[-1] == "rest":
        return segments[-2]
    return parts.hostname or ""


def _by_key(value: Any) -> dict[str, Any]:
    """``result``/``result_error``/... of a batch: a map, or PHP's list when empty or keyed 0..n-1."""
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    return {}


class Bitrix24Client:
    """REST calls on one portal with the tenant's stored tokens. Build with :func:`client_for`."""

    def __init__(self, rt: Runtime, tenant: Tenant, policy: RetryPolicy | None = None) -> None:
        self.rt = rt
        self.tenant = tenant
        self.policy = policy or RetryPolicy()
        self._tokens: StoredTokens | None = None

    # -- public -------------------------------------------------------------------------------------------------
    def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        """Call ``method`` and return its ``result``; raises a :class:`~cloud.bitrix24.errors.Bitrix24Error`."""
        return self._request(method, dict(params or {}), read_only=is_read_only(method)).result

    def call_page(self, method: str, params: Mapping[str, Any] | None = None) -> tuple[Any, int | None, int | None]:
        """A list method's page: ``(result, total, next)`` (``next`` = the ``start`` of the next page, or None)."""
        answer = self._request(method, dict(params or {}), read_only=is_read_only(method))
        return answer.result, answer.total, answer.next

    def batch(self, commands: Mapping[str, tuple[str, Mapping[str, Any]]], *, halt: bool = False) -> BatchResult:
        """Up to 50 commands in one request; ``$result[key][FIELD]`` in a value refers to an earlier command's
        result. Per-command failures come back in :attr:`BatchResult.errors`, the batch itself raises like
        :meth:`call` (it is retried after a 5xx only when every command is read-only)."""
        if len(commands) > MAX_BATCH:
            raise ValueError(f"batch of {len(commands)} commands: at most {MAX_BATCH} per request")
        cmd: dict[str, str] = {}
        for key, (method, params) in commands.items():
            if not _COMMAND_KEY.match(key):
                raise ValueError(f"batch command key {key[:40]!r}: 1-64 letters, digits, '_', '.', ':', '-'")
            cmd[key] = encode_command(method, params)
        if not cmd:
            return BatchResult({}, {})
        read_only = all(is_read_only(method) for method, _ in commands.values())
        answer = self._request("batch", {"halt": 1 if halt else 0, "cmd": cmd}, read_only=read_only)
        body = answer.result if isinstance(answer.result, dict) else {}
        errors: dict[str, MethodError] = {}
        for key, error in _by_key(body.get("result_error")).items():
            error = error if isinstance(error, dict) else {}
            errors[key] = MethodError(
                str(error.get("error") or ""),
                self._redact(str(error.get("error_description") or "")),
                None,
                commands[key][0] if key in commands else "",
            )
        totals = {k: v for k, v in _by_key(body.get("result_total")).items() if isinstance(v, int)}
        nexts = {k: v for k, v in _by_key(body.get("result_next")).items() if isinstance(v, int)}
        return BatchResult(_by_key(body.get("result")), errors, totals, nexts)

    def upload_file(
        self, url: str, field_name: str, filename: str, chunks: Iterable[bytes], size: int, content_type: str
    ) -> Any:
        """attachRecord's second step (protocols.md §A7.5): POST the file to the ``uploadUrl`` Bitrix24 gave, as
        ``multipart/form-data`` field ``field_name``, streamed (``size`` bytes from ``chunks``, never all in
        memory). Only to the portal's own host: the URL comes from a response, and the file must not go
        anywhere else. Raises like :meth:`call` (a 5xx or a dropped connection: :class:`PortalUnavailable`)."""
        method = "upload"
        endpoint, target = urlsplit(self.tenant.client_endpoint), urlsplit(url)
        if (target.scheme, target.netloc) != (endpoint.scheme, endpoint.netloc):
            raise MethodError("", f"uploadUrl is not on the portal's host {endpoint.netloc}", None, method)
        if not _FIELD_NAME.fullmatch(field_name) or not _FILE_NAME.fullmatch(filename):
            raise MethodError("", "attachRecord gave an unusable field or file name", None, method)
        boundary = uuid.uuid4().hex
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field_name}"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()

        def body() -> Iterator[bytes]:
            yield head
            yield from chunks
            yield tail

        headers = {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(len(head) + size + len(tail)),
        }
        try:
            response = self.rt.http.post(
                url, content=body(), headers=headers, timeout=httpx.Timeout(300.0, connect=5.0)
            )
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise PortalUnavailable(type(exc).__name__, maybe_executed=False, method=method) from None
        except httpx.TransportError as exc:
            raise PortalUnavailable(type(exc).__name__, maybe_executed=True, method=method) from None
        answer = classify(response.status_code, response.content, now=self.policy.wall_clock())
        if answer.kind == "ok":
            return answer.result
        if answer.kind == "method_error":
            raise MethodError(answer.code, self._redact(answer.description), answer.status, method)
        if answer.kind == "auth_lost":
            raise AuthorizationLost(self.tenant.tenant, f"{method}: {answer.code} {answer.description!r}")
        if answer.kind in ("rate_limited", "operation_limit"):
            raise RateLimited(max(answer.retry_after, self.policy.rate_limited_retry_after), answer.code, method)
        # expired token (the URL carries the token of the first step), 5xx, a redirect: do both steps again later
        raise PortalUnavailable(answer.code or answer.kind, maybe_executed=answer.maybe_executed, method=method)

    # -- the request loop ---------------------------------------------------------------------------------------
    def _request(self, method: str, params: dict[str, Any], *, read_only: bool) -> Answer:
        if not _METHOD.match(method):
            raise ValueError(f"not a REST method name: {method[:60]!r}")
        policy = self.policy
        deadline = policy.clock() + policy.budget
        tokens = self._current_tokens()
        refreshed = False
        redirects = 0
        attempt = 0
        waited = 0.0  # counted as well as the clock: a clock that stands still must not retry forever
        while True:
            url = self.tenant.client_endpoint + method
            answer = self._send(url, method, {**params, "auth": tokens.access_token})
            kind = answer.kind
            if kind == "ok":
                return answer
            if kind == "redirect":
                redirects += 1
                if redirects > MAX_REDIRECTS:
                    raise PortalUnavailable("too many redirects", maybe_executed=False, method=method)
                self._follow(url, answer.location, method)
                continue
            if kind == "expired":
                if refreshed:  # a brand-new token expired at once: nothing ran; let the caller come back later
                    raise PortalUnavailable("token expired again after a refresh", maybe_executed=False, method=method)
                try:
                    tokens = self._refresh(tokens)
                except PortalUnavailable as exc:  # the OAuth server failed; the call itself was refused
                    raise PortalUnavailable(exc.reason, maybe_executed=False, method=method) from None
                refreshed = True
                continue
            if kind == "auth_lost":
                log.warning("tenant %s: %s answered %s", self.tenant.tenant, method, answer.code)
                raise AuthorizationLost(self.tenant.tenant, f"{method}: {answer.code} {answer.description!r}")
            if kind == "method_error":
                raise MethodError(answer.code, self._redact(answer.description), answer.status, method)
            if kind == "operation_limit":
                raise RateLimited(answer.retry_after, answer.code, method)
            # rate_limited or unavailable: retry when nothing ran (or running twice is harmless) and time is left
            retryable = kind == "rate_limited" or not answer.maybe_executed or read_only
            delay = policy.delay(attempt)
            if retryable and waited + delay <= policy.budget and policy.clock() + delay <= deadline:
                log.info("tenant %s: %s %s, retrying in %.2f s", self.tenant.tenant, method, answer.code, delay)
                policy.sleep(delay)
                waited += delay
                attempt += 1
                continue
            if kind == "rate_limited":
                raise RateLimited(max(policy.rate_limited_retry_after, delay), answer.code, method)
            raise PortalUnavailable(answer.code, maybe_executed=answer.maybe_executed, method=method)

    def _send(self, url: str, method: str, payload: dict[str, Any]) -> Answer:
        try:
            response = self.rt.http.post(url, json=payload)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            return Answer("unavailable", code=type(exc).__name__, maybe_executed=False)
        except httpx.TransportError as exc:  # read timeout, connection dropped mid-request, ...
            return Answer("unavailable", code=type(exc).__name__, maybe_executed=True)
        return classify(
            response.status_code,
            response.content,
            location=response.headers.get("location"),
            now=self.policy.wall_clock(),
        )

    # -- tokens ---------------------------------------------------------------------------------------------------
    def _load_tokens(self) -> StoredTokens:
        try:
            return store.load_tokens(self.rt, self.tenant.tenant)
        except UnknownTenant as exc:
            raise AuthorizationLost(self.tenant.tenant, str(exc)) from None

    def _current_tokens(self) -> StoredTokens:
        if self._tokens is None:
            self._tokens = self._load_tokens()
        return self._tokens

    def _refresh(self, stale: StoredTokens) -> StoredTokens:
        """New tokens after ``expired_token``: someone else's if they already rotated, else ours (conditional
        write); the loser of a race re-reads the winner's."""
        policy = self.policy
        current = self._load_tokens()
        if current.token_version != stale.token_version:
            self._tokens = current
            return current
        try:
            grant = refresh_tokens(self.rt.http, self.rt.settings, self.tenant.tenant, current.refresh_token)
        except OAuthRefused as exc:
            if exc.code != "invalid_grant":
                raise
            # Our refresh token was already used: by a Lambda that may not have written its tokens yet.
            deadline = policy.clock() + policy.refresh_settle
            while True:
                again = self._load_tokens()
                if again.token_version != current.token_version:
                    self._tokens = again
                    return again
                if policy.clock() >= deadline:
                    raise
                policy.sleep(0.05)
        new = grant.tokens(policy.wall_clock())
        if store.replace_tokens(self.rt, self.tenant.tenant, new, current.token_version):
            log.info("tenant %s: tokens refreshed (version %d)", self.tenant.tenant, current.token_version + 1)
            self._tokens = StoredTokens(**new.model_dump(), token_version=current.token_version + 1)
        else:
            self._tokens = self._load_tokens()
        return self._tokens

    # -- redirects ------------------------------------------------------------------------------------------------
    def _follow(self, url: str, location: str, method: str) -> None:
        """Move to the portal's new address (protocols.md §A1.5) and remember it for every later call."""
        target = urljoin(url, location)
        old, new = urlsplit(url), urlsplit(target)
        index = new.path.find("/rest/")
        if index < 0 or new.scheme not in ("http", "https") or (old.scheme == "https" and new.scheme != "https"):
            raise PortalUnavailable(
                f"refused redirect to {new.scheme}://{new.netloc}", maybe_executed=False, method=method
            )
        endpoint = f"{new.scheme}://{new.netloc}{new.path[: index + len('/rest/')]}"
        domain = domain_of(endpoint)
        log.warning("tenant %s: portal moved from %s to %s", self.tenant.tenant, self.tenant.domain, domain)
        try:
            store.update_endpoint(self.rt, self.tenant.tenant, endpoint, domain)
        except UnknownTenant as exc:
            raise AuthorizationLost(self.tenant.tenant, str(exc)) from None
        self.tenant = self.tenant.model_copy(update={"client_endpoint": endpoint, "domain": domain})

    def _redact(self, text: str) -> str:
        tokens = self._tokens
        if tokens is not None:
            for secret in (tokens.access_token, tokens.refresh_token):
                text = text.replace(secret, "***")
        return text


def client_for(rt: Runtime, tenant: str, policy: RetryPolicy | None = None) -> Bitrix24Client:
    """The client of an installed tenant; :class:`AuthorizationLost` if it never installed or uninstalled."""
    try:
        record = store.get_tenant(rt, tenant)
    except UnknownTenant as exc:
        raise AuthorizationLost(tenant, str(exc)) from None
    except ValueError as exc:
        raise AuthorizationLost(tenant[:64], str(exc)) from None
    if not record.active:
        raise AuthorizationLost(tenant, "the app was uninstalled")
    return Bitrix24Client(rt, record, policy)
